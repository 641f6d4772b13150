package emul_test

import (
	"math"
	"testing"

	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/bmxx80"

	"gatewayd/sensors/emul"
)

// The worked example of the BMP280 datasheet (section 3.12, repeated in the
// BME280 datasheet section 8): with dig_T1..3 = 27504, 26435, -1000 and
// dig_P1..9 = 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000, the
// raw values adc_T = 519888 and adc_P = 415148 compensate to 25.08 °C and
// 100653 Pa. The real periph driver must read exactly that from the chip.
func TestBME280DatasheetExample(t *testing.T) {
	for _, mk := range []struct {
		name string
		chip *emul.BME280
	}{{"bme280", emul.NewBME280()}, {"bmp280", emul.NewBMP280()}} {
		t.Run(mk.name, func(t *testing.T) {
			c := mk.chip
			c.SetRaw(519888, 415148, 0x6000)
			tc, tFine := c.CompensateT(519888)
			if tc != 2508 || tFine != 128422 {
				t.Fatalf("emulator compensation: T=%d t_fine=%d, datasheet: 2508, 128422", tc, tFine)
			}
			b := emul.NewBus("test")
			if err := b.Add(0x77, c); err != nil {
				t.Fatal(err)
			}
			opts := bmxx80.Opts{Temperature: bmxx80.O1x, Pressure: bmxx80.O1x, Humidity: bmxx80.O1x}
			d, err := bmxx80.NewI2C(b, 0x77, &opts)
			if err != nil {
				t.Fatal(err)
			}
			var e physic.Env
			if err := d.Sense(&e); err != nil {
				t.Fatal(err)
			}
			if got := e.Temperature - physic.ZeroCelsius; got != 25080*physic.MilliKelvin {
				t.Errorf("temperature = %s, datasheet 25.08 °C", e.Temperature)
			}
			// The datasheet gives 100653 Pa (its floating-point formula
			// 100653.27 Pa); the 64-bit integer formula lands within
			// its 1/256 Pa resolution of the same pascal.
			pa := float64(e.Pressure) / float64(physic.Pascal)
			if math.Round(pa) != 100653 || math.Abs(pa-100653.27) > 0.05 {
				t.Errorf("pressure = %.4f Pa, datasheet 100653 Pa", pa)
			}
			if q := c.CompensateP(415148, tFine); float64(q)/256 != pa {
				t.Errorf("emulator's own compensation %d/256 Pa differs from the driver's %.4f Pa", q, pa)
			}
		})
	}
}

// Inverting the compensation must round-trip through the driver across the
// chip's whole operating range, within the driver's output resolution.
func TestBME280RoundTrip(t *testing.T) {
	c := emul.NewBME280()
	b := emul.NewBus("test")
	if err := b.Add(0x76, c); err != nil {
		t.Fatal(err)
	}
	opts := bmxx80.Opts{Temperature: bmxx80.O1x, Pressure: bmxx80.O1x, Humidity: bmxx80.O1x}
	d, err := bmxx80.NewI2C(b, 0x76, &opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ t, h, p float64 }{
		{-40, 0, 300}, {-12.34, 5.5, 500}, {0, 33.3, 870.5}, {21.5, 45, 1013.25},
		{37.77, 80.25, 1050}, {60, 99.9, 1100}, {85, 100, 950},
	} {
		for m, v := range map[string]float64{"temperature": tc.t, "humidity": tc.h, "pressure": tc.p} {
			if err := c.Set(m, v); err != nil {
				t.Fatal(err)
			}
		}
		var e physic.Env
		if err := d.Sense(&e); err != nil {
			t.Fatal(err)
		}
		gt := float64(e.Temperature-physic.ZeroCelsius) / float64(physic.Celsius)
		gh := float64(e.Humidity) / float64(physic.PercentRH)
		gp := float64(e.Pressure) / float64(100*physic.Pascal)
		// Temperature: 0.01 °C output steps; humidity 1/1024 %RH; pressure
		// one ADC count is about 0.02 hPa at the extremes.
		if math.Abs(gt-tc.t) > 0.0101 || math.Abs(gh-tc.h) > 0.01 || math.Abs(gp-tc.p) > 0.03 {
			t.Errorf("set %.2f °C %.2f %%RH %.2f hPa, driver read %.4f °C %.4f %%RH %.4f hPa", tc.t, tc.h, tc.p, gt, gh, gp)
		}
	}
}
