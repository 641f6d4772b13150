package emul

import (
	"fmt"
	"math"
	"time"
)

// Bosch calibration words: T and P are the worked example of the BMP280
// datasheet (section 3.12 / BME280 section 8); the humidity words are those
// of a production BME280 (typical of what breakout boards read back).
var (
	defaultCalibT = [3]int32{27504, 26435, -1000}
	defaultCalibP = [9]int32{36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000}
	defaultCalibH = [6]int32{75, 362, 0, 313, 50, 30}
)

// BME280 emulates a Bosch BME280 (chip id 0x60) or, made by NewBMP280, a
// BMP280 (0x58, no humidity) at register level: chip id, calibration, soft
// reset, ctrl_hum/ctrl_meas/config, status, and the ADC output registers
// holding raw values that the datasheet's compensation turns back into the
// values set. A forced conversion completes as soon as it is started; after
// entering normal mode the output registers keep their old (or reset)
// values until the first conversion's datasheet time has passed, then hold
// a fresh conversion at every read.
type BME280 struct {
	values
	isBME bool
	regs  [256]byte
	ptr   byte
	// hum is ctrl_hum as latched by the last ctrl_meas write: the datasheet
	// says ctrl_hum changes take effect only then.
	hum    byte
	raw    bool // raw ADC values given by SetRaw, not computed
	adcT   int32
	adcP   int32
	adcH   int32
	t1     int32
	t2, t3 int32
	p      [9]int64
	h1, h3 int32
	h2, h4 int32
	h5, h6 int32
	// firstAt is when the first conversion after entering normal mode
	// ends: until then the output registers keep what they held (their
	// reset values after a power-on reset).
	firstAt time.Time
}

// NewBME280 returns a BME280 in its power-on state measuring 21.5 °C,
// 45 %RH and 1013.25 hPa, with the default calibration.
func NewBME280() *BME280 { return newBMx280(true) }

// NewBMP280 returns a BMP280 (temperature and pressure only).
func NewBMP280() *BME280 { return newBMx280(false) }

func newBMx280(isBME bool) *BME280 {
	d := map[string]float64{"temperature": 21.5, "pressure": 1013.25}
	if isBME {
		d["humidity"] = 45
	}
	c := &BME280{values: newValues(d), isBME: isBME}
	c.SetCalibration(defaultCalibT, defaultCalibP, defaultCalibH)
	c.PowerOnReset()
	return c
}

// SetCalibration replaces the chip's trimming words (dig_T1..3, dig_P1..9,
// dig_H1..6).
func (c *BME280) SetCalibration(t [3]int32, p [9]int32, h [6]int32) {
	c.t1, c.t2, c.t3 = t[0], t[1], t[2]
	for i := range p {
		c.p[i] = int64(p[i])
	}
	c.h1, c.h2, c.h3, c.h4, c.h5, c.h6 = h[0], h[1], h[2], h[3], h[4], h[5]
	put16 := func(reg int, v int32) { c.regs[reg] = byte(v); c.regs[reg+1] = byte(v >> 8) }
	for i, v := range t {
		put16(0x88+2*i, v)
	}
	for i, v := range p {
		put16(0x8E+2*i, v)
	}
	c.regs[0xA1] = byte(h[0])
	put16(0xE1, h[1])
	c.regs[0xE3] = byte(h[2])
	c.regs[0xE4] = byte(h[3] >> 4)
	c.regs[0xE5] = byte(h[3]&0x0F) | byte(h[4]&0x0F)<<4
	c.regs[0xE6] = byte(h[4] >> 4)
	c.regs[0xE7] = byte(int8(h[5]))
}

// SetRaw makes the ADC output registers hold these raw values from now on
// (instead of values computed from Set): the datasheet's worked examples are
// given as raw values.
func (c *BME280) SetRaw(adcT, adcP, adcH int32) {
	c.raw, c.adcT, c.adcP, c.adcH = true, adcT, adcP, adcH
}

// Set implements Chip.
func (c *BME280) Set(m string, v float64) error {
	c.raw = false
	return c.values.set(m, v)
}

