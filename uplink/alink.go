package uplink

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// kind is what sort of message carries a set of readings.
type kind int

const (
	kindPost    kind = iota // thing.event.property.post: live readings, one value per property
	kindBatch               // thing.event.property.batch.post: many values per property, < 24h old
	kindHistory             // thing.event.property.history.post: readings older than HistoryAge
	kindMQTT                // readings on a plain broker, acknowledged by PUBACK
)

func (k kind) String() string {
	switch k {
	case kindPost:
		return "post"
	case kindBatch:
		return "batch"
	case kindHistory:
		return "history"
	case kindMQTT:
		return "mqtt"
	}
	return "unknown"
}

// Alink topics under /sys/{pk}/{dn}/.
const (
	topicPost         = "thing/event/property/post"
	topicBatchPost    = "thing/event/property/batch/post"
	topicHistoryPost  = "thing/event/property/history/post"
	topicPropertySet  = "thing/service/property/set"
	methodPost        = "thing.event.property.post"
	methodBatchPost   = "thing.event.property.batch.post"
	methodHistoryPost = "thing.event.property.history.post"
)

func sysTopic(pk, dn, suffix string) string { return "/sys/" + pk + "/" + dn + "/" + suffix }

func (k kind) topicSuffix() string {
	switch k {
	case kindBatch:
		return topicBatchPost
	case kindHistory:
		return topicHistoryPost
	}
	return topicPost
}

func (k kind) method() string {
	switch k {
	case kindBatch:
		return methodBatchPost
	case kindHistory:
		return methodHistoryPost
	}
	return methodPost
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// ---- downlink decoders (input from the network: each one is fuzzed) ----

// maxDownlink bounds what a downlink decoder looks at.
const maxDownlink = 64 << 10

// flexID accepts the message id as a JSON string or number (the docs say
// string, the seed and some consoles send numbers) and returns it as a
// string of decimal digits.
func flexID(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", fmt.Errorf("no id")
	}
	var s string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("id: %w", err)
		}
	} else {
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return "", fmt.Errorf("id: %w", err)
		}
		s = n.String()
	}
	if s == "" || len(s) > 20 {
		return "", fmt.Errorf("id %q: want 1..20 digits", s)
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return "", fmt.Errorf("id %q: want a numeric string", s)
		}
	}
	return s, nil
}

// Reply is a decoded *_reply.
type Reply struct {
	ID      string
	Code    int
	Message string
	Method  string
}

// DecodeReply parses an Alink reply such as
// {"code":200,"data":{},"id":"123","message":"success","method":"...","version":"1.0"}.
func DecodeReply(b []byte) (Reply, error) {
	if len(b) > maxDownlink {
		return Reply{}, fmt.Errorf("reply of %d bytes: too large", len(b))
	}
	if r, ok := decodeReplyFast(b); ok {
		return r, nil
	}
	return decodeReplyJSON(b)
}

// decodeReplyJSON is DecodeReply's general path, through encoding/json.
func decodeReplyJSON(b []byte) (Reply, error) {
	var m struct {
		ID      json.RawMessage `json:"id"`
		Code    *json.Number    `json:"code"`
		Message string          `json:"message"`
		Method  string          `json:"method"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return Reply{}, fmt.Errorf("reply: %w", err)
	}
	id, err := flexID(m.ID)
	if err != nil {
		return Reply{}, fmt.Errorf("reply: %w", err)
	}
	if m.Code == nil {
		return Reply{}, fmt.Errorf("reply %s: no code", id)
	}
	code, err := strconv.ParseInt(m.Code.String(), 10, 32)
	if err != nil {
		return Reply{}, fmt.Errorf("reply %s: code %q: %w", id, m.Code.String(), err)
	}
	return Reply{ID: id, Code: int(code), Message: m.Message, Method: m.Method}, nil
}

// PropertySet is a decoded thing.service.property.set request.
type PropertySet struct {
	ID     string
	Params map[string]json.RawMessage
}

// DecodePropertySet parses
// {"id":"123","version":"1.0","params":{"air_interval":30},"method":"thing.service.property.set"}.
func DecodePropertySet(b []byte) (PropertySet, error) {
	if len(b) > maxDownlink {
		return PropertySet{}, fmt.Errorf("property set of %d bytes: too large", len(b))
	}
	var m struct {
		ID     json.RawMessage            `json:"id"`
		Params map[string]json.RawMessage `json:"params"`
		Method string                     `json:"method"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return PropertySet{}, fmt.Errorf("property set: %w", err)
	}
	id, err := flexID(m.ID)
	if err != nil {
		return PropertySet{}, fmt.Errorf("property set: %w", err)
	}
	if m.Method != "" && m.Method != "thing.service.property.set" {
		return PropertySet{ID: id}, fmt.Errorf("property set %s: method %q", id, m.Method)
	}
	if len(m.Params) == 0 {
		return PropertySet{ID: id}, fmt.Errorf("property set %s: no params", id)
	}
	return PropertySet{ID: id, Params: m.Params}, nil
}

