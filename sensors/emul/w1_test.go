package emul

import (
	"errors"
	"io/fs"
	"testing"

	"gatewayd/sensors/w1"
)

// The emulated 1-Wire tree reads like the kernel's, faults included.
func TestW1(t *testing.T) {
	r := NewW1()
	const id = "28-000000000001"
	r.Add(id)
	r.Set(id, "temperature", -3.25)
	if got, err := w1.Read(r, id); err != nil || got != -3.25 {
		t.Fatalf("Read = %v, %v", got, err)
	}
	if ids, err := w1.List(r); err != nil || len(ids) != 1 || ids[0] != id {
		t.Fatalf("List = %v, %v", ids, err)
	}
	for _, tc := range []struct {
		f    Fault
		want error
	}{
		{CorruptCRC, w1.ErrCRC},
		{NACK, fs.ErrNotExist},
		{Timeout, errIO},
	} {
		r.Inject(id, tc.f)
		if _, err := w1.Read(r, id); !errors.Is(err, tc.want) {
			t.Errorf("%v: %v, want %v", tc.f, err, tc.want)
		}
	}
	r.Inject(id, 0)
	r.Reset(id)
	if _, err := w1.Read(r, id); !errors.Is(err, w1.ErrPowerOn) {
		t.Errorf("after a reset: %v", err)
	}
	if got, _ := w1.Read(r, id); got != -3.25 {
		t.Errorf("not back after the power-on read: %v", got)
	}
	r.Inject(id, Stuck)
	r.Set(id, "temperature", 40)
	if got, _ := w1.Read(r, id); got != -3.25 {
		t.Errorf("stuck sensor moved: %v", got)
	}
}
