package sht

import "testing"

// Golden CRCs: the datasheets' example (SHT3x section 4.12, SHT4x 4.4)
// 0xBEEF -> 0x92, and the all-zero word 0x0000 -> 0x81 that Sensirion's
// SCD4x datasheet shows in its command examples.
func TestCRC8(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want byte
	}{
		{[]byte{0xBE, 0xEF}, 0x92},
		{[]byte{0x00, 0x00}, 0x81},
		{[]byte{}, 0xFF},
	} {
		if got := CRC8(tc.in); got != tc.want {
			t.Errorf("CRC8(% x) = %#02x, want %#02x", tc.in, got, tc.want)
		}
	}
}

// Conversion formulas at their datasheet end points and middle.
func TestConversions(t *testing.T) {
	for _, tc := range []struct {
		s         uint16
		t, h3, h4 float64
	}{
		{0, -45, 0, 0},
		{0xFFFF, 130, 100, 100},
		{0x6666, -45 + 175*0.4, 40, -6 + 125*0.4},
	} {
		gt := float64(temperature(tc.s)-273150000000) / 1e9
		g3 := float64(humidity3x(tc.s)) / 1e5
		g4 := float64(humidity4x(tc.s)) / 1e5
		if abs(gt-tc.t) > 1e-6 || abs(g3-tc.h3) > 1e-5 || abs(g4-tc.h4) > 1e-5 {
			t.Errorf("S=%#04x: T %.6f (want %.6f) RH3 %.6f (want %.6f) RH4 %.6f (want %.6f)", tc.s, gt, tc.t, g3, tc.h3, g4, tc.h4)
		}
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
