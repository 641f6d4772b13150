// Package sensors is gatewayd's sensor layer: it turns configured chips into
// stamped samples handed to a reading.Sink. One read of one chip is one
// reading.Sample: the sensor, one stamp and its measurements, each value
// carrying the resolution it is kept and sent at (the chip's by default,
// "<measurement>_resolution" in the options to override; see README.md).
//
// A Set is built from Specs (one per configured sensor). Run starts one
// sampling loop per sensor; each loop reads its chip through the chip's
// driver — periph.io's own drivers where periph has one (bmxx80, aht20,
// scd4x, hdc302x, mcp9808, tmp102), ours in sensors/sht for the Sensirion
// SHT3x/SHT4x, the kernel's 1-Wire sysfs (sensors/w1) for the DS18B20 —
// stamps the sample the moment the chip answered, and appends it.
//
// Field failures are part of the design, not exceptions: a chip that stops
// answering is counted, logged at a limited rate, closed and re-initialised
// with capped exponential backoff, while the other sensors go on; values
// outside the chip's physical range are rejected; values that do not move at
// all for Options.StuckAfter are flagged as stuck and withheld (a frozen
// BME280 otherwise reports the same plausible number for days); a chip that
// lost its configuration in a brown-out is detected where the chip lets us
// read the configuration back, and re-initialised.
//
// `bus = "emulated"` (or "emulated:<name>") places register-level emulated
// chips (sensors/emul) on an in-memory bus, so the real drivers run without
// hardware: the demo, `gatewayd scan/read` and the tests use it.
//
// What this package must never do: import buffer/ or uplink/ (samples leave
// only through reading.Sink), own a bus it did not open (drivers take an
// i2c.Bus; Close closes only what the Set opened), exit or panic, or let one
// sensor's failure stop another sensor's loop.
//
// Datasheets (the physical ranges and reset behaviour used here come from
// them):
//   - BME280: https://www.bosch-sensortec.com/media/boschsensortec/downloads/datasheets/bst-bme280-ds002.pdf
//   - BMP280: https://www.bosch-sensortec.com/media/boschsensortec/downloads/datasheets/bst-bmp280-ds001.pdf
//   - AHT20: http://www.aosong.com/userfiles/files/media/AHT20%20%E8%8B%B1%E6%96%87%E7%89%88%E8%AF%B4%E6%98%8E%E4%B9%A6%20A0%202020-12-8.pdf
//   - SCD4x: https://sensirion.com/media/documents/48C4B7FB/64C134E7/Sensirion_SCD4x_Datasheet.pdf
//   - HDC302x: https://www.ti.com/lit/ds/symlink/hdc3020.pdf
//   - MCP9808: https://ww1.microchip.com/downloads/en/DeviceDoc/25095A.pdf
//   - TMP102: https://www.ti.com/lit/ds/symlink/tmp102.pdf
//   - SHT3x / SHT4x: see package sht
//   - DS18B20: see package w1
//   - TCA9548A: https://www.ti.com/lit/ds/symlink/tca9548a.pdf
package sensors
