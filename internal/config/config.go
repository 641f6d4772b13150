package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultPaths is the search order when no --config flag is given: the boot
// partition first (Raspberry Pi OS bookworm and later, then older images),
// then /etc.
var DefaultPaths = []string{
	"/boot/firmware/gatewayd.toml",
	"/boot/gatewayd.toml",
	"/etc/gatewayd/gatewayd.toml",
}

// Config is the whole file, parsed and validated, with defaults applied.
type Config struct {
	Device  Device   `toml:"device,omitempty"`
	Uplink  Uplink   `toml:"uplink"`
	Buffer  Buffer   `toml:"buffer"`
	Sensors []Sensor `toml:"sensor"`
	Health  Health   `toml:"health"`
	Log     Log      `toml:"log"`

	// File is the path the config was read from; Dir its directory, which
	// relative paths in the file are resolved against.
	File string `toml:"-"`
	Dir  string `toml:"-"`
	// Warnings are things that work but deserve the technician's eye.
	Warnings []string `toml:"-"`

	lines *locator
}

// Device is the identity from the IoT platform console.
type Device struct {
	ProductKey       string `toml:"product_key"`
	DeviceName       string `toml:"device_name"`
	DeviceSecret     string `toml:"device_secret,omitempty"`
	DeviceSecretFile string `toml:"device_secret_file,omitempty"`
}

// Uplink says where readings go.
type Uplink struct {
	Platform string `toml:"platform"`
	Endpoint string `toml:"endpoint,omitempty"`
	Region   string `toml:"region,omitempty"`
	TLS      *bool  `toml:"tls"`
	// AllowPlaintext must be true for tls = false: plaintext is a decision.
	AllowPlaintext       bool     `toml:"allow_plaintext,omitempty"`
	CAFile               string   `toml:"ca_file,omitempty"`
	CAReplace            bool     `toml:"ca_replace,omitempty"`
	ServerName           string   `toml:"server_name,omitempty"`
	SignMethod           string   `toml:"sign_method"`
	Keepalive            Duration `toml:"keepalive"`
	ClientID             string   `toml:"client_id,omitempty"`
	MaxMessagesPerSecond float64  `toml:"max_messages_per_second"`
	QoS                  *int     `toml:"qos,omitempty"`
	Retain               bool     `toml:"retain,omitempty"`
	ControlTopic         string   `toml:"control_topic,omitempty"`
	// ClockWait (platform "mqtt"): how long after start readings whose time
	// is not yet trusted are held before going out marked "synced": false.
	ClockWait Duration `toml:"clock_wait,omitempty"`
	// platform = "mqtt"
	Username   string `toml:"username,omitempty"`
	Password   string `toml:"password,omitempty"`
	ClientCert string `toml:"client_cert,omitempty"`
	ClientKey  string `toml:"client_key,omitempty"`
	Topic      string `toml:"topic,omitempty"`
}

// PlaintextWarning is said, in words, every time a config with tls = false
// (and allow_plaintext = true) is checked or run.
const PlaintextWarning = "plaintext (allow_plaintext = true): the device password and every reading travel in clear; " +
	"the password never changes, so anyone who captures it once can impersonate this device for good"

// UseTLS reports the effective tls setting (default true).
func (u Uplink) UseTLS() bool { return u.TLS == nil || *u.TLS }

// Buffer bounds the store-and-forward buffer.
type Buffer struct {
	Path           string   `toml:"path"`
	MaxSize        Size     `toml:"max_size"`
	MaxAge         Duration `toml:"max_age"`
	WhenFull       string   `toml:"when_full"`
	CommitInterval Duration `toml:"commit_interval"`
}

// Sensor is one [[sensor]] table.
type Sensor struct {
	Name       string             `toml:"name"`
	Driver     string             `toml:"driver"`
	Bus        string             `toml:"bus"`
	Address    uint16             `toml:"address,omitempty"`
	MuxAddress uint16             `toml:"mux_address,omitempty"`
	MuxChannel *int               `toml:"mux_channel,omitempty"`
	Device     string             `toml:"device,omitempty"`
	Interval   Duration           `toml:"interval"`
	Properties map[string]string  `toml:"properties,omitempty"`
	Options    map[string]string  `toml:"options,omitempty"`
	Emulate    map[string]float64 `toml:"emulate,omitempty"`
}

