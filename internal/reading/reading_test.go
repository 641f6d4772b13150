package reading

import "testing"

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		v, res float64
		want   string
	}{
		{1009.2492578125, 0.01, "1009.25"},
		{20, 0.01, "20.0"},
		{20.5, 0.01, "20.5"},
		{-3.004, 0.01, "-3.0"},
		{-3.006, 0.01, "-3.01"},
		{415, 1, "415.0"},
		{21.0625, 0.0625, "21.0625"},
		{12, 0, "12.0"},
		{1e21, 0, "1000000000000000000000.0"},
		{1e10, 1e-300, "10000000000.0"}, // v/res overflows: full precision, never +Inf
	} {
		if got := string(Format(nil, c.v, c.res)); got != c.want {
			t.Errorf("Format(%v, %v) = %s, want %s", c.v, c.res, got, c.want)
		}
	}
}

func TestDigits(t *testing.T) {
	for res, want := range map[float64]int{0: 0, 1: 0, 0.1: 1, 0.01: 2, 0.0625: 4, 0.001: 3, 0.5: 1, 0.25: 2} {
		if got := Digits(res); got != want {
			t.Errorf("Digits(%v) = %d, want %d", res, got, want)
		}
	}
}
