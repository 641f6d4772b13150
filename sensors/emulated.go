package sensors

import (
	"fmt"
	"time"

	"gatewayd/sensors/emul"
)

// EmulateHangAfter is the [sensor.emulate] key that wedges an emulated
// chip: that many seconds after its bus is opened, every transfer to it
// blocks for good, as a driver stuck on a bus whose SCL is held low does.
// It is how the service's watchdog is seen to act (deploy/ci/systemd.sh):
// the sensor loop stops heart-beating after Options.HangAfter, the daemon
// stops feeding systemd's watchdog, and systemd kills and restarts it.
const EmulateHangAfter = "hang_after"

// hangForever is the emulated bus's timeout delay for a wedged chip.
const hangForever = 100 * 365 * 24 * time.Hour

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
		hang, wedge := sp.Emulate[EmulateHangAfter]
		if wedge {
			if sp.Mux != nil {
				return nil, fmt.Errorf("emulate %s: %s: not behind a multiplexer", sp.Name, EmulateHangAfter)
			}
			values := make(map[string]float64, len(sp.Emulate))
			for k, v := range sp.Emulate {
				if k != EmulateHangAfter {
					values[k] = v
				}
			}
			sp.Emulate = values
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
		if wedge {
			b.SetTimeoutDelay(hangForever)
			at := time.Duration(hang * float64(time.Second))
			if err := b.Script(sp.Address, []emul.Step{{At: at, Fault: emul.Timeout}}); err != nil {
				return nil, fmt.Errorf("emulate %s: %w", sp.Name, err)
			}
		}
	}
	return b, nil
}
