package emul

import (
	"fmt"
	"math"
)

// The DS18B20's scratchpad and the text the kernel's w1_therm driver prints
// for it, written here from the datasheet and the driver, apart from the
// product's parser in sensors/w1: the emulator must not share the code it
// is there to check.

// scratchpad is the DS18B20's 9-byte scratchpad after a 12-bit conversion
// of celsius (datasheet figure 7): temperature LSB, MSB (two's complement,
// 1/16 °C), TH, TL, configuration (0x7F: 12 bits), three reserved bytes
// (0xFF, 0x0C, 0x10 on real parts) and the CRC of the first eight.
func scratchpad(celsius float64) [9]byte {
	raw := int16(math.Round(celsius * 16)) // the converter's 1/16 °C step
	p := [9]byte{byte(uint16(raw)), byte(uint16(raw) >> 8), 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10}
	p[8] = dallasCRC8(p[:8])
	return p
}

// dallasCRC8 is the 1-Wire CRC (x^8 + x^5 + x^4 + 1, LSB first, initial 0;
// Maxim application note 27), bit by bit as the hardware shifts it.
func dallasCRC8(b []byte) byte {
	var crc byte
	for _, x := range b {
		for i := 0; i < 8; i++ {
			mix := (crc ^ x) & 1
			crc >>= 1
			if mix != 0 {
				crc ^= 0x8C
			}
			x >>= 1
		}
	}
	return crc
}

// w1SlaveText is what reading w1_slave returns: the nine bytes as read, the
// CRC the driver computed over the first eight and its verdict, then the
// bytes again with the temperature in m°C. A transfer that garbled the CRC
// byte (badCRC) shows the driver's "NO".
func w1SlaveText(p [9]byte, badCRC bool) []byte {
	if badCRC {
		p[8] ^= 0xA5
	}
	computed := dallasCRC8(p[:8])
	verdict := "YES"
	if computed != p[8] {
		verdict = "NO"
	}
	var bytes []byte
	for _, x := range p {
		bytes = fmt.Appendf(bytes, "%02x ", x)
	}
	raw := int(int16(uint16(p[0]) | uint16(p[1])<<8))
	milli := raw * 1000 / 16 // the driver's integer arithmetic, truncating
	return fmt.Appendf(nil, "%s: crc=%02x %s\n%st=%d\n", bytes, computed, verdict, bytes, milli)
}
