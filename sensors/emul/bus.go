package emul

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"periph.io/x/conn/v3/physic"
)

// Errors a Bus returns; they stand for what the Linux i2c-dev driver reports
// (ENXIO/EREMOTEIO for a missing acknowledge, ETIMEDOUT for a held bus).
var (
	ErrNACK    = errors.New("emul: no acknowledge from device")
	ErrTimeout = errors.New("emul: bus timeout")
	ErrClosed  = errors.New("emul: bus closed")
)

// Fault is a set of injected faults for one chip.
type Fault uint8

const (
	// NACK makes the chip ignore its address: absent, unpowered or hung.
	NACK Fault = 1 << iota
	// Timeout makes every transfer with the chip fail as if SCL were held low.
	Timeout
	// CorruptCRC flips the CRC bytes the chip sends (chips with CRCs only).
	CorruptCRC
	// Stuck freezes the chip's raw measurement output at its last value.
	Stuck
	// OutOfRange drives the chip's converter outputs to full scale.
	OutOfRange
	// Hang makes every transfer with the chip block until the fault is
	// cleared or the bus closed: a wedged bus (a slave holding SCL low for
	// good, a driver stuck in the kernel). The read never returns, which is
	// what the watchdog and the stop bound are for.
	Hang
)

func (f Fault) String() string {
	if f == 0 {
		return "none"
	}
	names := []string{"nack", "timeout", "corrupt-crc", "stuck", "out-of-range", "hang"}
	s := ""
	for i, n := range names {
		if f&(1<<i) != 0 {
			if s != "" {
				s += "|"
			}
			s += n
		}
	}
	return s
}

// Chip is one emulated device on a Bus. The Bus serialises calls.
type Chip interface {
	// Tx is one I²C transaction addressed to the chip: write w, then read
	// len(r) bytes. f holds the faults injected into this chip that the chip
	// itself must act on (CorruptCRC, Stuck, OutOfRange).
	Tx(f Fault, w, r []byte) error
	// Set changes the physical value the chip measures, in gatewayd's units
	// (°C, %RH, hPa, ppm).
	Set(measurement string, v float64) error
	// PowerOnReset puts the chip in its power-on state: configuration lost.
	PowerOnReset()
}

type slot struct {
	chip   Chip
	fault  Fault
	txs    int
	script []Step
	start  time.Time
}

// Step is one scripted change to a chip: at the chip's first transaction
// at least At after Script was called, its values are set, its faults
// replaced by Fault, and with Reset it is power-cycled first.
type Step struct {
	At     time.Duration
	Reset  bool
	Values map[string]float64
	Fault  Fault
}

// Script plays steps (in At order) on the chip at addr. Steps are applied
// when the chip is next addressed, not by a timer: nothing runs in the
// background, and a chip nobody talks to does not change.
func (b *Bus) Script(addr uint16, steps []Step) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.chips[addr]
	if !ok {
		return fmt.Errorf("emul: no chip at %#02x", addr)
	}
	for i := 1; i < len(steps); i++ {
		if steps[i].At < steps[i-1].At {
			return fmt.Errorf("emul: script step %d goes back in time", i)
		}
	}
	s.script, s.start = append([]Step(nil), steps...), time.Now()
	return nil
}

// play applies the due script steps; the caller holds b.mu. A step naming
// a measurement the chip lacks fails the transaction that applies it.
func (s *slot) play() error {
	for len(s.script) > 0 && time.Since(s.start) >= s.script[0].At {
		st := s.script[0]
		s.script = s.script[1:]
		if st.Reset {
			s.chip.PowerOnReset()
		}
		for m, v := range st.Values {
			if err := s.chip.Set(m, v); err != nil {
				return fmt.Errorf("script: %w", err)
			}
		}
		s.fault = st.Fault
	}
	return nil
}

// Bus is an emulated I²C bus holding several chips. It implements periph's
// i2c.Bus (and BusCloser). It is safe for concurrent use.
type Bus struct {
	name string

	mu     sync.Mutex
	chips  map[uint16]*slot
	muxes  map[uint16]*Mux
	closed bool
	// TimeoutDelay is how long a transfer to a chip with the Timeout fault
	// blocks before failing (zero: fail at once, so tests stay fast).
	timeoutDelay time.Duration
}

