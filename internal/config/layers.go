package config

import (
	"errors"
	"fmt"
	"strings"

	"gatewayd/buffer"
	"gatewayd/internal/field"
	"gatewayd/sensors"
	"gatewayd/uplink"
)

// Each layer owns its options' defaults and bounds (Validate, Check); the
// config package builds the layers' options from the file and points each
// of their field errors at its file:line:key, here and nowhere else. The
// caller adds what is not in the file (logger, callbacks, the secret read
// from device_secret_file).

// UplinkOptions is the uplink's part of the file.
func (c *Config) UplinkOptions(secret string) uplink.Options {
	u := c.Uplink
	o := uplink.Options{
		Platform:             u.Platform,
		ProductKey:           c.Device.ProductKey,
		DeviceName:           c.Device.DeviceName,
		DeviceSecret:         secret,
		Endpoint:             u.Endpoint,
		Region:               u.Region,
		TLS:                  u.UseTLS(),
		CAFile:               c.Path(u.CAFile),
		CAReplace:            u.CAReplace,
		ServerName:           u.ServerName,
		SignMethod:           u.SignMethod,
		Keepalive:            u.Keepalive.Duration,
		ClientID:             u.ClientID,
		MaxMessagesPerSecond: u.MaxMessagesPerSecond,
		MaxDelay:             u.MaxDelay.Duration,
		ControlTopic:         u.ControlTopic,
	}
	if o.MaxDelay == 0 {
		o.MaxDelay = uplink.NoDelay // "0s" in the file: send every sample at once
	}
	if u.QoS != nil && u.Platform != uplink.PlatformMQTT {
		o.PostQoS = *u.QoS
	}
	if u.Platform == uplink.PlatformMQTT {
		scheme := "tcp://"
		if u.UseTLS() {
			scheme = "tls://"
		}
		o.Broker = ""
		if u.Endpoint != "" {
			o.Broker = scheme + u.Endpoint
		}
		o.Username, o.Password = u.Username, u.Password
		o.ClientCert, o.ClientKey = c.Path(u.ClientCert), c.Path(u.ClientKey)
		o.Topic = u.Topic
	}
	return o
}

// BufferOptions is the buffer's part of the file.
func (c *Config) BufferOptions() buffer.Options {
	b := c.Buffer
	return buffer.Options{
		Path:               c.Path(b.Path),
		MaxSize:            int64(b.MaxSize),
		MaxAge:             b.MaxAge.Duration,
		WhenFull:           b.WhenFull,
		CommitInterval:     b.CommitInterval.Duration,
		DeadLetterMaxCount: b.DeadLetterMaxCount,
		DeadLetterMaxBytes: int64(b.DeadLetterMaxBytes),
		DeadLetterMaxAge:   b.DeadLetterMaxAge.Duration,
	}
}

// SensorSpecs are the sensors' part of the file.
func (c *Config) SensorSpecs() []sensors.Spec {
	specs := make([]sensors.Spec, len(c.Sensors))
	for i, s := range c.Sensors {
		specs[i] = sensors.Spec{
			Name:       s.Name,
			Driver:     s.Driver,
			Bus:        s.Bus,
			Address:    s.Address,
			Interval:   s.Interval.Duration,
			Properties: s.Properties,
			Options:    s.Options,
			Emulate:    s.Emulate,
			Device:     s.Device,
		}
		if s.MuxChannel != nil {
			specs[i].Mux = &sensors.Mux{Address: s.MuxAddress, Channel: *s.MuxChannel}
		}
	}
	return specs
}

// uplinkKeys are the uplink's field keys that live outside [uplink].
var uplinkKeys = map[string]string{
	"product_key": "device.product_key", "device_name": "device.device_name", "device_secret": "device.device_secret",
}

// sensorKeys are the sensors' field keys that the file spells otherwise.
var sensorKeys = map[string]string{"mux.address": "mux_address", "mux.channel": "mux_channel"}

// layerErrors asks each layer to validate its options and maps each field
// error to the file's line and key.
func (c *Config) layerErrors() Errors {
	var errs Errors
	secret := c.Device.DeviceSecret
	if c.Device.DeviceSecretFile != "" {
		secret = "(from device_secret_file)" // checked when read
	}
	for _, fe := range c.UplinkOptions(secret).Validate() {
		key, ok := uplinkKeys[fe.Key]
		if !ok {
			key = "uplink." + fe.Key
		}
		errs = append(errs, c.fieldError(key, fe))
	}
	for _, fe := range c.BufferOptions().Validate() {
		errs = append(errs, c.fieldError("buffer."+fe.Key, fe))
	}
	if err := sensors.Check(c.SensorSpecs()); err != nil {
		var se *sensors.SpecError
		if !errors.As(err, &se) {
			return append(errs, &Error{File: c.File, Key: "sensor", Msg: err.Error()})
		}
		k := se.Key
		for from, to := range sensorKeys {
			if k == from {
				k = to
			}
		}
		key := fmt.Sprintf("sensor[%d]", se.Index)
		if k != "" {
			key += "." + k
		}
		errs = append(errs, c.fieldError(key, field.Error{Key: k, Msg: se.Msg}))
	}
	return errs
}

// fieldError places a layer's field error in the file: the key's own line,
// or its section's when the key is not written (a required key).
func (c *Config) fieldError(key string, fe field.Error) *Error {
	line := c.lines.line(key)
	for k := key; line == 0 && strings.Contains(k, "."); {
		k = k[:strings.LastIndex(k, ".")]
		line = c.lines.line(k)
	}
	return &Error{File: c.File, Line: line, Key: key, Msg: fe.Msg}
}

// SpecError maps an error of sensors.New (a *sensors.SpecError) to the
// file's line and key; other errors pass through.
func (c *Config) SpecError(err error) error {
	var se *sensors.SpecError
	if !errors.As(err, &se) {
		return err
	}
	key := fmt.Sprintf("sensor[%d]", se.Index)
	if se.Key != "" {
		k := se.Key
		if to, ok := sensorKeys[k]; ok {
			k = to
		}
		key += "." + k
	}
	return Errors{c.fieldError(key, field.Error{Key: se.Key, Msg: se.Msg})}
}
