package emul

import (
	"fmt"
	"sort"
	"strings"
)

// values is what a chip measures. With jitter on, every other conversion
// adds one step to each value, the way a real chip's noise moves its last
// digit: an emulated chip left running in the demo is not mistaken for a
// frozen one, and tests that want exact values leave it off.
type values struct {
	v      map[string]float64
	jitter bool
	tick   uint32
}

func newValues(defaults map[string]float64) values {
	v := make(map[string]float64, len(defaults))
	for k, x := range defaults {
		v[k] = x
	}
	return values{v: v}
}

func (vs *values) set(m string, x float64) error {
	if _, ok := vs.v[m]; !ok {
		names := make([]string, 0, len(vs.v))
		for k := range vs.v {
			names = append(names, k)
		}
		sort.Strings(names)
		return fmt.Errorf("emul: chip does not measure %q (it measures %s)", m, strings.Join(names, ", "))
	}
	vs.v[m] = x
	return nil
}

// next starts a conversion.
func (vs *values) next() { vs.tick++ }

func (vs *values) get(m string, step float64) float64 {
	x := vs.v[m]
	if vs.jitter && vs.tick%2 == 1 {
		x += step
	}
	return x
}

// Jitterer is implemented by chips whose values can wiggle by one step
// between conversions (see SetJitter).
type Jitterer interface {
	SetJitter(on bool)
}

// SetJitter turns the one-step wiggle on or off.
func (vs *values) SetJitter(on bool) { vs.jitter = on }