// NewBus returns an empty bus; name is what String reports.
func NewBus(name string) *Bus {
	return &Bus{name: name, chips: map[uint16]*slot{}, muxes: map[uint16]*Mux{}}
}

// Add places c at the 7-bit address addr.
func (b *Bus) Add(addr uint16, c Chip) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if addr > 0x7F {
		return fmt.Errorf("emul: address %#x is not a 7-bit address", addr)
	}
	if _, ok := b.chips[addr]; ok {
		return fmt.Errorf("emul: address %#02x already taken", addr)
	}
	if _, ok := b.muxes[addr]; ok {
		return fmt.Errorf("emul: address %#02x already taken by a multiplexer", addr)
	}
	b.chips[addr] = &slot{chip: c}
	return nil
}

// Chip returns the chip at addr on the bus itself (not behind a mux).
func (b *Bus) Chip(addr uint16) Chip {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s, ok := b.chips[addr]; ok {
		return s.chip
	}
	return nil
}

// AddMux places an emulated TCA9548A at addr (0x70..0x77) and returns it, or
// the one already there.
func (b *Bus) AddMux(addr uint16) (*Mux, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m, ok := b.muxes[addr]; ok {
		return m, nil
	}
	if addr < 0x70 || addr > 0x77 {
		return nil, fmt.Errorf("emul: TCA9548A address %#02x outside 0x70..0x77", addr)
	}
	if _, ok := b.chips[addr]; ok {
		return nil, fmt.Errorf("emul: address %#02x already taken", addr)
	}
	m := &Mux{bus: b, addr: addr, chans: [8]map[uint16]*slot{}}
	b.muxes[addr] = m
	return m, nil
}

// Mux is an emulated TCA9548A: a control register whose bits connect
// downstream channels to the bus. Chips behind an enabled channel answer on
// the main bus as if they were on it.
type Mux struct {
	bus     *Bus
	addr    uint16
	control byte
	fault   Fault
	chans   [8]map[uint16]*slot
}

// Add places c at addr behind channel ch (0..7).
func (m *Mux) Add(ch int, addr uint16, c Chip) error {
	m.bus.mu.Lock()
	defer m.bus.mu.Unlock()
	if ch < 0 || ch > 7 {
		return fmt.Errorf("emul: mux channel %d outside 0..7", ch)
	}
	if m.chans[ch] == nil {
		m.chans[ch] = map[uint16]*slot{}
	}
	if _, ok := m.chans[ch][addr]; ok {
		return fmt.Errorf("emul: address %#02x already taken on mux channel %d", addr, ch)
	}
	m.chans[ch][addr] = &slot{chip: c}
	return nil
}

// Chip returns the chip at addr behind channel ch.
func (m *Mux) Chip(ch int, addr uint16) Chip {
	m.bus.mu.Lock()
	defer m.bus.mu.Unlock()
	if ch < 0 || ch > 7 || m.chans[ch] == nil {
		return nil
	}
	if s, ok := m.chans[ch][addr]; ok {
		return s.chip
	}
	return nil
}

// Inject sets the faults of the chip at addr behind channel ch (replacing
// earlier ones); Inject(ch, addr, 0) clears them.
func (m *Mux) Inject(ch int, addr uint16, f Fault) error {
	m.bus.mu.Lock()
	defer m.bus.mu.Unlock()
	if ch < 0 || ch > 7 || m.chans[ch] == nil || m.chans[ch][addr] == nil {
		return fmt.Errorf("emul: no chip at %#02x on mux channel %d", addr, ch)
	}
	m.chans[ch][addr].fault = f
	return nil
}

// SetTimeoutDelay makes transfers hit by the Timeout fault block for d first,
// as a real adapter does before giving up.
func (b *Bus) SetTimeoutDelay(d time.Duration) {
	b.mu.Lock()
	b.timeoutDelay = d
	b.mu.Unlock()
}

// Inject sets the faults of the chip (or multiplexer) at addr, replacing
// earlier ones; Inject(addr, 0) clears them.
func (b *Bus) Inject(addr uint16, f Fault) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s, ok := b.chips[addr]; ok {
		s.fault = f
		return nil
	}
	if m, ok := b.muxes[addr]; ok {
		m.fault = f
		return nil
	}
	return fmt.Errorf("emul: no chip at %#02x", addr)
}

