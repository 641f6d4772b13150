package sensors

import (
	"context"
	"fmt"
	"io/fs"
	"os"

	"gatewayd/sensors/emul"
	"gatewayd/sensors/w1"
)

// DS18B20 through the kernel's 1-Wire sysfs (sensors/w1). Range: the
// datasheet's −55..125 °C. Resolution: 0.0625 °C, the power-on default of
// 12 bits (datasheet: 9..12 bits, 0.5..0.0625 °C).
func init() {
	register(&driver{
		name: "ds18b20", chip: "Maxim DS18B20 (1-Wire)",
		meas:    []measurement{{"temperature", "°C", -55, 125, 0.0625}},
		oneWire: true,
		options: map[string]option{},
		openW1:  openDS18B20,
	})
}

type w1Dev struct {
	root fs.FS
	id   string
}

func openDS18B20(s *Set, sp Spec) (device, error) {
	root, err := s.w1Root(sp.Bus)
	if err != nil {
		return nil, err
	}
	id, err := w1.Find(root, sp.Device)
	if err != nil {
		return nil, err
	}
	if _, err := fs.Stat(root, id+"/w1_slave"); err != nil {
		return nil, fmt.Errorf("1-wire sensor %s not present: %w", id, err)
	}
	return &w1Dev{root: root, id: id}, nil
}

func (x *w1Dev) read(_ context.Context, v []float64) error {
	t, err := w1.Read(x.root, x.id)
	if err != nil {
		return err
	}
	v[0] = t
	return nil
}

func (x *w1Dev) close() error { return nil }

// w1Root returns the devices directory for a ds18b20 spec: the emulated one
// for an emulated bus name, the real sysfs (Options.W1Root) otherwise.
func (s *Set) w1Root(bus string) (fs.FS, error) {
	if !isEmulated(bus) {
		return os.DirFS(s.opts.W1Root), nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.w1[bus]; ok {
		return r, nil
	}
	var specs []Spec
	for _, se := range s.sensors {
		if se.drv.oneWire && se.spec.Bus == bus {
			specs = append(specs, se.spec)
		}
	}
	r, err := EmulatedW1(specs)
	if err != nil {
		return nil, err
	}
	s.w1[bus] = r
	return r, nil
}

// EmulatedW1 builds an emulated 1-Wire devices directory holding a DS18B20
// for each ds18b20 spec (other specs are skipped), with the spec's Device id
// (or 28-00000000000N) and Emulate values; readings wiggle by one step.
func EmulatedW1(specs []Spec) (*emul.W1, error) {
	r := emul.NewW1()
	n := 0
	for i, sp := range specs {
		sp, d, err := validate(i, sp)
		if err != nil {
			return nil, err
		}
		if !d.oneWire {
			continue
		}
		n++
		id := sp.Device
		if id == "" {
			id = fmt.Sprintf("28-%012x", n)
		}
		if err := r.Add(id); err != nil {
			return nil, err
		}
		for _, k := range sortedKeys(sp.Emulate) {
			if err := r.Set(id, k, sp.Emulate[k]); err != nil {
				return nil, err
			}
		}
		if err := r.SetJitter(id, true); err != nil {
			return nil, err
		}
	}
	return r, nil
}
