// Package sht drives Sensirion's SHT3x (SHT30/31/35) and SHT4x
// (SHT40/41/43/45) humidity and temperature sensors over I²C, shaped like a
// periph.io device driver: it takes an i2c.Bus it does not own,
// NewI2C(bus, addr, opts) with DefaultOpts, Sense(*physic.Env), Halt.
//
// periph has no driver for these very common breakout-board chips. Both use
// single-shot measurements without clock stretching (clock stretching is
// unreliable on the Raspberry Pi's I²C controller), and every 16-bit word
// they send carries a CRC-8 (polynomial 0x31, init 0xFF) which is checked:
// a bad CRC is an error, never a value.
//
// What this package must never do: import anything of gatewayd beyond the
// standard library and periph's conn, close or reconfigure the bus, or
// return a value whose CRC did not match.
//
// Datasheets:
//   - SHT3x-DIS: https://sensirion.com/media/documents/213E6A3B/63A5A569/Datasheet_SHT3x_DIS.pdf
//   - SHT4x: https://sensirion.com/media/documents/33FD6951/67EB9032/HT_DS_Datasheet_SHT4x_5.pdf
package sht