// Health is the local health and metrics endpoint.
type Health struct {
	Listen *string `toml:"listen,omitempty"`
}

// ListenAddr is the effective listen address ("" = disabled).
func (h Health) ListenAddr() string {
	if h.Listen == nil {
		return "127.0.0.1:9102"
	}
	return *h.Listen
}

// Log sets the log level.
type Log struct {
	Level string `toml:"level"`
}

// Error is an invalid configuration. Its message names the file, line and
// key; cmd/gatewayd exits with status 78 (EX_CONFIG) on it.
type Error struct {
	File string
	Line int    // 0 when the key is not in the file (a missing required key)
	Key  string // "uplink.keepalive", "sensor[2].interval"
	Msg  string
}

func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Key == "" {
		return fmt.Sprintf("%s: %s", loc, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", loc, e.Key, e.Msg)
}

// Errors is every problem found in one file.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// ErrNotFound is returned by Find when no config file exists.
var ErrNotFound = errors.New("no config file found")

// Find returns the first existing path of candidates (DefaultPaths when nil).
func Find(candidates []string) (string, error) {
	if candidates == nil {
		candidates = DefaultPaths
	}
	for _, p := range candidates {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w (looked in %s; pass --config FILE)", ErrNotFound, strings.Join(candidates, ", "))
}

// Load reads, parses and validates a config file. An invalid file gives an
// Errors value listing every problem.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(path, b)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(path); err == nil {
		c.warnInlineSecrets(st.Mode().Perm())
	}
	return c, nil
}

// warnInlineSecrets warns when a secret is written in the file itself and the
// file is readable by every user (a FAT /boot partition always is): anyone
// with a shell on the board, or the card in a reader, can log in as the device.
func (c *Config) warnInlineSecrets(perm fs.FileMode) {
	if perm&0o004 == 0 {
		return
	}
	for _, k := range []struct{ key, val string }{
		{"device.device_secret", c.Device.DeviceSecret},
		{"uplink.password", c.Uplink.Password},
	} {
		if k.val == "" {
			continue
		}
		c.Warnings = append(c.Warnings, fmt.Sprintf("%s:%d: %s: the secret is written in a file every user can read (mode %v); "+
			"move it to device_secret_file (chmod 640, owner root, group gatewayd) outside the boot partition, or chmod 640 this file",
			c.File, c.Line(k.key), k.key, perm))
	}
}

// Parse parses and validates file content; path is used in messages and to
// resolve relative paths.
func Parse(path string, data []byte) (*Config, error) {
	c := &Config{File: path, Dir: filepath.Dir(path), lines: newLocator(string(data))}
	md, err := toml.Decode(string(data), c)
	if err != nil {
		return nil, Errors{c.decodeError(err)}
	}
	var errs Errors
	for _, k := range md.Undecoded() {
		key := k.String()
		errs = append(errs, &Error{File: path, Line: c.lines.line(key), Key: key,
			Msg: "unknown key" + suggest(key)})
	}
	errs = append(errs, c.validate()...)
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
		return nil, errs
	}
	return c, nil
}

func (c *Config) decodeError(err error) *Error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := pe.Message
		if pe.LastKey != "" {
			msg = strings.TrimPrefix(msg, pe.LastKey+": ")
		}
		return &Error{File: c.File, Line: pe.Position.Line, Key: pe.LastKey, Msg: redactValues(msg)}
	}
	msg := strings.TrimPrefix(err.Error(), "toml: ")
	e := &Error{File: c.File}
	// "line 2 (last key "device.device_secret"): incompatible types: ..."
	if m := lastKeyRe.FindStringSubmatch(msg); m != nil {
		fmt.Sscan(m[1], &e.Line)
		e.Key = m[2]
		msg = msg[len(m[0]):]
	}
	e.Msg = redactValues(msg)
	return e
}

var (
	lastKeyRe = regexp.MustCompile(`^line (\d+) \(last key "([^"]*)"\): `)
	quotedRe  = regexp.MustCompile(`"[^"]*"|'[^']*'`)
)

