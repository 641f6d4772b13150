package uplink

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"gatewayd/internal/reading"
)

// Every decoder of downlink input is fuzzed. The seeds run as plain tests;
// CI runs each target with -fuzz for a bounded time.

var digits = regexp.MustCompile(`^[0-9]{1,20}$`)

func FuzzDecodeReply(f *testing.F) {
	for _, s := range []string{
		`{"code":200,"data":{},"id":"123","message":"success","method":"thing.event.property.post","version":"1.0"}`,
		`{"code":460,"id":123,"message":"request parameter error"}`,
		`{"code":"200","id":"1"}`, `{"id":"1"}`, `{"code":200,"id":"x1"}`, `{"code":1e3,"id":"1"}`, `[]`, `null`, ``,
		`{"code":99999999999,"id":"1"}`, `{"code":200,"id":"18446744073709551615"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeReply(b)
		if err != nil {
			return
		}
		if !digits.MatchString(r.ID) {
			t.Fatalf("accepted id %q", r.ID)
		}
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
	})
}

func FuzzDecodePropertySet(f *testing.F) {
	for _, s := range []string{
		`{"id":"123","version":"1.0","params":{"air_interval":30},"method":"thing.service.property.set"}`,
		`{"id":"1","params":{"air_interval":"1m"}}`, `{"id":"1","params":{}}`, `{"id":"1","params":{"a":1},"method":"x"}`,
		`{"params":{"a":1}}`, `{"id":1.5,"params":{"a":1}}`, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := DecodePropertySet(b)
		if err != nil {
			return
		}
		if !digits.MatchString(ps.ID) || len(ps.Params) == 0 {
			t.Fatalf("accepted %+v", ps)
		}
	})
}

func FuzzDecodeIntervalValue(f *testing.F) {
	for _, s := range []string{`30`, `0.1`, `"1m30s"`, `86400`, `86401`, `-1`, `"-5s"`, `1e309`, `"x"`, `null`, `true`, `{"a":1}`, `0.09`, `9223372036.9`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeIntervalValue(b)
		if err != nil {
			return
		}
		if d < 100*time.Millisecond || d > 24*time.Hour {
			t.Fatalf("accepted %v from %q", d, b)
		}
	})
}

func FuzzDecodeNTPResponse(f *testing.F) {
	for _, s := range []string{
		`{"deviceSendTime":"1571724098000","serverRecvTime":"1571724098110","serverSendTime":"1571724098115"}`,
		`{"deviceSendTime":1571724098000,"serverRecvTime":1571724098110,"serverSendTime":1571724098115}`,
		`{"deviceSendTime":"1","serverRecvTime":"9","serverSendTime":"2"}`,
		`{"deviceSendTime":"-1","serverRecvTime":"1","serverSendTime":"2"}`,
		`{"deviceSendTime":"9223372036854775807","serverRecvTime":"9223372036854775807","serverSendTime":"9223372036854775807"}`,
		`{}`, `{"deviceSendTime":"x"}`,
	} {
		f.Add([]byte(s), int64(1571724098200))
	}
	f.Fuzz(func(t *testing.T, b []byte, recv int64) {
		r, err := DecodeNTPResponse(b)
		if err != nil {
			return
		}
		if r.ServerSend < r.ServerRecv || r.DeviceSend < 0 {
			t.Fatalf("accepted %+v", r)
		}
		if recv < 0 || recv > 1<<53 {
			return
		}
		_, rtt := r.Server(recv)
		if rtt < 0 {
			t.Fatalf("negative rtt %v", rtt)
		}
	})
}

func FuzzDecodeCommand(f *testing.F) {
	for _, s := range []string{
		`{"id":"1","cmd":"read_now"}`, `{"id":"2","cmd":"set_interval","sensor":"air","interval":"30s"}`,
		`{"id":3,"cmd":"set_interval","sensor":"air","interval":30}`, `{"cmd":"status"}`,
		`{"id":"4","cmd":"get_interval","sensor":"air"}`, `{"cmd":"exec","args":"rm -rf /"}`, `{"cmd":""}`,
		`{"id":"5","cmd":"set_interval","sensor":"","interval":"1s"}`, `not json`, `{"cmd":"status"} trailing`,
	} {
		f.Add([]byte(s))
	}
	known := map[string]bool{CmdReadNow: true, CmdSetInterval: true, CmdGetInterval: true, CmdStatus: true}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			return
		}
		if !known[c.Cmd] || len(c.ID) > 64 || len(c.Sensor) > 64 {
			t.Fatalf("accepted %+v", c)
		}
		if c.Cmd == CmdSetInterval && (c.Sensor == "" || c.Interval < 100*time.Millisecond || c.Interval > 24*time.Hour) {
			t.Fatalf("accepted %+v", c)
		}
	})
}

func FuzzParseClientIDField(f *testing.F) {
	for _, s := range []string{"dev|securemode=2,signmethod=hmacsha256,timestamp=1|", "a|b=1,,c=|", "|x=1|", "a|", "a||", "a|=1|"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, p, err := ParseClientIDField(s)
		if err != nil {
			return
		}
		if id == "" || len(id) > 64 || strings.Contains(id, "|") {
			t.Fatalf("accepted id %q from %q", id, s)
		}
		for k := range p {
			if k == "" {
				t.Fatalf("empty key from %q", s)
			}
		}
	})
}

// fuzzControl records what the downlink made it do.
type fuzzControl struct {
	mu  sync.Mutex
	iv  map[string]time.Duration
	set int
}

func (c *fuzzControl) SetInterval(s string, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.iv[s] = d
	c.set++
	return nil
}

func (c *fuzzControl) Interval(s string) (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.iv[s]
	return d, ok
}

func (c *fuzzControl) ReadNow(context.Context) ([]reading.Sample, error) { return nil, nil }
func (c *fuzzControl) Status() map[string]any                            { return map[string]any{"ok": true} }

type nopSource struct{}

func (nopSource) Take(int, reading.Filter) ([]reading.Sample, error) { return nil, nil }
func (nopSource) Notify() <-chan struct{}                            { return nil }
func (nopSource) Ack([]reading.Ref) error                            { return nil }
func (nopSource) Release([]reading.ID)                               {}
func (nopSource) DeadLetter([]reading.Ref, string) error             { return nil }

// The downlink handlers answer anything with valid JSON, and change an
// interval only when they answer 200.
func FuzzDownlinkHandlers(f *testing.F) {
	for _, s := range []string{
		`{"id":"1","params":{"air_interval":30}}`, `{"id":"2","params":{"air_interval":30,"x":1}}`,
		`{"id":"3","cmd":"set_interval","sensor":"air","interval":"2s"}`, `{"id":"4","cmd":"status"}`,
		`{"id":"5","params":{"soil_interval":"1h"}}`, `{}`, `x`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ctl := &fuzzControl{iv: map[string]time.Duration{"air": time.Second, "soil": time.Minute}}
		c, err := New(Options{ProductKey: "pk", DeviceName: "dn", DeviceSecret: "s", Endpoint: "127.0.0.1:1", Control: ctl,
			Logger: discardLogger()}, nopSource{})
		if err != nil {
			t.Fatal(err)
		}
		for _, which := range []string{"set", "control"} {
			before := ctl.set
			var topic string
			var reply []byte
			if which == "set" {
				topic, reply = c.propertySet(b)
			} else {
				topic, reply = c.control(context.Background(), b)
			}
			if reply == nil {
				if ctl.set != before {
					t.Fatalf("%s: changed an interval without answering", which)
				}
				continue
			}
			var r struct {
				Code int `json:"code"`
			}
			if err := json.Unmarshal(reply, &r); err != nil || topic == "" {
				t.Fatalf("%s: reply %q on %q: %v", which, reply, topic, err)
			}
			if ctl.set != before && r.Code != 200 {
				t.Fatalf("%s: changed an interval but answered %d", which, r.Code)
			}
		}
	})
}

// The encoders turn any property name, unit and value into valid JSON
// that carries every value once, at no more digits than its resolution.
func FuzzEncode(f *testing.F) {
	f.Add("temperature", "°C", 21.004, 0.01, int64(1795632600812), uint8(3))
	f.Add(`a"b\c<d>`, "%RH", -3.006, 0.0625, int64(0), uint8(1))
	f.Add("p", "", 1e21, 0.0, int64(-1), uint8(7))
	f.Add("p", "", 1e10, 1e-300, int64(5), uint8(2)) // rounding overflows
	f.Fuzz(func(t *testing.T, prop, unit string, v, res float64, ms int64, n uint8) {
		if !finite(v) || !finite(res) || res < 0 || prop == "" || !utf8.ValidString(prop) || !utf8.ValidString(unit) {
			return
		}
		at := time.UnixMilli(ms % (1 << 45))
		var its []item
		for i := 0; i < int(n%8)+1; i++ {
			its = append(its, item{id: reading.ID(i/3 + 1), sensor: "s", time: at, v: reading.Value{Measurement: prop, Property: prop, Unit: unit, Value: v, Resolution: res}})
		}
		for _, k := range []kind{kindPost, kindBatch, kindHistory} {
			b := encodeAlink(k, "1", "pk", "dn", its[:1+(len(its)-1)*btoi(k != kindPost)])
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("%s: %s: %v", k, b, err)
			}
		}
		var vs []map[string]any
		b := encodeMQTT("dev", its)
		if len(its) == 1 {
			b = append(append([]byte("["), b...), ']')
		}
		if err := json.Unmarshal(b, &vs); err != nil || len(vs) != len(its) {
			t.Fatalf("mqtt %s: %v", b, err)
		}
		if d := reading.Digits(res); res > 0 {
			s := string(appendNumber(nil, its[0].v))
			if i := strings.IndexByte(s, '.'); i >= 0 && len(s)-i-1 > max(d, 1) {
				t.Fatalf("%v at %v written %s: more than %d decimals", v, res, s, d)
			}
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// The fast path of DecodeReply decodes only what the general path decodes
// to the same Reply; whatever it declines, the general path decides.
func FuzzDecodeReplyFast(f *testing.F) {
	for _, s := range []string{
		`{"code":200,"data":{},"id":"123","message":"success","method":"thing.event.property.post","version":"1.0"}`,
		` { "code" : 0 , "id" : 7 , "data" : null } `, `{"code":460,"id":"0123","message":"request parameter error"}`,
		`{"code":200,"id":"1","id":"2"}`, `{"Code":200,"id":"1"}`, `{"code":200,"id":"1",}`, `{"code":200,"id":"1"}x`,
		`{"code":2147483648,"id":"1"}`, `{"code":200,"id":"1","message":"a\u0041"}`, `{"code":01,"id":"1"}`,
		`{"code":200,"id":"1","data":{"a":1}}`, `{"code":-1,"id":"1"}`, `{"code":1.0,"id":"1"}`, `{"code":200,"id":""}`,
		`{"code":200,"id":"123456789012345678901"}`, `{"code":200,"id":"1","message":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := decodeReplyFast(b)
		if !ok {
			return
		}
		slow, err := decodeReplyJSON(b)
		if err != nil {
			t.Fatalf("fast path decoded %q to %+v; encoding/json refuses it: %v", b, fast, err)
		}
		if fast != slow {
			t.Fatalf("%q: fast path %+v, encoding/json %+v", b, fast, slow)
		}
	})
}

// The replies the platform and iotsim send take the fast path.
func TestDecodeReplyFastTakesTheUsualReplies(t *testing.T) {
	for _, s := range []string{
		`{"code":200,"data":{},"id":"76514524","message":"success","method":"thing.event.property.post","version":"1.0"}`,
		`{"code":460,"data":{},"id":"1","message":"request parameter error","method":"thing.event.property.batch.post","version":"1.0"}`,
		`{"code":200,"data":null,"id":"42","message":"success","method":"thing.event.property.history.post","version":"1.0"}`,
	} {
		r, ok := decodeReplyFast([]byte(s))
		if !ok {
			t.Fatalf("fast path declined %s", s)
		}
		if want, _ := decodeReplyJSON([]byte(s)); r != want {
			t.Fatalf("%s: fast %+v, encoding/json %+v", s, r, want)
		}
	}
}

// BenchmarkDecodeReply: the reply every post draws, as the platform sends
// it, through DecodeReply's fast path; "general" is the encoding/json path
// it falls back to (go test ./uplink -run '^$' -bench DecodeReply -benchmem).
func BenchmarkDecodeReply(b *testing.B) {
	m := []byte(`{"code":200,"data":{},"id":"76514524","message":"success","method":"thing.event.property.post","version":"1.0"}`)
	for name, dec := range map[string]func([]byte) (Reply, error){"fast": DecodeReply, "general": decodeReplyJSON} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if r, err := dec(m); err != nil || r.Code != 200 {
					b.Fatal(r, err)
				}
			}
		})
	}
}
