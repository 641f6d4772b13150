package uplink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"gatewayd/internal/field"
	"gatewayd/internal/reading"
)

// job is a downlink request handed from the send loop to the worker, so a
// slow ReadNow never stalls sending or the watchdog beat.
type job struct {
	topic   string
	payload []byte
	conn    mqtt.Client
}

// IntervalSuffix marks a thing-model property that sets a sensor's sampling
// interval: "<sensor>_interval", value in seconds (or a duration string).
const IntervalSuffix = "_interval"

// Control commands accepted on the control topic. Anything else is refused
// and logged, never executed.
const (
	CmdReadNow     = "read_now"     // sample every sensor now; reply data: {"readings":[...]}
	CmdSetInterval = "set_interval" // {"sensor":"air","interval":"30s"|30}; reply data: {"sensor":..,"interval":"30s"}
	CmdGetInterval = "get_interval" // {"sensor":"air"}; reply data: {"sensor":..,"interval":"30s"}
	CmdStatus      = "status"       // reply data: Control.Status() plus uplink counters
)

// Command is a decoded control-topic request, e.g.
// {"id":"7","cmd":"set_interval","sensor":"air","interval":"30s"}.
type Command struct {
	ID       string
	Cmd      string
	Sensor   string
	Interval time.Duration
}

