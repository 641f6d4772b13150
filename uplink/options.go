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

	"gatewayd/internal/field"
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

// MaxMaxDelay bounds MaxDelay: a sample held longer is no longer live.
const MaxMaxDelay = 30 * time.Second

// Unlimited as Options.MaxMessagesPerSecond sends as fast as the broker
// acknowledges (plain MQTT only: the Alibaba platform throttles a device).
const Unlimited = -1

// MaxRate bounds MaxMessagesPerSecond.
const MaxRate = 1000

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
	// of one second (1.25 s in fact, so messages delayed on the way cannot
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

	// PostQoS is the QoS of the Alibaba platform's data messages: 0 (the
	// default; the platform's reply acknowledges them, and a PUBACK would
	// be one more packet, and over a real network one more wake-up of the
	// board, per message) or 1 (the broker's PUBACK as well, then the
	// reply). The plain-MQTT platform always publishes at QoS 1: there the
	// PUBACK is the acknowledgement.
	PostQoS int

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
	negDelay := c.MaxDelay < 0 && c.MaxDelay != NoDelay
	if c.MaxDelay < 0 {
		c.MaxDelay = 0
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.ClientID == "" {
		c.ClientID = stableClientID(c.DeviceName)
	}
	var errs field.Errors
	bad := errs.Add
	switch r := c.MaxMessagesPerSecond; {
	case r == Unlimited && c.Platform == PlatformMQTT:
	case r == Unlimited:
		bad("max_messages_per_second", "unlimited (-1) only on plain MQTT brokers: the Alibaba platform throttles a device (answers 429)")
	case r < 0.01 || r > MaxRate:
		bad("max_messages_per_second", "must be between 0.01 and %d (or -1, unlimited, on plain MQTT), not %g", MaxRate, r)
	}
	if c.MaxInflight < 1 {
		bad("max_inflight", "must be at least 1, not %d", c.MaxInflight)
	}
	if c.PostQoS != 0 && c.PostQoS != 1 {
		bad("qos", "must be 0 or 1 (the platform has no QoS 2), not %d", c.PostQoS)
	}
	if c.MaxValuesPerMsg < 1 || c.MaxValuesPerMsg > 200 {
		bad("max_values_per_message", "must be 1..200 (the platform refuses more than 200 properties, error 6106), not %d", c.MaxValuesPerMsg)
	}
	if negDelay || c.MaxDelay > MaxMaxDelay || c.MaxDelay >= c.LiveWindow {
		bad("max_delay", "must be between 0s (send every sample at once) and %s, not %s (a sample held longer is no longer live)", MaxMaxDelay, o.MaxDelay)
	}
	if c.MaxMessageBytes < 1024 || c.MaxMessageBytes > platformPacketLimit/2 {
		bad("max_message_bytes", "must be 1 KiB..128 KiB (the platform drops packets over 256 KB), not %d", c.MaxMessageBytes)
	}
	if c.BackoffMax < c.BackoffMin {
		bad("backoff_max", "%v is below backoff_min %v", c.BackoffMax, c.BackoffMin)
	}
	if c.HistoryAge <= c.LiveWindow {
		bad("history_age", "%v must exceed the live window %v", c.HistoryAge, c.LiveWindow)
	}
	if c.HistoryAge > 24*time.Hour {
		bad("history_age", "%v: the platform refuses property times older than 24h in a post", c.HistoryAge)
	}
	if c.DeviceName == "" {
		bad("device_name", "required: it names this gateway on the platform, in topics and the client id")
	}
	if (c.ClientCert == "") != (c.ClientKey == "") {
		bad("client_cert", "client_cert and client_key go together")
	}
	switch c.Platform {
	case PlatformAliyun:
		if c.ProductKey == "" {
			bad("product_key", "required (copy it from the IoT platform console)")
		}
		if c.DeviceSecret == "" {
			bad("device_secret", "required: set device_secret or device_secret_file")
		}
		if _, err := hashFor(c.SignMethod); err != nil {
			bad("sign_method", "must be %s, %s or %s, not %q", SignHMACSHA256, SignHMACSHA1, SignHMACMD5, c.SignMethod)
		}
		if c.Keepalive < 30*time.Second || c.Keepalive > 1200*time.Second {
			bad("keepalive", "must be between 30s and 1200s on the Alibaba platform (it refuses the connection otherwise), not %s", c.Keepalive)
		}
		if len(c.ClientID) > 64 || strings.ContainsAny(c.ClientID, "|,") {
			bad("client_id", "%q: at most 64 characters, no '|' or ','", c.ClientID)
		}
		if c.Endpoint == "" {
			if c.Region == "" {
				bad("endpoint", "required: set endpoint (\"host:port\", the instance endpoint) or region (\"cn-shanghai\", the legacy host name)")
			} else {
				c.Endpoint = fmt.Sprintf("%s.iot-as-mqtt.%s.aliyuncs.com:1883", c.ProductKey, c.Region)
			}
		}
		if c.Endpoint != "" {
			if _, port, err := net.SplitHostPort(c.Endpoint); err != nil {
				bad("endpoint", "%q: want host:port: %v", c.Endpoint, err)
			} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
				bad("endpoint", "%q: bad port", c.Endpoint)
			}
		}
		if c.ControlTopic == "" {
			c.ControlTopic = fmt.Sprintf("/%s/%s/control", c.ProductKey, c.DeviceName)
		}
	case PlatformMQTT:
		if c.Keepalive < time.Second || c.Keepalive > 18*time.Hour {
			bad("keepalive", "must be between 1s and 18h (MQTT's 16-bit keepalive), not %s", c.Keepalive)
		}
		u, err := url.Parse(c.Broker)
		switch {
		case c.Broker == "":
			bad("endpoint", "required: the broker's \"host:port\"")
		case err != nil:
			bad("endpoint", "%q: %v", c.Broker, err)
		case u.Scheme != "tls" && u.Scheme != "tcp" && u.Scheme != "ssl" && u.Scheme != "mqtts" && u.Scheme != "mqtt":
			bad("endpoint", "%q: scheme must be tls:// or tcp://", c.Broker)
		case u.Port() == "":
			bad("endpoint", "%q: want host:port", c.Broker)
		}
		if c.Topic == "" {
			c.Topic = DefaultTopic
		}
		if strings.ContainsAny(c.Topic, "+#") {
			bad("topic", "%q: no wildcards (+, #) in a publish topic", c.Topic)
		}
		if c.ControlTopic == "" {
			c.ControlTopic = "gatewayd/{device}/control"
		}
		c.ControlTopic = strings.ReplaceAll(c.ControlTopic, "{device}", topicLevel(c.DeviceName))
	default:
		bad("platform", "must be %q or %q, not %q", PlatformAliyun, PlatformMQTT, c.Platform)
	}
	errs = append(errs, checkTopicNames(&c)...)
	if len(errs) > 0 {
		return c, fmt.Errorf("uplink options: %w", errs)
	}
	return c, nil
}

// Validate reports every invalid option, keyed as the config file names it
// ("keepalive", "max_delay", "product_key"), with the defaults applied
// first: the uplink owns its defaults and bounds, the config package only
// points at the file's lines.
func (o Options) Validate() field.Errors {
	_, err := o.withDefaults()
	var fe field.Errors
	if errors.As(err, &fe) {
		return fe
	}
	return nil
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
