package sensors

import (
	"errors"
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

// muxState is one physical TCA9548A. periph's pca9548.Dev remembers the
// channel it selected last and skips the select when it believes the
// channel is already set; a multiplexer that power-cycled has forgotten it,
// and a lone sensor behind it would fail forever. So a failure behind the
// multiplexer drops the pca9548.Dev (dev=nil, gen++): the ports of the old
// one refuse every transfer from then on (no two Devs ever drive the mux),
// the sensors behind it re-open and get ports of a fresh Dev, whose first
// transfer selects the channel again.
type muxState struct {
	mu    sync.Mutex // held across every transfer through the mux
	dev   *pca9548.Dev
	gen   int
	ports map[int]i2c.BusCloser
}

var errMuxRestarted = errors.New("multiplexer re-initialised; re-open")

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
	k := muxKey{busName, m.Address}
	ms, ok := s.muxes[k]
	if !ok {
		ms = &muxState{}
		s.muxes[k] = ms
	}
	s.mu.Unlock()

	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.dev == nil {
		tag := fmt.Sprintf("gatewayd-%p-%s-%d", s, strings.ReplaceAll(busName, "/", "_"), ms.gen)
		dev, err := pca9548.New(tagged{parent, tag}, &pca9548.Opts{Addr: int(m.Address)})
		if err != nil {
			return nil, fmt.Errorf("tca9548a %#02x: %w", m.Address, err)
		}
		ms.dev, ms.ports = dev, map[int]i2c.BusCloser{}
	}
	p, ok := ms.ports[m.Channel]
	if !ok {
		var err error
		if p, err = openMuxPort(ms.dev, m.Channel); err != nil {
			return nil, fmt.Errorf("tca9548a %#02x channel %d: %w", m.Address, m.Channel, err)
		}
		ms.ports[m.Channel] = p
	}
	return &portBus{b: p, m: ms, gen: ms.gen}, nil
}

// muxFailed is told that a sensor behind the multiplexer failed.
func (s *Set) muxFailed(busName string, m Mux) {
	s.mu.Lock()
	ms, ok := s.muxes[muxKey{busName, m.Address}]
	s.mu.Unlock()
	if !ok {
		return
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.dev != nil {
		ms.dev, ms.ports = nil, nil
		ms.gen++
	}
}

// registryMu serialises our register-open-unregister use of periph's
// process-wide i2creg (the one global we cannot avoid: pca9548 offers its
// ports nowhere else).
var registryMu sync.Mutex

// openMuxPort registers the multiplexer's eight ports in periph's registry
// just long enough to open the one we need, then unregisters them all, so
// the process-wide registry holds nothing of ours afterwards.
func openMuxPort(dev *pca9548.Dev, ch int) (i2c.BusCloser, error) {
	registryMu.Lock()
	defer registryMu.Unlock()
	alias := fmt.Sprintf("%s-%p-", dev, dev)
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
	return i2creg.Open(names[ch])
}

// portBus is one sensor's view of a multiplexer channel. It has no Close:
// ports live as long as their multiplexer generation.
type portBus struct {
	b   i2c.BusCloser
	m   *muxState
	gen int
}

func (p *portBus) String() string                    { return p.b.String() }
func (p *portBus) SetSpeed(f physic.Frequency) error { return p.b.SetSpeed(f) }

func (p *portBus) Tx(addr uint16, w, r []byte) error {
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	if p.m.gen != p.gen {
		return errMuxRestarted
	}
	return p.b.Tx(addr, w, r)
}