// Reset power-cycles the chip at addr: it loses its configuration.
func (b *Bus) Reset(addr uint16) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s, ok := b.chips[addr]; ok {
		s.chip.PowerOnReset()
		return nil
	}
	if m, ok := b.muxes[addr]; ok {
		m.control = 0
		return nil
	}
	return fmt.Errorf("emul: no chip at %#02x", addr)
}

// Transactions reports how many transactions the chip at addr has seen
// (acknowledged or not); tests use it to check that a sensor is not polled.
func (b *Bus) Transactions(addr uint16) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s, ok := b.chips[addr]; ok {
		return s.txs
	}
	return 0
}

// Addresses lists the addresses that currently acknowledge, in order, as an
// i2cdetect would see them (chips behind enabled mux channels included).
func (b *Bus) Addresses() []uint16 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []uint16
	for a := uint16(0); a < 0x80; a++ {
		if ss := b.route(a); len(ss) > 0 && ss[0].fault&NACK == 0 {
			out = append(out, a)
		}
	}
	return out
}

// route returns the slots answering at addr; the caller holds b.mu.
func (b *Bus) route(addr uint16) []*slot {
	var ss []*slot
	if s, ok := b.chips[addr]; ok {
		ss = append(ss, s)
	}
	if m, ok := b.muxes[addr]; ok {
		ss = append(ss, &slot{chip: muxChip{m}, fault: m.fault})
	}
	keys := make([]int, 0, len(b.muxes))
	for a := range b.muxes {
		keys = append(keys, int(a))
	}
	sort.Ints(keys)
	for _, k := range keys {
		m := b.muxes[uint16(k)]
		if m.fault&NACK != 0 {
			continue
		}
		for ch := 0; ch < 8; ch++ {
			if m.control&(1<<ch) == 0 || m.chans[ch] == nil {
				continue
			}
			if s, ok := m.chans[ch][addr]; ok {
				ss = append(ss, s)
			}
		}
	}
	return ss
}

// String implements i2c.Bus.
func (b *Bus) String() string { return b.name }

// SetSpeed implements i2c.Bus; the emulation runs at any speed.
func (b *Bus) SetSpeed(physic.Frequency) error { return nil }

// Close implements i2c.BusCloser; later transfers fail.
func (b *Bus) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// Tx implements i2c.Bus.
func (b *Bus) Tx(addr uint16, w, r []byte) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	ss := b.route(addr)
	if len(ss) == 0 {
		b.mu.Unlock()
		return fmt.Errorf("tx %#02x: %w", addr, ErrNACK)
	}
	for _, s := range ss {
		s.txs++
		if err := s.play(); err != nil {
			b.mu.Unlock()
			return err
		}
	}
	if len(ss) > 1 {
		// Two devices acknowledging one address garble each other's data
		// on the wire; report it instead of picking one silently.
		b.mu.Unlock()
		return fmt.Errorf("tx %#02x: address collision between %d devices", addr, len(ss))
	}
	s := ss[0]
	for s.fault&Hang != 0 && !b.closed {
		// Polled, not signalled: an emulator's hang need not be efficient,
		// and clearing the fault or closing the bus ends it within 10 ms.
		b.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
		b.mu.Lock()
		if err := s.play(); err != nil {
			b.mu.Unlock()
			return err
		}
	}
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	if s.fault&NACK != 0 {
		b.mu.Unlock()
		return fmt.Errorf("tx %#02x: %w", addr, ErrNACK)
	}
	if s.fault&Timeout != 0 {
		d := b.timeoutDelay
		b.mu.Unlock()
		if d > 0 {
			time.Sleep(d)
		}
		return fmt.Errorf("tx %#02x: %w", addr, ErrTimeout)
	}
	defer b.mu.Unlock()
	return s.chip.Tx(s.fault, w, r)
}

// muxChip is the TCA9548A's single control register.
type muxChip struct{ m *Mux }

func (c muxChip) Tx(_ Fault, w, r []byte) error {
	if len(w) > 0 {
		c.m.control = w[len(w)-1]
	}
	for i := range r {
		r[i] = c.m.control
	}
	return nil
}

func (c muxChip) Set(string, float64) error {
	return errors.New("emul: a multiplexer measures nothing")
}
func (c muxChip) PowerOnReset() { c.m.control = 0 }
