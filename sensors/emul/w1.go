package emul

import (
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"sync"
	"testing/fstest"
)

// W1 emulates the kernel's 1-Wire sysfs devices directory with DS18B20s in
// it, as an fs.FS: reading <id>/w1_slave runs a conversion and returns the
// text w1_therm prints. Faults: NACK removes the device directory (the
// kernel drops a sensor that stops answering), Timeout fails the read with
// an I/O error, CorruptCRC makes the kernel's verdict "NO", Stuck freezes
// the text, OutOfRange reads +127.94 °C, and PowerOnReset makes the next
// read return the 85 °C power-on value.
type W1 struct {
	mu   sync.Mutex
	devs map[string]*ds18b20
}

type ds18b20 struct {
	values
	fault Fault
	por   bool
	last  []byte
}

// NewW1 returns an empty devices directory.
func NewW1() *W1 { return &W1{devs: map[string]*ds18b20{}} }

// Add places a DS18B20 with id ("28-…") measuring 20 °C.
func (w *W1) Add(id string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.devs[id]; ok {
		return fmt.Errorf("emul: 1-wire device %s already present", id)
	}
	w.devs[id] = &ds18b20{values: newValues(map[string]float64{"temperature": 20})}
	return nil
}

func (w *W1) dev(id string) (*ds18b20, error) {
	d, ok := w.devs[id]
	if !ok {
		return nil, fmt.Errorf("emul: no 1-wire device %s", id)
	}
	return d, nil
}

// Set sets what the sensor measures.
func (w *W1) Set(id, m string, v float64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	d, err := w.dev(id)
	if err != nil {
		return err
	}
	return d.set(m, v)
}

// SetJitter turns a sensor's one-step wiggle on or off.
func (w *W1) SetJitter(id string, on bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	d, err := w.dev(id)
	if err != nil {
		return err
	}
	d.SetJitter(on)
	return nil
}

// Inject sets a sensor's faults.
func (w *W1) Inject(id string, f Fault) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	d, err := w.dev(id)
	if err != nil {
		return err
	}
	d.fault = f
	return nil
}

// Reset makes the sensor's next read return the power-on scratchpad.
func (w *W1) Reset(id string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	d, err := w.dev(id)
	if err != nil {
		return err
	}
	d.por = true
	return nil
}

var errIO = errors.New("input/output error")

// Open implements fs.FS.
func (w *W1) Open(name string) (fs.File, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := fstest.MapFS{"w1_bus_master1/w1_master_slave_count": &fstest.MapFile{Data: []byte(fmt.Sprintln(len(w.devs)))}}
	ids := make([]string, 0, len(w.devs))
	for id := range w.devs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		d := w.devs[id]
		if d.fault&NACK != 0 {
			continue
		}
		m[id+"/name"] = &fstest.MapFile{Data: []byte(id + "\n")}
		m[id+"/w1_slave"] = &fstest.MapFile{}
		if name == id+"/w1_slave" {
			if d.fault&Timeout != 0 {
				return nil, &fs.PathError{Op: "read", Path: name, Err: errIO}
			}
			m[name].Data = d.convert()
		}
	}
	return m.Open(name)
}

func (d *ds18b20) convert() []byte {
	switch {
	case d.por:
		d.por = false
		return w1SlaveText(scratchpad(85), false)
	case d.fault&Stuck != 0 && d.last != nil:
		return d.last
	case d.fault&OutOfRange != 0:
		d.last = w1SlaveText(scratchpad(127.9375), d.fault&CorruptCRC != 0)
	default:
		d.next()
		d.last = w1SlaveText(scratchpad(d.get("temperature", 0.0625)), d.fault&CorruptCRC != 0)
	}
	return d.last
}