// PowerOnReset implements Chip: control registers cleared (sleep mode,
// every measurement skipped), output registers at their reset values.
func (c *BME280) PowerOnReset() {
	if c.isBME {
		c.regs[0xD0] = 0x60
	} else {
		c.regs[0xD0] = 0x58
	}
	c.regs[0xF2], c.regs[0xF3], c.regs[0xF4], c.regs[0xF5] = 0, 0, 0, 0
	c.hum = 0
	c.putADC(0x80000, 0x80000, 0x8000)
}

func (c *BME280) putADC(t, p, h int32) {
	c.regs[0xF7], c.regs[0xF8], c.regs[0xF9] = byte(p>>12), byte(p>>4), byte(p<<4)
	c.regs[0xFA], c.regs[0xFB], c.regs[0xFC] = byte(t>>12), byte(t>>4), byte(t<<4)
	if c.isBME {
		c.regs[0xFD], c.regs[0xFE] = byte(h>>8), byte(h)
	}
}

// Tx implements Chip. Writes are (register, value) pairs; a write of just a
// register sets the read pointer; reads auto-increment.
func (c *BME280) Tx(f Fault, w, r []byte) error {
	if len(w) == 1 {
		c.ptr = w[0]
	} else if len(w) > 0 {
		if len(w)%2 != 0 {
			return fmt.Errorf("emul: bme280: odd write length %d", len(w))
		}
		for i := 0; i < len(w); i += 2 {
			c.write(f, w[i], w[i+1])
		}
	}
	if len(r) > 0 {
		mode := c.regs[0xF4] & 3
		if mode == 3 && c.ptr <= 0xFE && int(c.ptr)+len(r) > 0xF7 && !time.Now().Before(c.firstAt) {
			c.convert(f) // normal mode: a fresh conversion is always there once the first ended
		}
		for i := range r {
			r[i] = c.regs[byte(int(c.ptr)+i)]
		}
	}
	return nil
}

func (c *BME280) write(f Fault, reg, v byte) {
	switch reg {
	case 0xE0:
		if v == 0xB6 {
			c.PowerOnReset()
		}
	case 0xF2:
		if c.isBME {
			c.regs[0xF2] = v & 7
		}
	case 0xF4:
		if v&3 == 3 && c.regs[0xF4]&3 != 3 {
			c.firstAt = time.Now().Add(c.conversion(v))
		}
		c.regs[0xF4] = v
		c.hum = c.regs[0xF2]
		if v&3 == 1 || v&3 == 2 {
			c.convert(f)
			c.regs[0xF4] &^= 3 // back to sleep after a forced conversion
		}
	case 0xF5:
		c.regs[0xF5] = v &^ 2
	}
}

// conversion is the longest a conversion takes with ctrl_meas v and the
// latched ctrl_hum (datasheet 9.1, t_measure,max).
func (c *BME280) conversion(v byte) time.Duration {
	os := func(bits byte) int {
		if bits&7 == 0 {
			return 0
		}
		return 1 << (min(bits&7, 5) - 1)
	}
	us := 1250 + 2300*os(v>>5)
	if n := os(v >> 2); n > 0 {
		us += 2300*n + 575
	}
	if n := os(c.regs[0xF2]); c.isBME && n > 0 {
		us += 2300*n + 575
	}
	return time.Duration(us) * time.Microsecond
}

func (c *BME280) convert(f Fault) {
	if f&Stuck != 0 {
		return
	}
	c.next()
	var t, p, h int32
	switch {
	case f&OutOfRange != 0:
		t, p, h = 0xFFFFF, 0, 0xFFFF
	case c.raw:
		t, p, h = c.adcT, c.adcP, c.adcH
	default:
		var tFine int32
		t, tFine = c.invertT(c.get("temperature", 0.05))
		p = c.invertP(c.get("pressure", 0.05), tFine)
		if c.isBME {
			h = c.invertH(c.get("humidity", 0.1), tFine)
		}
	}
	if c.regs[0xF4]>>5 == 0 {
		t = 0x80000
	}
	if (c.regs[0xF4]>>2)&7 == 0 {
		p = 0x80000
	}
	if c.hum&7 == 0 {
		h = 0x8000
	}
	c.putADC(t, p, h)
}

