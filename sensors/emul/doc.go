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
// Values and faults can be changed directly (Set, Inject, Reset) or
// scripted over time (Bus.Script).
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
// Deliberate simplifications: conversions are instant; the SCD4x
// acknowledges wake_up when idle (the real chip never does, which costs
// periph's driver a 550 ms detour with the same outcome).
//
// Datasheets (register maps and transfer functions emulated):
//   - BME280: https://www.bosch-sensortec.com/media/boschsensortec/downloads/datasheets/bst-bme280-ds002.pdf
//   - BMP280: https://www.bosch-sensortec.com/media/boschsensortec/downloads/datasheets/bst-bmp280-ds001.pdf
//   - AHT20: http://www.aosong.com/userfiles/files/media/AHT20%20%E8%8B%B1%E6%96%87%E7%89%88%E8%AF%B4%E6%98%8E%E4%B9%A6%20A0%202020-12-8.pdf
//   - SHT3x: https://sensirion.com/media/documents/213E6A3B/63A5A569/Datasheet_SHT3x_DIS.pdf
//   - SHT4x: https://sensirion.com/media/documents/33FD6951/67EB9032/HT_DS_Datasheet_SHT4x_5.pdf
//   - SCD4x: https://sensirion.com/media/documents/48C4B7FB/64C134E7/Sensirion_SCD4x_Datasheet.pdf
//   - HDC302x: https://www.ti.com/lit/ds/symlink/hdc3020.pdf
//   - MCP9808: https://ww1.microchip.com/downloads/en/DeviceDoc/25095A.pdf
//   - TMP102: https://www.ti.com/lit/ds/symlink/tmp102.pdf
//   - TCA9548A: https://www.ti.com/lit/ds/symlink/tca9548a.pdf
//   - DS18B20 (W1): https://www.analog.com/media/en/technical-documentation/data-sheets/DS18B20.pdf
package emul
