package w1

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// Maxim application note 27's worked example: the ROM 02 1C B8 01 00 00 00
// has CRC 0xA2. And the w1_slave line commonly quoted from a Raspberry Pi
// (scratchpad 72 01 4b 46 7f ff 0e 10, crc=57) must check out.
func TestCRCGolden(t *testing.T) {
	if got := CRC([]byte{0x02, 0x1C, 0xB8, 0x01, 0x00, 0x00, 0x00}); got != 0xA2 {
		t.Errorf("AN27 example: crc %#02x, want 0xA2", got)
	}
	if got := CRC([]byte{0x72, 0x01, 0x4b, 0x46, 0x7f, 0xff, 0x0e, 0x10}); got != 0x57 {
		t.Errorf("field example: crc %#02x, want 0x57", got)
	}
}

// DS18B20 datasheet table 1, temperature/data relationship (12-bit).
func TestDatasheetTable(t *testing.T) {
	for _, tc := range []struct {
		c   float64
		raw uint16
	}{
		{125, 0x07D0}, {25.0625, 0x0191}, {10.125, 0x00A2}, {0.5, 0x0008}, {0, 0x0000},
		{-0.5, 0xFFF8}, {-10.125, 0xFF5E}, {-25.0625, 0xFE6F}, {-55, 0xFC90},
	} {
		b := Format(tc.c, false)
		if want := []byte{byte(tc.raw), byte(tc.raw >> 8)}; !strings.HasPrefix(string(b), hex2(want)) {
			t.Errorf("%g °C: scratchpad %q, want it to start with %s", tc.c, b, hex2(want))
		}
		got, err := Parse(b)
		if err != nil || got != int(tc.c*1000) {
			t.Errorf("%g °C: Parse = %d, %v", tc.c, got, err)
		}
	}
}

func hex2(b []byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[b[0]>>4], digits[b[0]&15], ' ', digits[b[1]>>4], digits[b[1]&15]})
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want int
		err  error
	}{
		{"ok", "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n", 23125, nil},
		{"kernel crc NO", "72 01 4b 46 7f ff 0e 10 57 : crc=57 NO\n72 01 4b 46 7f ff 0e 10 57 t=23125\n", 0, ErrCRC},
		{"crc wrong but YES", "72 01 4b 46 7f ff 0e 10 58 : crc=58 YES\n72 01 4b 46 7f ff 0e 10 58 t=23125\n", 0, ErrCRC},
		{"power-on 85", string(Format(85, false)), 0, ErrPowerOn},
		{"all zeros", "00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0\n", 0, ErrFormat},
		{"t disagrees", "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=43125\n", 0, ErrFormat},
		{"copies differ", "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n73 01 4b 46 7f ff 0e 10 57 t=23125\n", 0, ErrFormat},
		{"one line", "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n", 0, ErrFormat},
		{"empty", "", 0, ErrFormat},
		{"no t", "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57\n", 0, ErrFormat},
		{"short pad", "72 01 4b 46 7f ff 0e 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 57 t=23125\n", 0, ErrFormat},
		{"bad verdict", "72 01 4b 46 7f ff 0e 10 57 : crc=57 MAYBE\n72 01 4b 46 7f ff 0e 10 57 t=23125\n", 0, ErrFormat},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.in))
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Fatalf("Parse = %d, %v; want %d, %v", got, err, tc.want, tc.err)
			}
		})
	}
}

// The fixture tree is a copy of a Pi's /sys/bus/w1/devices with two sensors
// and the bus master directory.
func TestFixtureTree(t *testing.T) {
	root := os.DirFS("testdata/devices")
	ids, err := List(root)
	if err != nil || len(ids) != 2 || ids[0] != "28-00000a1b2c3d" || ids[1] != "28-0316a2791dff" {
		t.Fatalf("List = %v, %v", ids, err)
	}
	if _, err := Find(root, ""); err == nil {
		t.Fatal("Find with two sensors and no id must ask for one")
	}
	for id, want := range map[string]float64{"28-0316a2791dff": 23.125, "28-00000a1b2c3d": -10.125} {
		got, err := Read(root, id)
		if err != nil || got != want {
			t.Errorf("Read(%s) = %v, %v; want %v", id, got, err, want)
		}
	}
	if _, err := Read(root, "28-000000000000"); err == nil {
		t.Error("reading a missing sensor succeeded")
	}
}

// Parse is fed text from the kernel; whatever it gets, it must not panic,
// and what it accepts must be a DS18B20 temperature the kernel vouched for.
func FuzzParse(f *testing.F) {
	f.Add([]byte("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"))
	f.Add(Format(-55, false))
	f.Add(Format(85, false))
	f.Add(Format(20, true))
	f.Add([]byte("00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		mc, err := Parse(b)
		if err != nil {
			if mc != 0 {
				t.Fatalf("error %v with value %d", err, mc)
			}
			return
		}
		if !strings.Contains(string(b), " YES\n") {
			t.Fatalf("accepted text without the kernel's YES: %q", b)
		}
		if mc < -128000 || mc > 128000 || mc == 85000 {
			t.Fatalf("accepted %d m°C from %q", mc, b)
		}
	})
}
