package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"gatewayd/internal/reading"
)

// Platforms.
const (
	PlatformAliyun = "aliyun"
	PlatformMQTT   = "mqtt"
)

// Defaults used for zero-valued Options fields.
const (
	DefaultKeepalive            = 60 * time.Second
	DefaultMaxMessagesPerSecond = 20
	DefaultTopic                = "sensors/{device}/{sensor}"
	DefaultMaxInflight          = 16
	DefaultReplyTimeout         = 15 * time.Second
	DefaultConnectTimeout       = 15 * time.Second
	DefaultBackoffMin           = time.Second
	DefaultBackoffMax           = 20 * time.Second
	DefaultAuthBackoff          = 2 * time.Minute
	DefaultLiveWindow           = time.Minute
	DefaultHistoryAge           = 23 * time.Hour
	DefaultMaxValuesPerMsg      = 200
	DefaultMaxDelay             = time.Second
	DefaultMaxMessageBytes      = 64 << 10
	DefaultNTPInterval          = time.Hour
	DefaultShutdownGrace        = 2 * time.Second
	DefaultBeatEvery            = 5 * time.Second
)

// NoDelay as Options.MaxDelay sends every live sample at once (config
// max_delay = "0s").
const NoDelay time.Duration = -1

// TimeVerdict is what FixTime says about a sample's time.
type TimeVerdict int

const (
	// TimeOK: the time (possibly corrected) can be trusted; send.
	TimeOK TimeVerdict = iota
	// TimeHold: not yet; release the sample and look again later.
	TimeHold
	// TimeUnknown: the time can never be known (taken unsynced in an
	// earlier boot); dead-letter the sample with TimeUnknownReason.
	TimeUnknown
)

// TimeUnknownReason is the dead-letter reason for TimeUnknown samples.
const TimeUnknownReason = "time unknown: taken before the clock was synchronised in an earlier boot"

// platformPacketLimit is the size above which the platform silently drops a
// packet. MaxMessageBytes may not come near it.
const platformPacketLimit = 256 << 10

// Control is what the downlink may do to the rest of the gateway. The daemon
// wires it to the sensor loops; nil Options.Control answers every command
// with an error.
type Control interface {
	SetInterval(sensor string, d time.Duration) error
	Interval(sensor string) (time.Duration, bool)
	ReadNow(ctx context.Context) ([]reading.Sample, error)
	Status() map[string]any
}

