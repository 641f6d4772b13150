package emul

import (
	"errors"
	"testing"
)

func TestBusRouting(t *testing.T) {
	b := NewBus("t")
	if err := b.Add(0x48, NewTMP102()); err != nil {
		t.Fatal(err)
	}
	if b.Add(0x48, NewTMP102()) == nil || b.Add(0x80, NewTMP102()) == nil {
		t.Fatal("taken or 8-bit address accepted")
	}
	m, err := b.AddMux(0x70)
	if err != nil {
		t.Fatal(err)
	}
	m.Add(0, 0x48, NewTMP102()) // same address as the one on the bus
	m.Add(1, 0x18, NewMCP9808())
	r := make([]byte, 2)
	if err := b.Tx(0x18, []byte{5}, r); !errors.Is(err, ErrNACK) {
		t.Fatalf("chip behind a disabled channel answered: %v", err)
	}
	b.Tx(0x70, []byte{1 << 1}, nil)
	if err := b.Tx(0x18, []byte{6}, r); err != nil || r[1] != 0x54 {
		t.Fatalf("chip behind an enabled channel: % x %v", r, err)
	}
	b.Tx(0x70, []byte{1<<0 | 1<<1}, nil)
	if err := b.Tx(0x48, []byte{0}, r); err == nil {
		t.Fatal("two devices answering one address went unnoticed")
	}
	if got := b.Addresses(); len(got) != 3 {
		t.Fatalf("Addresses = %x", got)
	}
	b.Reset(0x70)
	if got := b.Addresses(); len(got) != 2 {
		t.Fatalf("after a mux reset, Addresses = %x", got)
	}
	b.Inject(0x48, Timeout)
	if err := b.Tx(0x48, []byte{0}, r); !errors.Is(err, ErrTimeout) {
		t.Fatalf("timeout fault: %v", err)
	}
	if n := b.Transactions(0x48); n != 2 { // the collision and the timeout
		t.Fatalf("transactions counted: %d", n)
	}
	b.Close()
	if err := b.Tx(0x48, []byte{0}, r); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed bus: %v", err)
	}
}

func TestFaultString(t *testing.T) {
	if s := (NACK | Stuck).String(); s != "nack|stuck" {
		t.Fatal(s)
	}
	if s := Fault(0).String(); s != "none" {
		t.Fatal(s)
	}
}

// Sensirion's CRC as the emulators compute it: the datasheet example.
func TestCRC(t *testing.T) {
	if crc8([]byte{0xBE, 0xEF}) != 0x92 {
		t.Fatal("crc8(0xBEEF) != 0x92")
	}
}
