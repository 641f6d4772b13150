package config

import (
	"bytes"
	"fmt"
	"io"

	"github.com/BurntSushi/toml"
)

const mask = "********"

// Masked returns a copy of c with every secret replaced by asterisks, safe to
// print or log.
func (c *Config) Masked() *Config {
	m := *c
	if m.Device.DeviceSecret != "" {
		m.Device.DeviceSecret = mask
	}
	if m.Uplink.Password != "" {
		m.Uplink.Password = mask
	}
	m.Sensors = append([]Sensor(nil), c.Sensors...)
	return &m
}

// WriteEffective writes the effective configuration (defaults applied,
// secrets masked) as TOML.
func (c *Config) WriteEffective(w io.Writer) error {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# effective configuration of %s (defaults applied, secrets masked)\n", c.File)
	if err := toml.NewEncoder(&buf).Encode(c.Masked()); err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}