// Options configure a Client. Zero values mean the documented default.
type Options struct {
	Platform string // "aliyun" (default) | "mqtt"

	// Device triple from the platform console. DeviceName also names the
	// device in the "mqtt" topic template.
	ProductKey, DeviceName, DeviceSecret string

	// Endpoint is "host:port". Empty: the legacy public endpoint
	// "{ProductKey}.iot-as-mqtt.{Region}.aliyuncs.com:1883" (the legacy
	// endpoints take both securemodes on 1883).
	Endpoint string
	Region   string
	// TLS selects securemode 2 (TLS) when true and 3 (plain TCP) when false.
	// Plain TCP is closed to devices created since 2022-08.
	TLS bool
	// CAFile adds PEM trust anchors to the built-in platform roots
	// (BuiltinRoots); with CAReplace they replace them. On platform "mqtt" the
	// base pool is the system's instead of the embedded root.
	CAFile    string
	CAReplace bool
	// ServerName overrides the name the server certificate is verified
	// against ("" = the endpoint/broker host). Verification is never skipped.
	ServerName string
	SignMethod string        // hmacsha256 (default) | hmacsha1 | hmacmd5
	Keepalive  time.Duration // 0 = 60s; aliyun allows 30s..1200s
	// ClientID is the id before the first bar of the platform clientId (or
	// the whole clientId on "mqtt"). "" = the device name (at most 64
	// characters), stable across restarts.
	ClientID string
	// MaxMessagesPerSecond bounds everything published (posts, NTP
	// requests, downlink replies): at most N messages in any sliding window
	// of one second (1.1 s in fact, so a message delayed on the way cannot
	// make the platform count N+1). 0 = 20; negative = unlimited. A
	// fraction rounds down (2.5 -> 2); below 1 it is one message per 1/N
	// seconds. A 429 halves it for a while; it creeps back on success.
	MaxMessagesPerSecond float64
	// MaxDelay is how long a live sample may wait for others to share its
	// message: samples taken together (three sensors on one interval) go
	// out as one message instead of one each. 0 = 1 s; negative (NoDelay,
	// config "0s") = send at once.
	MaxDelay time.Duration

	// Platform "mqtt": Broker is "tls://host:port" or "tcp://host:port";
	// Topic is a template with {device} and {sensor} (and {property},
	// {measurement}); "" = "sensors/{device}/{sensor}".
	Broker, Username, Password, ClientCert, ClientKey, Topic string

	Logger *slog.Logger // nil = slog.Default()
	// Beat is called at least once a second while the send loop is alive
	// (the daemon feeds the systemd watchdog from it). nil = none.
	Beat func()
	// FixTime may correct s.Time (a sample taken before the clock was
	// synchronised) and says what to do with the sample: TimeOK (send it),
	// TimeHold (not trustworthy yet: released and looked at again a second
	// later) or TimeUnknown (never datable: dead-lettered by the send loop
	// with TimeUnknownReason). It must not call the Source itself. It runs
	// on the send loop and must return quickly. nil = send s.Time.
	FixTime func(s *reading.Sample) TimeVerdict
	// OnServerTime receives each NTP-over-MQTT result: the platform's time
	// at the moment the response arrived, and the round trip. It runs on
	// the send loop and must return quickly. nil = no NTP.
	OnServerTime func(server time.Time, rtt time.Duration)
	Control      Control // downlink commands; nil = refuse them

	// ControlTopic is the custom downlink topic for control commands; its
	// answers go to ControlTopic+"/reply" (both must exist in the console).
	// "" = "/{pk}/{dn}/control" on aliyun, "gatewayd/{device}/control" on mqtt.
	ControlTopic string

	// Tuning; tests shorten these.
	MaxInflight     int           // messages awaiting a reply/PUBACK; 0 = 16
	ReplyTimeout    time.Duration // 0 = 15s; then the readings are released
	ConnectTimeout  time.Duration // 0 = 15s
	BackoffMin      time.Duration // reconnect/retry backoff floor; 0 = 1s
	BackoffMax      time.Duration // reconnect/retry backoff cap; 0 = 20s (back within seconds of the platform's return)
	AuthBackoff     time.Duration // after a refused login (CONNACK 4/5) wait between half this and this; 0 = 2m
	LiveWindow      time.Duration // readings younger than this are "live"; 0 = 1m
	HistoryAge      time.Duration // readings older than this go by history post; 0 = 23h (the platform refuses > 24h in a post)
	MaxValuesPerMsg int           // 0 = 200 (the platform's property limit, error 6106)
	MaxMessageBytes int           // 0 = 64 KiB; at most 128 KiB (the platform drops > 256 KB)
	NTPInterval     time.Duration // 0 = 1h; only with OnServerTime
	// BeatEvery is how often Beat is called while the loop is alive; 0 =
	// 5 s. Each wake-up costs CPU on an otherwise idle board.
	BeatEvery time.Duration
	// ShutdownGrace is how long a stopping Run still waits for the answers
	// to messages in flight (nothing new is sent). 0 = 2s; negative = none.
	ShutdownGrace time.Duration
	// Now is the clock (nil = time.Now); tests move it.
	Now func() time.Time
}

