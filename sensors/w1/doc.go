// Package w1 reads DS18B20 temperature sensors through the Linux kernel's
// 1-Wire sysfs interface (w1-gpio + w1_therm): each sensor is a directory
// /sys/bus/w1/devices/28-xxxxxxxxxxxx whose w1_slave file, when read, makes
// the kernel run a conversion and prints the scratchpad twice:
//
//	72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
//	72 01 4b 46 7f ff 0e 10 57 t=23125
//
// The root is an fs.FS, so production passes os.DirFS("/sys/bus/w1/devices")
// and tests pass a fixture tree.
//
// What this package must never do: trust a reading the kernel marked
// "crc=.. NO", a scratchpad whose CRC or temperature bytes disagree with the
// text, or the 85 °C power-on value (the scratchpad's content before the
// first conversion — what a sensor that browned out mid-conversion returns);
// write to sysfs; or block without the kernel's own bound (a conversion
// takes at most 750 ms at 12 bits).
//
// Datasheet: https://www.analog.com/media/en/technical-documentation/data-sheets/DS18B20.pdf
// Kernel: https://docs.kernel.org/w1/slaves/w1_therm.html
package w1