// redactValues takes every quoted fragment of the file out of a parser
// message. The parser quotes what it found where it expected a value, and
// for an unquoted secret that is the secret: the message goes to the journal.
func redactValues(msg string) string {
	if strings.HasPrefix(msg, "expected value but found") {
		return `expected a value: write text in double quotes (key = "text")`
	}
	return quotedRe.ReplaceAllString(msg, "(text not shown)")
}

// Line returns the line a key was set on ("sensor[1].interval"), or 0.
func (c *Config) Line(key string) int { return c.lines.line(key) }

// Errorf builds an Error for key, located in the file.
func (c *Config) Errorf(key, format string, args ...any) *Error {
	return &Error{File: c.File, Line: c.lines.line(key), Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Path resolves a path from the file against the file's directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.Dir, p)
}

// Secret returns the device secret, reading device_secret_file if set.
func (c *Config) Secret() (string, error) {
	if c.Device.DeviceSecretFile == "" {
		return c.Device.DeviceSecret, nil
	}
	b, err := os.ReadFile(c.Path(c.Device.DeviceSecretFile))
	if err != nil {
		return "", fmt.Errorf("read device_secret_file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (c *Config) validate() Errors {
	var errs Errors
	add := func(e *Error) { errs = append(errs, e) }
	d := &c.Device
	u := &c.Uplink

	if u.Platform == "" {
		u.Platform = "aliyun"
	}
	switch u.Platform {
	case "aliyun":
		for key, v := range map[string]string{"device.product_key": d.ProductKey, "device.device_name": d.DeviceName} {
			if v == "" {
				add(c.Errorf(key, "required (copy it from the IoT platform console)"))
			}
		}
		if d.DeviceSecret == "" && d.DeviceSecretFile == "" {
			add(c.Errorf("device.device_secret", "required: set device_secret or device_secret_file"))
		}
		if u.Endpoint == "" && u.Region == "" {
			add(c.Errorf("uplink.endpoint", "required: set endpoint (\"host:port\") or region (\"cn-shanghai\")"))
		}
		if u.SignMethod == "" {
			u.SignMethod = "hmacsha256"
		}
		switch u.SignMethod {
		case "hmacsha256", "hmacsha1", "hmacmd5":
		default:
			add(c.Errorf("uplink.sign_method", "must be hmacsha256, hmacsha1 or hmacmd5, not %q", u.SignMethod))
		}
		if u.Keepalive.Duration == 0 {
			u.Keepalive.Duration = 60 * time.Second
		}
		if k := u.Keepalive.Duration; k < 30*time.Second || k > 1200*time.Second {
			add(c.Errorf("uplink.keepalive", "must be between 30s and 1200s on the Alibaba platform (it refuses the connection otherwise), not %s", FormatDuration(k)))
		}
		if u.QoS != nil && *u.QoS != 1 {
			add(c.Errorf("uplink.qos", "must be 1 on the Alibaba platform: it has no QoS 2, and QoS 0 gives no acknowledgement to delete a reading on"))
		}
		if u.Retain {
			add(c.Errorf("uplink.retain", "the Alibaba platform refuses retained messages; remove it"))
		}
		for _, k := range []string{"username", "password", "client_cert", "client_key", "topic", "clock_wait"} {
			if c.lines.has("uplink." + k) {
				add(c.Errorf("uplink."+k, "only for platform = \"mqtt\"; the Alibaba platform signs in with the device triple"))
			}
		}
	case "mqtt":
		if u.Endpoint == "" {
			add(c.Errorf("uplink.endpoint", "required: the broker's \"host:port\""))
		}
		if u.Keepalive.Duration == 0 {
			u.Keepalive.Duration = 60 * time.Second
		}
		if k := u.Keepalive.Duration; k < 5*time.Second || k > 18*time.Hour {
			add(c.Errorf("uplink.keepalive", "must be between 5s and 18h, not %s", FormatDuration(k)))
		}
		if u.QoS != nil && *u.QoS != 1 {
			add(c.Errorf("uplink.qos", "must be 1: a reading is deleted only when the broker's PUBACK says it arrived"))
		}
		if u.Topic == "" {
			u.Topic = "sensors/{device}/{sensor}"
		}
		if !c.lines.has("uplink.clock_wait") {
			u.ClockWait.Duration = 2 * time.Minute
		}
		if w := u.ClockWait.Duration; w < 0 || w > 24*time.Hour {
			add(c.Errorf("uplink.clock_wait", "must be between 0s and 24h, not %s", FormatDuration(w)))
		}
		if (u.ClientCert == "") != (u.ClientKey == "") {
			add(c.Errorf("uplink.client_cert", "client_cert and client_key go together"))
		}
		if d.DeviceName == "" {
			add(c.Errorf("device.device_name", "required: it names this gateway in topics and the client id"))
		}
	default:
		add(c.Errorf("uplink.platform", "must be \"aliyun\" or \"mqtt\", not %q", u.Platform))
	}
	if u.MaxMessagesPerSecond == 0 {
		u.MaxMessagesPerSecond = 20
	}
	if u.MaxMessagesPerSecond < 0 || u.MaxMessagesPerSecond > 1000 {
		add(c.Errorf("uplink.max_messages_per_second", "must be between 0.01 and 1000, not %g", u.MaxMessagesPerSecond))
	}
	if !u.UseTLS() {
		if !u.AllowPlaintext {
			add(c.Errorf("uplink.tls", "false sends the password and every reading in clear, and the password never changes: "+
				"anyone who captures it once can impersonate this device for good. Use TLS; if you must (a bench, a broker on "+
				"this host), also set allow_plaintext = true"))
		} else {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s:%d: uplink.tls: %s", c.File, c.lines.line("uplink.tls"), PlaintextWarning))
		}
	}
	if u.CAReplace && u.CAFile == "" {
		add(c.Errorf("uplink.ca_replace", "needs ca_file"))
	}
	for key, p := range map[string]string{"uplink.ca_file": u.CAFile, "uplink.client_cert": u.ClientCert, "uplink.client_key": u.ClientKey} {
		if p != "" {
			if _, err := os.Stat(c.Path(p)); err != nil {
				add(c.Errorf(key, "cannot read %s: %v", c.Path(p), errors.Unwrap(err)))
			}
		}
	}
	if d.DeviceSecret != "" && d.DeviceSecretFile != "" {
		add(c.Errorf("device.device_secret_file", "set device_secret or device_secret_file, not both"))
	}
	if f := d.DeviceSecretFile; f != "" {
		st, err := os.Stat(c.Path(f))
		switch {
		case err != nil:
			add(c.Errorf("device.device_secret_file", "cannot read %s: %v", c.Path(f), errors.Unwrap(err)))
		case st.Mode().Perm()&0o004 != 0:
			// Group-readable is how the package shares it with the gatewayd
			// group (0640 root:gatewayd); world-readable is a leak, and a
			// file whose only job is to keep the secret must not leak it.
			add(c.Errorf("device.device_secret_file", "%s is readable by every user (mode %v): chmod 640 it (owner root, group gatewayd), and keep it off the FAT boot partition, where every file is world-readable",
				c.Path(f), st.Mode().Perm()))
		}
	}

	b := &c.Buffer
	if b.Path == "" {
		b.Path = "/var/lib/gatewayd/buffer.db"
	}
	if b.MaxSize == 0 {
		b.MaxSize = 64 << 20
	}
	if b.MaxSize < 1<<20 {
		add(c.Errorf("buffer.max_size", "must be at least 1MiB, not %s", FormatSize(int64(b.MaxSize))))
	}
	if b.MaxAge.Duration == 0 {
		b.MaxAge.Duration = 30 * 24 * time.Hour
	}
	if b.MaxAge.Duration < time.Minute {
		add(c.Errorf("buffer.max_age", "must be at least 1m, not %s", FormatDuration(b.MaxAge.Duration)))
	}
	if b.WhenFull == "" {
		b.WhenFull = "drop-oldest"
	}
	if b.WhenFull != "drop-oldest" && b.WhenFull != "drop-newest" {
		add(c.Errorf("buffer.when_full", "must be \"drop-oldest\" or \"drop-newest\", not %q", b.WhenFull))
	}
	if !c.lines.has("buffer.commit_interval") {
		b.CommitInterval.Duration = 10 * time.Second
	}
	if ci := b.CommitInterval.Duration; ci < 0 || ci > 10*time.Minute {
		add(c.Errorf("buffer.commit_interval", "must be between 0s (commit every reading) and 10m, not %s", FormatDuration(ci)))
	}

	if len(c.Sensors) == 0 {
		add(&Error{File: c.File, Key: "sensor", Msg: "no [[sensor]] configured: nothing to read"})
	}
	names := map[string]int{}
	for i := range c.Sensors {
		s := &c.Sensors[i]
		key := func(k string) string { return fmt.Sprintf("sensor[%d].%s", i, k) }
		if s.Name == "" {
			add(c.Errorf(key("name"), "required: a unique name for logs, metrics and property names"))
		} else if j, dup := names[s.Name]; dup {
			add(c.Errorf(key("name"), "%q is already the name of sensor[%d] (line %d); names must be unique", s.Name, j, c.Line(fmt.Sprintf("sensor[%d].name", j))))
		} else {
			names[s.Name] = i
		}
		if s.Driver == "" {
			add(c.Errorf(key("driver"), "required (bme280, bmp280, aht20, sht3x, sht4x, scd4x, hdc302x, mcp9808, tmp102, ds18b20)"))
		}
		if s.Driver != "ds18b20" && s.Bus == "" {
			s.Bus = "/dev/i2c-1"
		}
		if s.Interval.Duration == 0 {
			s.Interval.Duration = 10 * time.Second
		}
		if iv := s.Interval.Duration; iv < 100*time.Millisecond || iv > 24*time.Hour {
			add(c.Errorf(key("interval"), "must be between 100ms and 24h, not %s", FormatDuration(iv)))
		}
		if s.Address > 0x7f {
			add(c.Errorf(key("address"), "an I2C address is 7 bits (0x03..0x77), not 0x%x", s.Address))
		}
		if s.MuxChannel != nil && (*s.MuxChannel < 0 || *s.MuxChannel > 7) {
			add(c.Errorf(key("mux_channel"), "a TCA9548A has channels 0..7, not %d", *s.MuxChannel))
		}
		if s.MuxAddress != 0 && s.MuxChannel == nil {
			add(c.Errorf(key("mux_address"), "needs mux_channel (0..7)"))
		}
		if s.MuxChannel != nil && s.MuxAddress == 0 {
			s.MuxAddress = 0x70
		}
		if len(s.Emulate) > 0 && s.Bus != "emulated" {
			add(c.Errorf(key("emulate"), "only for bus = \"emulated\""))
		}
	}

	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add(c.Errorf("log.level", "must be debug, info, warn or error, not %q", c.Log.Level))
	}
	return errs
}

// suggest names a likely intended key for an unknown one.
func suggest(key string) string {
	last := key[strings.LastIndexByte(key, '.')+1:]
	known := map[string]string{
		"secret": "device_secret", "productkey": "product_key", "devicename": "device_name",
		"host": "endpoint", "broker": "endpoint", "url": "endpoint", "port": "endpoint",
		"keep_alive": "keepalive", "signmethod": "sign_method", "ca": "ca_file", "cafile": "ca_file",
		"addr": "address", "i2c": "bus", "type": "driver", "model": "driver", "period": "interval",
		"rate": "max_messages_per_second", "file": "path", "size": "max_size", "maxsize": "max_size",
	}
	if s, ok := known[strings.ToLower(last)]; ok {
		return fmt.Sprintf(" (did you mean %q?)", s)
	}
	return ""
}

// ExitConfig is the exit status for an invalid configuration (EX_CONFIG);
// the systemd unit does not restart on it.
const ExitConfig = 78

// IsInvalid reports whether err is a configuration error (exit 78).
func IsInvalid(err error) bool {
	var es Errors
	var e *Error
	return errors.As(err, &es) || errors.As(err, &e) || errors.Is(err, ErrNotFound) || errors.Is(err, fs.ErrNotExist)
}
