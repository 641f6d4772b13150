package sensors

import (
	"fmt"
	"strings"
	"sync"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/pca9548"
)

type muxKey struct {
	bus  string
	addr uint16
}

// muxDev is one TCA9548A shared by every sensor behind it: periph's
// pca9548.Dev remembers the selected channel, so there must be exactly one
// per physical multiplexer.
type muxDev struct {
	dev   *pca9548.Dev
	ports map[int]i2c.Bus
}

// tagged gives the parent bus a name unique to this Set: pca9548 exposes its
// channels only through periph's process-wide i2creg registry, under names
// derived from the parent bus's String, and two Sets (a test and its
// successor, or `read` after `run`) must not collide there.
type tagged struct {
	i2c.Bus
	tag string
}

func (t tagged) String() string { return t.tag }

// muxPort returns the bus seen through channel m.Channel of the TCA9548A at
// m.Address on the parent bus.
func (s *Set) muxPort(busName string, parent i2c.Bus, m Mux) (i2c.Bus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := muxKey{busName, m.Address}
	md, ok := s.muxes[k]
	if !ok {
		// Register with a tagged parent so the port names are unique.
		tag := fmt.Sprintf("gatewayd-%p-%s", s, strings.ReplaceAll(busName, "/", "_"))
		dev, err := pca9548.New(tagged{parent, tag}, &pca9548.Opts{Addr: int(m.Address)})
		if err != nil {
			return nil, fmt.Errorf("tca9548a %#02x: %w", m.Address, err)
		}
		md = &muxDev{dev: dev, ports: map[int]i2c.Bus{}}
		s.muxes[k] = md
	}
	if p, ok := md.ports[m.Channel]; ok {
		return p, nil
	}
	p, err := openMuxPorts(md.dev, m.Channel)
	if err != nil {
		return nil, fmt.Errorf("tca9548a %#02x channel %d: %w", m.Address, m.Channel, err)
	}
	md.ports[m.Channel] = p
	return p, nil
}

// registryMu serialises our register-open-unregister use of periph's
// process-wide i2creg (the one global we cannot avoid: pca9548 offers its
// ports nowhere else).
var registryMu sync.Mutex

// openMuxPorts registers the multiplexer's eight ports in periph's registry
// just long enough to open the one we need, then unregisters them all, so
// the process-wide registry holds nothing of ours afterwards.
func openMuxPorts(dev *pca9548.Dev, ch int) (i2c.Bus, error) {
	registryMu.Lock()
	defer registryMu.Unlock()
	alias := dev.String() + "-" + fmt.Sprintf("%p", dev) + "-"
	names, err := dev.RegisterPorts(alias)
	defer func() {
		for _, n := range names {
			_ = i2creg.Unregister(n)
		}
	}()
	if err != nil {
		return nil, err
	}
	if ch >= len(names) {
		return nil, fmt.Errorf("no channel %d", ch)
	}
	b, err := i2creg.Open(names[ch])
	if err != nil {
		return nil, err
	}
	return portBus{b}, nil
}

// portBus hides the port's Close: the Set drops ports with the Set, and
// closing one would make the others' Tx fail.
type portBus struct{ b i2c.BusCloser }

func (p portBus) String() string                    { return p.b.String() }
func (p portBus) Tx(addr uint16, w, r []byte) error { return p.b.Tx(addr, w, r) }
func (p portBus) SetSpeed(f physic.Frequency) error { return p.b.SetSpeed(f) }