// DecodeIntervalValue reads the value of a "<sensor>_interval" property:
// a number of seconds (the thing model's int/float type) or a duration
// string such as "30s". Bounds: 100ms..24h.
func DecodeIntervalValue(raw json.RawMessage) (time.Duration, error) {
	raw = bytes.TrimSpace(raw)
	var d time.Duration
	switch {
	case len(raw) > 0 && raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, fmt.Errorf("interval: %w", err)
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("interval %q: %w", s, err)
		}
		d = v
	default:
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil {
			return 0, fmt.Errorf("interval: want seconds or a duration string: %w", err)
		}
		if !finite(f) || f > 86400 || f < 0 {
			return 0, fmt.Errorf("interval %v s: out of range", f)
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d < 100*time.Millisecond || d > 24*time.Hour {
		return 0, fmt.Errorf("interval %v: want 100ms..24h", d)
	}
	return d, nil
}

// NTPResponse is a decoded /ext/ntp/{pk}/{dn}/response, times in ms.
type NTPResponse struct {
	DeviceSend, ServerRecv, ServerSend int64
}

func flexInt(raw json.RawMessage) (int64, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, err
		}
		raw = json.RawMessage(s)
	}
	return strconv.ParseInt(string(raw), 10, 64)
}

// DecodeNTPResponse parses
// {"deviceSendTime":"1571724098000","serverRecvTime":"1571724098110","serverSendTime":"1571724098115"}.
func DecodeNTPResponse(b []byte) (NTPResponse, error) {
	if len(b) > maxDownlink {
		return NTPResponse{}, fmt.Errorf("ntp response of %d bytes: too large", len(b))
	}
	var m struct {
		DS json.RawMessage `json:"deviceSendTime"`
		SR json.RawMessage `json:"serverRecvTime"`
		SS json.RawMessage `json:"serverSendTime"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return NTPResponse{}, fmt.Errorf("ntp response: %w", err)
	}
	var r NTPResponse
	var err error
	const maxMs = 1 << 53 // far beyond any real date; keeps the arithmetic safe
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		dst  *int64
	}{{"deviceSendTime", m.DS, &r.DeviceSend}, {"serverRecvTime", m.SR, &r.ServerRecv}, {"serverSendTime", m.SS, &r.ServerSend}} {
		if *f.dst, err = flexInt(f.raw); err != nil {
			return NTPResponse{}, fmt.Errorf("ntp response: %s: %w", f.name, err)
		}
		if *f.dst < 0 || *f.dst > maxMs {
			return NTPResponse{}, fmt.Errorf("ntp response: %s %d out of range", f.name, *f.dst)
		}
	}
	if r.ServerSend < r.ServerRecv {
		return NTPResponse{}, fmt.Errorf("ntp response: server sent (%d) before it received (%d)", r.ServerSend, r.ServerRecv)
	}
	return r, nil
}

// Server computes the platform's time at deviceRecv (ms) and the network
// round trip, as the platform's NTP documentation prescribes.
func (r NTPResponse) Server(deviceRecv int64) (server time.Time, rtt time.Duration) {
	ms := (r.ServerRecv + r.ServerSend + deviceRecv - r.DeviceSend) / 2
	rt := (deviceRecv - r.DeviceSend) - (r.ServerSend - r.ServerRecv)
	if rt < 0 {
		rt = 0
	}
	return time.UnixMilli(ms), time.Duration(rt) * time.Millisecond
}
