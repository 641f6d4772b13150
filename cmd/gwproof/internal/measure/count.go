package measure

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// Value is one property value a platform accepted: the device that sent
// it, the property and the time it was taken.
type Value struct {
	Device   string
	Property string
	Time     time.Time // when the sample was taken
	Received time.Time // when the platform got it
}

// SampleKey identifies one sensor sample among accepted values: the
// harness names properties "<sensor>_<measurement>" (s0_temperature), and a
// sample's values share its sensor and its time.
type SampleKey struct {
	Device, Sensor string
	MS             int64
}

// SensorOf returns the sensor part of a harness property name
// ("s0_temperature" -> "s0"); a name without "_" is its own sensor.
func SensorOf(prop string) string {
	s, _, _ := strings.Cut(prop, "_")
	return s
}

// Samples groups accepted values into sensor samples and counts how often
// each value was accepted (a value accepted twice is a duplicate, not a
// second sample).
func Samples(vs []Value) map[SampleKey]int {
	m := map[SampleKey]int{}
	for _, v := range vs {
		m[SampleKey{v.Device, SensorOf(v.Property), v.Time.UnixMilli()}]++
	}
	return m
}

// SamplesIn counts the distinct samples of device whose values the
// platform accepted with an arrival time in [from, to).
func SamplesIn(vs []Value, device string, from, to time.Time) int {
	seen := map[SampleKey]bool{}
	for _, v := range vs {
		if v.Device != device {
			continue
		}
		if v.Received.Before(from) || !v.Received.Before(to) {
			continue
		}
		seen[SampleKey{v.Device, SensorOf(v.Property), v.Time.UnixMilli()}] = true
	}
	return len(seen)
}

// BusiestSecond returns the largest number of the given times that fall in
// any window [t, t+w) (a sliding window, not aligned to clock seconds) and
// where that window starts.
func BusiestSecond(times []time.Time, w time.Duration) (int, time.Time) {
	ts := slices.Clone(times)
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	best, at := 0, time.Time{}
	j := 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= w {
			j++
		}
		if n := i - j + 1; n > best {
			best, at = n, ts[j]
		}
	}
	return best, at
}

// Within returns the offsets from from of the times in [from, from+w),
// sorted: what a busiest window looked like (a burst after a stall, or an
// even spread).
func Within(times []time.Time, from time.Time, w time.Duration) []time.Duration {
	var ds []time.Duration
	for _, t := range times {
		if d := t.Sub(from); d >= 0 && d < w {
			ds = append(ds, d)
		}
	}
	slices.Sort(ds)
	return ds
}

// Millis prints durations as whole milliseconds: "0 3 48 ...".
func Millis(ds []time.Duration) string {
	var b strings.Builder
	for i, d := range ds {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatInt(d.Milliseconds(), 10))
	}
	return b.String()
}