// CompensateT is the datasheet's 32-bit integer temperature compensation:
// 0.01 °C units and t_fine.
func (c *BME280) CompensateT(adc int32) (int32, int32) {
	v1 := ((adc>>3 - c.t1<<1) * c.t2) >> 11
	v2 := (((adc>>4 - c.t1) * (adc>>4 - c.t1) >> 12) * c.t3) >> 14
	tf := v1 + v2
	return (tf*5 + 128) >> 8, tf
}

// CompensateP is the datasheet's 64-bit integer pressure compensation, in
// Pa as Q24.8.
func (c *BME280) CompensateP(adc, tFine int32) uint32 {
	p := c.p
	v1 := int64(tFine) - 128000
	v2 := v1 * v1 * p[5]
	v2 += (v1 * p[4]) << 17
	v2 += p[3] << 35
	v1 = (v1*v1*p[2])>>8 + (v1*p[1])<<12
	v1 = ((int64(1)<<47 + v1) * p[0]) >> 33
	if v1 == 0 {
		return 0
	}
	q := int64(1048576 - adc)
	q = ((q<<31 - v2) * 3125) / v1
	v1 = (p[8] * (q >> 13) * (q >> 13)) >> 25
	v2 = (p[7] * q) >> 19
	return uint32((q+v1+v2)>>8 + p[6]<<4)
}

// CompensateH is the datasheet's 32-bit integer humidity compensation, in
// %RH as Q22.10.
func (c *BME280) CompensateH(adc, tFine int32) uint32 {
	v := tFine - 76800
	a := (adc<<14 - c.h4<<20 - c.h5*v + 16384) >> 15
	b := (((((v*c.h6)>>10)*(((v*c.h3)>>11)+32768))>>10+2097152)*c.h2 + 8192) >> 14
	v = a * b
	v -= ((((v >> 15) * (v >> 15)) >> 7) * c.h1) >> 4
	v = max(v, 0)
	v = min(v, 419430400)
	return uint32(v >> 12)
}

// invertT finds the raw temperature whose compensation is closest to t °C.
func (c *BME280) invertT(t float64) (int32, int32) {
	want := int32(math.Round(t * 100))
	raw := search(0, 1<<20-1, func(x int32) bool { v, _ := c.CompensateT(x); return v >= want })
	raw = closest(raw, func(x int32) float64 { v, _ := c.CompensateT(x); return math.Abs(float64(v - want)) })
	_, tf := c.CompensateT(raw)
	return raw, tf
}

func (c *BME280) invertP(hPa float64, tFine int32) int32 {
	want := hPa * 100 * 256
	// Pressure falls as the ADC count rises.
	raw := search(0, 1<<20-1, func(x int32) bool { return float64(c.CompensateP(x, tFine)) <= want })
	return closest(raw, func(x int32) float64 { return math.Abs(float64(c.CompensateP(x, tFine)) - want) })
}

func (c *BME280) invertH(rh float64, tFine int32) int32 {
	want := rh * 1024
	raw := search(0, 1<<16-1, func(x int32) bool { return float64(c.CompensateH(x, tFine)) >= want })
	return closest(raw, func(x int32) float64 { return math.Abs(float64(c.CompensateH(x, tFine)) - want) })
}

// search returns the smallest x in [lo, hi] with ok(x), or hi; ok must be
// monotonic over the range.
func search(lo, hi int32, ok func(int32) bool) int32 {
	for lo < hi {
		mid := lo + (hi-lo)/2
		if ok(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// closest picks, among x and its neighbour below, the one with the smaller
// error.
func closest(x int32, errOf func(int32) float64) int32 {
	if x > 0 && errOf(x-1) < errOf(x) {
		return x - 1
	}
	return x
}

// Reg returns a register's content, for tests checking what a driver
// programmed.
func (c *BME280) Reg(r byte) byte { return c.regs[r] }
