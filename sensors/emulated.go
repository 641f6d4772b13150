package sensors

import (
	"fmt"
	"sort"
	"time"

	"gatewayd/sensors/emul"
)

// EmulatedBus builds one emulated I²C bus holding an emulated chip for each
// I²C spec (the Bus field is not looked at; 1-Wire specs are skipped), with
// the specs' Emulate values and TCA9548A multiplexers where the specs put
// them. The chips' values wiggle by one step between conversions, as real
// chips' do, so a healthy emulated sensor is never taken for a stuck one.
// Specs are validated as New does. Use it to scan or read an emulated
// configuration, or in tests to inject faults (see emul.Bus.Inject).
func EmulatedBus(specs []Spec) (*emul.Bus, error) {
	b := emul.NewBus("emulated")
	for i, sp := range specs {
		sp, d, err := validate(i, sp)
		if err != nil {
			return nil, err
		}
		if d.oneWire {
			continue
		}
		c, err := d.emulate(sp)
		if err != nil {
			return nil, fmt.Errorf("emulate %s: %w", sp.Name, err)
		}
		if j, ok := c.(emul.Jitterer); ok {
			j.SetJitter(true)
		}
		if sp.Mux != nil {
			m, err := b.AddMux(sp.Mux.Address)
			if err != nil {
				return nil, fmt.Errorf("emulate %s: %w", sp.Name, err)
			}
			if err := m.Add(sp.Mux.Channel, sp.Address, c); err != nil {
				return nil, fmt.Errorf("emulate %s: %w", sp.Name, err)
			}
			continue
		}
		if err := b.Add(sp.Address, c); err != nil {
			return nil, fmt.Errorf("emulate %s: %w", sp.Name, err)
		}
		var steps []emul.Step
		for k, f := range emulateFaults {
			if after, ok := sp.Emulate[k]; ok {
				steps = append(steps, emul.Step{At: time.Duration(after * float64(time.Second)), Fault: f})
			}
		}
		if len(steps) > 0 {
			sort.Slice(steps, func(i, j int) bool { return steps[i].At < steps[j].At })
			if err := b.Script(sp.Address, steps); err != nil {
				return nil, fmt.Errorf("emulate %s: %w", sp.Name, err)
			}
		}
	}
	return b, nil
}
