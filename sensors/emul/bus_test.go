package emul

import (
	"errors"
	"testing"
	"time"
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

// A script changes values and faults as time passes, applied when the chip
// is addressed.
func TestScript(t *testing.T) {
	b := NewBus("t")
	c := NewTMP102()
	b.Add(0x48, c)
	err := b.Script(0x48, []Step{
		{At: 0, Values: map[string]float64{"temperature": 10}},
		{At: 40 * time.Millisecond, Fault: NACK},
		{At: 80 * time.Millisecond, Values: map[string]float64{"temperature": -5}},
	})
	if err != nil {
		t.Fatal(err)
	}
	read := func() (float64, error) {
		r := make([]byte, 2)
		if err := b.Tx(0x48, []byte{0}, r); err != nil {
			return 0, err
		}
		return float64(int16(uint16(r[0])<<8|uint16(r[1]))>>4) * 0.0625, nil
	}
	if v, err := read(); err != nil || v != 10 {
		t.Fatalf("step 1: %v %v", v, err)
	}
	time.Sleep(50 * time.Millisecond)
	if _, err := read(); !errors.Is(err, ErrNACK) {
		t.Fatalf("step 2: %v", err)
	}
	time.Sleep(40 * time.Millisecond)
	if v, err := read(); err != nil || v != -5 {
		t.Fatalf("step 3: %v %v", v, err)
	}
	if b.Script(0x48, []Step{{At: time.Second}, {At: 0}}) == nil {
		t.Fatal("script going back in time accepted")
	}
	b.Script(0x48, []Step{{Values: map[string]float64{"co2": 1}}})
	if _, err := read(); err == nil {
		t.Fatal("a step naming a measurement the chip lacks went unnoticed")
	}
}
