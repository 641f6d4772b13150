package sensors

import (
	"context"
	"testing"

	"gatewayd/sensors/emul"
)

// Options reach the chip: what the driver programmed is read back from the
// emulated registers.
func TestOptionsReachTheChip(t *testing.T) {
	specs := []Spec{
		{Name: "bme", Driver: "bme280", Bus: "emulated", Options: map[string]string{
			"temperature_oversampling": "2", "pressure_oversampling": "8", "humidity_oversampling": "1",
			"filter": "16", "standby": "500ms"}},
		{Name: "bmp", Driver: "bmp280", Bus: "emulated", Address: 0x77, Options: map[string]string{"oversampling": "16"}},
		{Name: "sht-heat", Driver: "sht3x", Bus: "emulated", Options: map[string]string{"heater": "on", "repeatability": "medium"}},
		{Name: "sht-cool", Driver: "sht3x", Bus: "emulated", Address: 0x45},
		{Name: "mcp", Driver: "mcp9808", Bus: "emulated", Options: map[string]string{"resolution": "0.5"}},
		{Name: "tmp", Driver: "tmp102", Bus: "emulated", Options: map[string]string{"rate": "8"}},
		{Name: "co2", Driver: "scd4x", Bus: "emulated", Options: map[string]string{"mode": "low-power"}},
		{Name: "hdc", Driver: "hdc302x", Bus: "emulated", Address: 0x46, Options: map[string]string{"rate": "10"}},
	}
	s, b := mustSet(t, specs, nil)
	// The SHT3x at 0x45 had its heater left on by "an earlier program".
	b.Chip(0x45).(*emul.SHT).Tx(0, []byte{0x30, 0x6D}, nil)
	for _, r := range s.ReadOnce(context.Background()) {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.Sensor, r.Err)
		}
	}
	bme := b.Chip(0x76).(*emul.BME280)
	// osrs_t=2x (010), osrs_p=8x (100), normal mode (11); standby 500 ms
	// (100), filter 16 (100): BME280 datasheet tables 25-28.
	if h, m, c := bme.Reg(0xF2), bme.Reg(0xF4), bme.Reg(0xF5); h != 0x01 || m != 0x53 || c != 0x90 {
		t.Errorf("bme280 ctrl_hum %#02x ctrl_meas %#02x config %#02x, want 0x01 0x53 0x90", h, m, c)
	}
	// Forced mode: the chip is back to sleep, oversampling 16x both.
	if m := b.Chip(0x77).(*emul.BME280).Reg(0xF4); m != 0xB4 {
		t.Errorf("bmp280 ctrl_meas %#02x, want 0xb4", m)
	}
	if st := b.Chip(0x44).(*emul.SHT).Status(); st&(1<<13) == 0 {
		t.Errorf("sht3x heater not on: status %#04x", st)
	}
	if st := b.Chip(0x45).(*emul.SHT).Status(); st&(1<<13) != 0 {
		t.Errorf("sht3x heater left on: status %#04x", st)
	}
	if r := b.Chip(0x18).(*emul.MCP9808).Resolution(); r != 0 {
		t.Errorf("mcp9808 resolution register %d, want 0 (0.5 °C)", r)
	}
	if c := b.Chip(0x48).(*emul.TMP102).Config(); c>>6&3 != 3 || c&0x0100 != 0 {
		t.Errorf("tmp102 config %#04x, want CR=11 (8 Hz), running", c)
	}
	if m := b.Chip(0x62).(*emul.SCD4x).Mode(); m != "low-power" {
		t.Errorf("scd4x in %s mode", m)
	}
	if !b.Chip(0x46).(*emul.HDC302x).Auto() {
		t.Error("hdc302x not in auto mode")
	}
	// Close halts what can be halted: the HDC302x leaves auto mode.
	s.Close(context.Background())
	if b.Chip(0x46).(*emul.HDC302x).Auto() {
		t.Error("hdc302x still measuring after Close")
	}
}
