package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"gatewayd/buffer"
	"gatewayd/sensors"
	"gatewayd/uplink"
)

// [uplink] clock_wait (platform "mqtt") is the daemon's time policy, not a
// layer's option: its default and bound live here.
const (
	DefaultClockWait = 2 * time.Minute
	MaxClockWait     = 24 * time.Hour
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
	// MaxDelay is how long a live sample may wait for others to share its
	// message (samples taken together go out as one); "0s" sends each at
	// once. Default 1s.
	MaxDelay     Duration `toml:"max_delay"`
	QoS          *int     `toml:"qos,omitempty"`
	Retain       bool     `toml:"retain,omitempty"`
	ControlTopic string   `toml:"control_topic,omitempty"`
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
	// Dead letters are bounded by count, bytes and age (0: the buffer's
	// defaults; negative: unbounded).
	DeadLetterMaxCount int      `toml:"dead_letter_max_count,omitempty"`
	DeadLetterMaxBytes Size     `toml:"dead_letter_max_bytes,omitempty"`
	DeadLetterMaxAge   Duration `toml:"dead_letter_max_age,omitempty"`
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
	if line, key, rest, ok := cutLastKey(msg); ok {
		e.Line, e.Key, msg = line, key, rest
	}
	e.Msg = redactValues(msg)
	return e
}

// cutLastKey splits the parser's prefix `line N (last key "K"): ` off msg.
// (Hand-written rather than a regexp: the regexp package was 150 KB of
// the daemon's binary for three patterns, and its pages count in RSS.)
func cutLastKey(msg string) (line int, key, rest string, ok bool) {
	s, found := strings.CutPrefix(msg, "line ")
	if !found {
		return 0, "", "", false
	}
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		line = line*10 + int(s[i]-'0')
		i++
	}
	if i == 0 || i > 9 {
		return 0, "", "", false
	}
	s, found = strings.CutPrefix(s[i:], ` (last key "`)
	if !found {
		return 0, "", "", false
	}
	j := strings.IndexByte(s, '"')
	if j < 0 {
		return 0, "", "", false
	}
	key = s[:j]
	rest, found = strings.CutPrefix(s[j+1:], "): ")
	if !found {
		return 0, "", "", false
	}
	return line, key, rest, true
}

// redactValues takes every quoted fragment of the file out of a parser
// message. The parser quotes what it found where it expected a value, and
// for an unquoted secret that is the secret: the message goes to the journal.
func redactValues(msg string) string {
	if strings.HasPrefix(msg, "expected value but found") {
		return `expected a value: write text in double quotes (key = "text")`
	}
	// Every "..." or '...' fragment (closed on the same kind of quote)
	// becomes (text not shown); an unclosed quote stays as it is.
	var b strings.Builder
	for i := 0; i < len(msg); {
		if q := msg[i]; q == '"' || q == '\'' {
			if j := strings.IndexByte(msg[i+1:], q); j >= 0 {
				b.WriteString("(text not shown)")
				i += j + 2
				continue
			}
		}
		b.WriteByte(msg[i])
		i++
	}
	return b.String()
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

	// The layers own their defaults and bounds (uplink.Options.Validate,
	// buffer.Options.Validate, sensors.Check, see layers.go). What is left
	// here is about the file itself: which keys belong to which platform,
	// files it names, secrets, and the defaults shown by `check`, taken
	// from the layers.
	if u.Platform == "" {
		u.Platform = uplink.PlatformAliyun
	}
	switch u.Platform {
	case uplink.PlatformAliyun:
		if u.SignMethod == "" {
			u.SignMethod = uplink.SignHMACSHA256
		}
		if u.QoS != nil && *u.QoS != 0 && *u.QoS != 1 {
			add(c.Errorf("uplink.qos", "must be 0 (the default: the platform's reply acknowledges a post) or 1 (the broker's PUBACK too); the platform has no QoS 2"))
		}
		if u.Retain {
			add(c.Errorf("uplink.retain", "the Alibaba platform refuses retained messages; remove it"))
		}
		for _, k := range []string{"username", "password", "client_cert", "client_key", "topic", "clock_wait"} {
			if c.lines.has("uplink." + k) {
				add(c.Errorf("uplink."+k, "only for platform = \"mqtt\"; the Alibaba platform signs in with the device triple"))
			}
		}
	case uplink.PlatformMQTT:
		if u.QoS != nil && *u.QoS != 1 {
			add(c.Errorf("uplink.qos", "must be 1: a reading is deleted only when the broker's PUBACK says it arrived"))
		}
		if u.Topic == "" {
			u.Topic = uplink.DefaultTopic
		}
		if !c.lines.has("uplink.clock_wait") {
			u.ClockWait.Duration = DefaultClockWait
		}
		if w := u.ClockWait.Duration; w < 0 || w > MaxClockWait {
			add(c.Errorf("uplink.clock_wait", "must be between 0s and %s, not %s", FormatDuration(MaxClockWait), FormatDuration(w)))
		}
	}
	if u.Keepalive.Duration == 0 {
		u.Keepalive.Duration = uplink.DefaultKeepalive
	}
	if u.MaxMessagesPerSecond == 0 {
		u.MaxMessagesPerSecond = uplink.DefaultMaxMessagesPerSecond
	}
	if !c.lines.has("uplink.max_delay") {
		u.MaxDelay.Duration = uplink.DefaultMaxDelay
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
		b.Path = buffer.DefaultPath
	}
	if b.MaxSize == 0 {
		b.MaxSize = buffer.DefaultMaxSize
	}
	if b.MaxAge.Duration == 0 {
		b.MaxAge.Duration = buffer.DefaultMaxAge
	}
	if b.WhenFull == "" {
		b.WhenFull = buffer.DropOldest
	}
	if !c.lines.has("buffer.commit_interval") {
		b.CommitInterval.Duration = buffer.DefaultCommitInterval
	}

	if len(c.Sensors) == 0 {
		add(&Error{File: c.File, Key: "sensor", Msg: "no [[sensor]] configured: nothing to read"})
	}
	for i := range c.Sensors {
		s := &c.Sensors[i]
		key := func(k string) string { return fmt.Sprintf("sensor[%d].%s", i, k) }
		if s.Driver == "" {
			add(c.Errorf(key("driver"), "required (%s)", strings.Join(sensors.DriverNames(), ", ")))
		}
		if s.Driver != "ds18b20" && s.Bus == "" {
			s.Bus = sensors.DefaultBus
		}
		if s.Interval.Duration == 0 {
			s.Interval.Duration = sensors.DefaultInterval
		}
		if s.MuxAddress != 0 && s.MuxChannel == nil {
			add(c.Errorf(key("mux_address"), "needs mux_channel (0..7)"))
		}
		if s.MuxChannel != nil && s.MuxAddress == 0 {
			s.MuxAddress = sensors.DefaultMuxAddress
		}
		if len(s.Emulate) > 0 && s.Bus != "emulated" && !strings.HasPrefix(s.Bus, "emulated:") {
			add(c.Errorf(key("emulate"), "only for bus = \"emulated\" (or \"emulated:<name>\")"))
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
	// The layers' own checks; a key already reported above is not
	// reported twice.
	seen := map[string]bool{}
	for _, e := range errs {
		seen[e.Key] = true
	}
	for _, e := range c.layerErrors() {
		if !seen[e.Key] {
			errs = append(errs, e)
		}
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
		"rate": "max_messages_per_second", "file": "path", "delay": "max_delay", "linger": "max_delay", "batch_delay": "max_delay", "size": "max_size", "maxsize": "max_size",
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