// DecodeCommand parses and validates a control-topic request. The id is
// echoed in the reply; it may be any short string.
func DecodeCommand(b []byte) (Command, error) {
	if len(b) > maxDownlink {
		return Command{}, fmt.Errorf("command of %d bytes: too large", len(b))
	}
	var m struct {
		ID       json.RawMessage `json:"id"`
		Cmd      string          `json:"cmd"`
		Sensor   string          `json:"sensor"`
		Interval json.RawMessage `json:"interval"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Command{}, fmt.Errorf("command: %w", err)
	}
	var c Command
	if len(m.ID) > 0 {
		var s string
		if err := json.Unmarshal(m.ID, &s); err != nil {
			id, err := flexID(m.ID)
			if err != nil {
				return Command{}, fmt.Errorf("command: %w", err)
			}
			s = id
		}
		if len(s) > 64 {
			return Command{}, errors.New("command: id longer than 64 characters")
		}
		c.ID = s
	}
	c.Cmd, c.Sensor = m.Cmd, m.Sensor
	if len(c.Sensor) > 64 {
		return c, errors.New("command: sensor name longer than 64 characters")
	}
	switch c.Cmd {
	case CmdReadNow, CmdStatus:
	case CmdGetInterval:
		if c.Sensor == "" {
			return c, fmt.Errorf("command %s: no sensor", c.Cmd)
		}
	case CmdSetInterval:
		if c.Sensor == "" {
			return c, fmt.Errorf("command %s: no sensor", c.Cmd)
		}
		d, err := DecodeIntervalValue(m.Interval)
		if err != nil {
			return c, fmt.Errorf("command %s: %w", c.Cmd, err)
		}
		c.Interval = d
	case "":
		return c, errors.New("command: no cmd")
	default:
		return c, fmt.Errorf("command %q: unknown (want %s, %s, %s or %s)", c.Cmd, CmdReadNow, CmdSetInterval, CmdGetInterval, CmdStatus)
	}
	return c, nil
}

// worker answers downlink requests one at a time.
func (c *Client) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-c.jobs:
			var topic string
			var reply []byte
			if j.topic == c.o.ControlTopic {
				topic, reply = c.control(ctx, j.payload)
			} else {
				topic, reply = c.propertySet(j.payload)
			}
			if reply != nil {
				c.sendReply(ctx, j.conn, topic, reply)
			}
		}
	}
}

func (c *Client) sendReply(ctx context.Context, cl mqtt.Client, topic string, payload []byte) {
	if err := c.win.wait(ctx); err != nil {
		return
	}
	c.stats.update(func(s *Stats) { s.SentOther++ })
	if err := c.waitToken(ctx, cl.Publish(topic, 1, false, payload), 10*time.Second); err != nil && ctx.Err() == nil {
		if ok, n := c.gate.allow("reply", c.o.Now()); ok {
			c.log.Warn("send downlink reply", "topic", topic, "err", err, "suppressed", n)
		}
	}
}

type alinkReply struct {
	ID      string         `json:"id"`
	Code    int            `json:"code"`
	Data    map[string]any `json:"data"`
	Message string         `json:"message,omitempty"`
	Version string         `json:"version"`
}

// propertySet applies a thing.service.property.set and returns the
// set_reply with the real outcome. Only "<sensor>_interval" properties of
// known sensors are settable; one unknown property fails the whole request
// and nothing is applied.
func (c *Client) propertySet(payload []byte) (string, []byte) {
	topic := sysTopic(c.o.ProductKey, c.o.DeviceName, topicPropertySet+"_reply")
	ps, err := DecodePropertySet(payload)
	if err != nil {
		c.refuse(sysTopic(c.o.ProductKey, c.o.DeviceName, topicPropertySet), err)
		if ps.ID == "" {
			return "", nil // nothing to answer to
		}
		return topic, mustJSON(alinkReply{ID: ps.ID, Code: 460, Data: map[string]any{}, Message: err.Error(), Version: "1.0"})
	}
	fail := func(code int, err error) (string, []byte) {
		c.refuse(sysTopic(c.o.ProductKey, c.o.DeviceName, topicPropertySet), err)
		return topic, mustJSON(alinkReply{ID: ps.ID, Code: code, Data: map[string]any{}, Message: err.Error(), Version: "1.0"})
	}
	type change struct {
		prop, sensor string
		d            time.Duration
	}
	var changes []change
	names := make([]string, 0, len(ps.Params))
	for k := range ps.Params {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, prop := range names {
		sensor, ok := strings.CutSuffix(prop, IntervalSuffix)
		if !ok || sensor == "" || c.o.Control == nil {
			return fail(460, fmt.Errorf("property %q cannot be set on this device", prop))
		}
		if _, known := c.o.Control.Interval(sensor); !known {
			return fail(460, fmt.Errorf("property %q: no sensor %q", prop, sensor))
		}
		d, err := DecodeIntervalValue(ps.Params[prop])
		if err != nil {
			return fail(460, fmt.Errorf("property %q: %w", prop, err))
		}
		changes = append(changes, change{prop, sensor, d})
	}
	data := map[string]any{}
	for _, ch := range changes {
		if err := c.o.Control.SetInterval(ch.sensor, ch.d); err != nil {
			return fail(500, fmt.Errorf("set %s: %w", ch.prop, err))
		}
		data[ch.prop] = ch.d.Seconds()
		c.log.Info("sampling interval set by the platform", "sensor", ch.sensor, "interval", ch.d)
	}
	c.stats.update(func(s *Stats) { s.Downlink++ })
	return topic, mustJSON(alinkReply{ID: ps.ID, Code: 200, Data: data, Message: "success", Version: "1.0"})
}

type controlReply struct {
	ID      string         `json:"id"`
	Code    int            `json:"code"`
	Message string         `json:"message"`
	Data    map[string]any `json:"data,omitempty"`
}

// control runs one command from the control topic; the answer goes to
// ControlTopic+"/reply". Codes: 200 ok, 400 refused (malformed/unknown),
// 404 unknown sensor, 500 failed, 503 no control wired.
func (c *Client) control(ctx context.Context, payload []byte) (string, []byte) {
	topic := c.o.ControlTopic + "/reply"
	cmd, err := DecodeCommand(payload)
	reply := func(code int, msg string, data map[string]any) (string, []byte) {
		if code != 200 {
			c.refuse(c.o.ControlTopic, errors.New(msg))
		} else {
			c.stats.update(func(s *Stats) { s.Downlink++ })
		}
		return topic, mustJSON(controlReply{ID: cmd.ID, Code: code, Message: msg, Data: data})
	}
	if err != nil {
		return reply(400, err.Error(), nil)
	}
	if c.o.Control == nil && cmd.Cmd != CmdStatus {
		return reply(503, "no control on this gateway", nil)
	}
	switch cmd.Cmd {
	case CmdStatus:
		st := c.Stats()
		data := map[string]any{"uplink": map[string]any{
			"connected": st.Connected, "sent": st.Sent, "acked": st.Acked,
			"dead_lettered": st.DeadLettered, "retried": st.Retried, "throttled": st.Throttled,
			"last_ack": st.LastAck.UTC().Format(time.RFC3339),
		}}
		if c.o.Control != nil {
			for k, v := range c.o.Control.Status() {
				if k != "uplink" {
					data[k] = v
				}
			}
		}
		return reply(200, "ok", data)
	case CmdGetInterval:
		d, ok := c.o.Control.Interval(cmd.Sensor)
		if !ok {
			return reply(404, fmt.Sprintf("no sensor %q", cmd.Sensor), nil)
		}
		return reply(200, "ok", map[string]any{"sensor": cmd.Sensor, "interval": d.String()})
	case CmdSetInterval:
		if _, ok := c.o.Control.Interval(cmd.Sensor); !ok {
			return reply(404, fmt.Sprintf("no sensor %q", cmd.Sensor), nil)
		}
		if err := c.o.Control.SetInterval(cmd.Sensor, cmd.Interval); err != nil {
			return reply(500, err.Error(), nil)
		}
		c.log.Info("sampling interval set by control command", "sensor", cmd.Sensor, "interval", cmd.Interval)
		return reply(200, "ok", map[string]any{"sensor": cmd.Sensor, "interval": cmd.Interval.String()})
	case CmdReadNow:
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		rs, err := c.o.Control.ReadNow(rctx)
		if err != nil {
			return reply(500, err.Error(), nil)
		}
		return reply(200, "ok", map[string]any{"readings": readingsJSON(rs)})
	}
	return reply(400, "unknown command", nil)
}

func readingsJSON(ss []reading.Sample) []map[string]any {
	out := make([]map[string]any, 0, reading.CountValues(ss))
	for _, s := range ss {
		for _, v := range s.Values {
			out = append(out, map[string]any{
				"sensor": s.Sensor, "measurement": v.Measurement, "property": v.Property,
				"value": json.RawMessage(reading.Format(nil, v.Value, v.Resolution)), "unit": v.Unit, "time": s.Time.UTC().Format(time.RFC3339Nano),
			})
		}
	}
	return out
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only maps of plain values go in here; say so rather than panic.
		return []byte(fmt.Sprintf(`{"code":500,"message":%q}`, err.Error()))
	}
	return b
}

// ntpClock matches NTP-over-MQTT answers to the request that asked: only an
// answer whose deviceSendTime is that of the last request sent counts, and
// only once. The time it claims must be plausible (see ntpBounds).
type ntpClock struct {
	mu       sync.Mutex
	lastSent int64 // ms of the last request; 0 = none outstanding
}

// NTP plausibility bounds. A claimed platform time before ntpFloor (older
// than this code: 2026-01-01, or the build's commit time when the binary
// records one) or after ntpCeiling is refused, and so is an answer whose
// round trip exceeds ntpMaxRTT: such an offset is worth nothing.
var (
	ntpFloor   = buildFloor(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	ntpCeiling = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
)

// buildFloor returns the later of floor and the commit time stamped into
// the binary (go build in a git checkout records vcs.time).
func buildFloor(floor time.Time) time.Time {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return floor
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.time" {
			if t, err := time.Parse(time.RFC3339, s.Value); err == nil && t.After(floor) {
				return t.UTC()
			}
		}
	}
	return floor
}

const ntpMaxRTT = 30 * time.Second

// request returns the payload of a new request sent at now; from then on
// only its answer counts.
func (n *ntpClock) request(now time.Time) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	ms := now.UnixMilli()
	if ms <= n.lastSent { // two requests in one millisecond: keep them apart
		ms = n.lastSent + 1
	}
	n.lastSent = ms
	return fmt.Sprintf(`{"deviceSendTime":"%d"}`, ms)
}

// answer checks r against the outstanding request and the bounds, and
// returns the platform's time at now and the round trip.
func (n *ntpClock) answer(r NTPResponse, now time.Time) (time.Time, time.Duration, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.lastSent == 0:
		return time.Time{}, 0, fmt.Errorf("ntp answer for deviceSendTime %d: no request outstanding (stale, repeated or unsolicited)", r.DeviceSend)
	case r.DeviceSend != n.lastSent:
		return time.Time{}, 0, fmt.Errorf("ntp answer for deviceSendTime %d: not the last request sent (%d)", r.DeviceSend, n.lastSent)
	}
	recv := now.UnixMilli()
	if recv < r.DeviceSend {
		return time.Time{}, 0, fmt.Errorf("ntp answer arrived (%d) before its request was sent (%d): our clock jumped back", recv, r.DeviceSend)
	}
	server, rtt := r.Server(recv)
	switch {
	case time.Duration(recv-r.DeviceSend)*time.Millisecond > ntpMaxRTT:
		return time.Time{}, 0, fmt.Errorf("ntp answer after %v: round trip over %v, the time is worth nothing", time.Duration(recv-r.DeviceSend)*time.Millisecond, ntpMaxRTT)
	case r.ServerSend-r.ServerRecv > ntpMaxRTT.Milliseconds():
		return time.Time{}, 0, fmt.Errorf("ntp answer: the server claims it held the request %d ms", r.ServerSend-r.ServerRecv)
	case server.Before(ntpFloor) || server.After(ntpCeiling):
		return time.Time{}, 0, fmt.Errorf("ntp answer claims %s: outside %s..%s, refused",
			server.UTC().Format(time.RFC3339), ntpFloor.Format("2006-01-02"), ntpCeiling.Format("2006-01-02"))
	}
	n.lastSent = 0 // answered: a second copy is stale
	return server, rtt, nil
}

// topicLevel makes s safe as one MQTT topic level: '/', '+' and '#' become
// '_' (as in the publish topic template), so a device name can neither add
// levels nor turn a subscription into a wildcard.
func topicLevel(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '/', '+', '#':
			return '_'
		}
		return r
	}, s)
}

// checkTopicNames refuses names that cannot go into a topic at all: NUL
// (forbidden in MQTT strings) and invalid UTF-8. On the platform, '/', '+'
// and '#' are refused too: its device names never contain them, and the
// /sys/{pk}/{dn}/... topics cannot be escaped.
func checkTopicNames(o *Options) field.Errors {
	var errs field.Errors
	for _, f := range []struct{ key, name, v string }{
		{"device_name", "device name", o.DeviceName}, {"product_key", "product key", o.ProductKey}, {"control_topic", "control topic", o.ControlTopic},
	} {
		switch {
		case !utf8.ValidString(f.v):
			errs.Add(f.key, "%s %q: not valid UTF-8", f.name, f.v)
		case strings.ContainsRune(f.v, 0):
			errs.Add(f.key, "%s %q: contains NUL", f.name, f.v)
		case f.key != "control_topic" && o.Platform != PlatformMQTT && strings.ContainsAny(f.v, "/+#"):
			errs.Add(f.key, "%s %q: '/', '+' and '#' cannot appear in the platform's topics", f.name, f.v)
		case f.key == "control_topic" && strings.ContainsAny(f.v, "+#"):
			errs.Add(f.key, "control topic %q: no wildcards: it would subscribe to other devices' commands", f.v)
		}
	}
	return errs
}
