// Package emul holds register-level emulations of the I²C sensor chips
// gatewayd supports, behind periph's i2c.Bus interface, so that the real
// periph drivers (and our own SHT drivers) run unchanged in tests, in the
// demo and in `gatewayd scan`/`read` against `bus = "emulated"`.
//
// A Bus holds several chips (and TCA9548A multiplexers with chips behind
// them), routes each transaction by address, and injects the faults field
// engineers meet: a chip that does not acknowledge (absent, hung), a bus
// timeout, corrupted CRCs, frozen raw values, a power-on reset that loses the
// chip's configuration, and converter outputs at full scale.
//
// Each chip keeps physical values (set with Set) and turns them into the raw
// register contents the datasheet's conversion formulas map back to those
// values; for the Bosch chips that means inverting the integer compensation
// numerically against the emulated chip's calibration words.
//
// What this package must never do: sleep for datasheet conversion times (a
// conversion completes the moment it is started; the drivers still do their
// own waiting), talk to real hardware, or be imported by product code paths
// other than the "emulated" bus option.
//
// Datasheets:
//   - BME280: https://www.bosch-sensortec.com/media/boschsensortec/downloads/datasheets/bst-bme280-ds002.pdf
//   - BMP280: https://www.bosch-sensortec.com/media/boschsensortec/downloads/datasheets/bst-bmp280-ds001.pdf
package emul