func (o *Options) withDefaults() (Options, error) {
	c := *o
	if c.Platform == "" {
		c.Platform = PlatformAliyun
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.SignMethod == "" {
		c.SignMethod = SignHMACSHA256
	}
	c.SignMethod = strings.ToLower(c.SignMethod)
	if c.Keepalive == 0 {
		c.Keepalive = DefaultKeepalive
	}
	if c.MaxMessagesPerSecond == 0 {
		c.MaxMessagesPerSecond = DefaultMaxMessagesPerSecond
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.ReplyTimeout, DefaultReplyTimeout)
	def(&c.ConnectTimeout, DefaultConnectTimeout)
	def(&c.BackoffMin, DefaultBackoffMin)
	def(&c.BackoffMax, DefaultBackoffMax)
	def(&c.AuthBackoff, DefaultAuthBackoff)
	def(&c.LiveWindow, DefaultLiveWindow)
	def(&c.HistoryAge, DefaultHistoryAge)
	def(&c.NTPInterval, DefaultNTPInterval)
	def(&c.ShutdownGrace, DefaultShutdownGrace)
	def(&c.BeatEvery, DefaultBeatEvery)
	if c.MaxInflight == 0 {
		c.MaxInflight = DefaultMaxInflight
	}
	if c.MaxValuesPerMsg == 0 {
		c.MaxValuesPerMsg = DefaultMaxValuesPerMsg
	}
	if c.MaxDelay == 0 {
		c.MaxDelay = DefaultMaxDelay
	}
	if c.MaxDelay < 0 {
		c.MaxDelay = 0
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.ClientID == "" {
		c.ClientID = stableClientID(c.DeviceName)
	}
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.MaxInflight < 1 {
		bad("max inflight %d: want at least 1", c.MaxInflight)
	}
	if c.MaxValuesPerMsg < 1 || c.MaxValuesPerMsg > 200 {
		bad("max values per message %d: want 1..200 (the platform refuses more than 200 properties, error 6106)", c.MaxValuesPerMsg)
	}
	if c.MaxDelay >= c.LiveWindow {
		bad("max delay %v: want less than the live window %v (waiting samples would turn into backlog)", c.MaxDelay, c.LiveWindow)
	}
	if c.MaxMessageBytes < 1024 || c.MaxMessageBytes > platformPacketLimit/2 {
		bad("max message bytes %d: want 1 KiB..128 KiB (the platform drops packets over 256 KB)", c.MaxMessageBytes)
	}
	if c.BackoffMax < c.BackoffMin {
		bad("backoff max %v is below backoff min %v", c.BackoffMax, c.BackoffMin)
	}
	if c.HistoryAge <= c.LiveWindow {
		bad("history age %v must exceed the live window %v", c.HistoryAge, c.LiveWindow)
	}
	if c.HistoryAge > 24*time.Hour {
		bad("history age %v: the platform refuses property times older than 24h in a post", c.HistoryAge)
	}
	if c.DeviceName == "" {
		bad("device name is empty")
	}
	if (c.ClientCert == "") != (c.ClientKey == "") {
		bad("client cert and client key must be given together")
	}
	switch c.Platform {
	case PlatformAliyun:
		if c.ProductKey == "" {
			bad("product key is empty")
		}
		if c.DeviceSecret == "" {
			bad("device secret is empty")
		}
		if _, err := hashFor(c.SignMethod); err != nil {
			errs = append(errs, err)
		}
		if c.Keepalive < 30*time.Second || c.Keepalive > 1200*time.Second {
			bad("keepalive %v: the platform allows 30s..1200s", c.Keepalive)
		}
		if len(c.ClientID) > 64 || strings.ContainsAny(c.ClientID, "|,") {
			bad("client id %q: at most 64 characters, no '|' or ','", c.ClientID)
		}
		if c.Endpoint == "" {
			if c.Region == "" {
				bad("neither endpoint nor region is set: set endpoint = \"host:port\" (instance endpoint) or region for the legacy host name")
			} else {
				c.Endpoint = fmt.Sprintf("%s.iot-as-mqtt.%s.aliyuncs.com:1883", c.ProductKey, c.Region)
			}
		}
		if c.Endpoint != "" {
			if _, port, err := net.SplitHostPort(c.Endpoint); err != nil {
				bad("endpoint %q: want host:port: %w", c.Endpoint, err)
			} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
				bad("endpoint %q: bad port", c.Endpoint)
			}
		}
		if c.ControlTopic == "" {
			c.ControlTopic = fmt.Sprintf("/%s/%s/control", c.ProductKey, c.DeviceName)
		}
	case PlatformMQTT:
		if c.Keepalive < time.Second {
			bad("keepalive %v: want at least 1s", c.Keepalive)
		}
		u, err := url.Parse(c.Broker)
		switch {
		case c.Broker == "":
			bad("broker is empty: want tls://host:port or tcp://host:port")
		case err != nil:
			bad("broker %q: %w", c.Broker, err)
		case u.Scheme != "tls" && u.Scheme != "tcp" && u.Scheme != "ssl" && u.Scheme != "mqtts" && u.Scheme != "mqtt":
			bad("broker %q: scheme must be tls:// or tcp://", c.Broker)
		case u.Port() == "":
			bad("broker %q: want a port", c.Broker)
		}
		if c.Topic == "" {
			c.Topic = DefaultTopic
		}
		if strings.ContainsAny(c.Topic, "+#") {
			bad("topic %q: no wildcards in a publish topic", c.Topic)
		}
		if c.ControlTopic == "" {
			c.ControlTopic = "gatewayd/{device}/control"
		}
		c.ControlTopic = strings.ReplaceAll(c.ControlTopic, "{device}", topicLevel(c.DeviceName))
	default:
		bad("platform %q: want %q or %q", c.Platform, PlatformAliyun, PlatformMQTT)
	}
	errs = append(errs, checkTopicNames(&c)...)
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("uplink options: %w", err)
	}
	return c, nil
}

// stableClientID derives the client id from the device name: it stays the
// same across restarts, so the platform sees one device reconnecting rather
// than a stream of strangers.
func stableClientID(dn string) string {
	var b strings.Builder
	for _, r := range dn {
		if b.Len() >= 64 {
			break
		}
		if r == '|' || r == ',' || r == '=' || r > 0x7e || r < 0x21 {
			r = '_'
		}
		b.WriteRune(r)
	}
	return b.String()
}
