package iotsim

import (
	"strings"
	"testing"
	"time"
)

var dev = Device{ProductKey: "pk", DeviceName: "dn", DeviceSecret: "s"}

func TestDecodePostKinds(t *testing.T) {
	now := time.UnixMilli(1795632600812)
	old := "1795459800812" // 48 h before now
	for _, tc := range []struct {
		kind, body string
		code, n    int
	}{
		{"post", `{"id":"1","params":{"t":{"value":1.5,"time":1795632600000},"h":{"value":2.0,"time":1795632600000}},"method":"thing.event.property.post"}`, 200, 2},
		{"post", `{"id":"1","params":{"t":1.5},"method":"thing.event.property.post"}`, 200, 1},
		{"post", `{"id":1,"params":{"t":1.5},"method":"thing.event.property.post"}`, 460, 0},
		{"post", `{"id":"01","params":{"t":1.5},"method":"thing.event.property.post"}`, 460, 0},
		{"post", `{"id":"4294967296","params":{"t":1.5},"method":"thing.event.property.post"}`, 460, 0},
		{"post", `{"id":"1","params":{"t":{"value":1.5,"time":` + old + `}},"method":"thing.event.property.post"}`, 460, 0},
		{"batch", `{"id":"2","params":{"properties":{"t":[{"value":1.5,"time":1795632600000},{"value":1.6,"time":1795632601000}]},"events":{}},"method":"thing.event.property.batch.post"}`, 200, 2},
		{"batch", `{"id":"2","params":{"properties":{"t":[{"value":1.5}]}},"method":"thing.event.property.batch.post"}`, 460, 0},
		{"history", `{"id":"3","params":[{"identity":{"productKey":"pk","deviceName":"dn"},"properties":[{"t":{"value":1.5,"time":` + old + `}}],"events":[]}],"method":"thing.event.property.history.post"}`, 200, 1},
		{"history", `{"id":"3","params":[{"identity":{"productKey":"pk","deviceName":"other"},"properties":[{"t":{"value":1.5,"time":` + old + `}}]}],"method":"thing.event.property.history.post"}`, 460, 0},
		{"history", `{"id":"3","params":[{"identity":{"productKey":"pk","deviceName":"dn"},"properties":[{"t":{"value":1.5,"time":1}},{"t":{"value":"x","time":1}},{"t":{"value":1.5,"time":1}}]}],"method":"thing.event.property.history.post"}`, 460, 0},
	} {
		p, code, msg := DecodePost([]byte(tc.body), tc.kind, dev, now)
		if code != tc.code || (code == 200 && len(p.Values) != tc.n) {
			t.Errorf("%s %s: code %d (%s), %d values; want %d, %d", tc.kind, tc.body, code, msg, len(p.Values), tc.code, tc.n)
		}
	}
	var b strings.Builder
	b.WriteString(`{"id":"9","params":{"properties":{"t":[`)
	for i := 0; i < 201; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"value":1.5,"time":1795632600000}`)
	}
	b.WriteString(`]}},"method":"thing.event.property.batch.post"}`)
	if _, code, _ := DecodePost([]byte(b.String()), "batch", dev, now); code != 6106 {
		t.Errorf("201 properties: code %d, want 6106", code)
	}
}

func FuzzDecodePost(f *testing.F) {
	for _, s := range []string{
		`{"id":"1","params":{"t":{"value":1.5,"time":1795632600000}},"method":"thing.event.property.post"}`,
		`{"id":"2","params":{"properties":{"t":[{"value":1.5,"time":1795632600000}]},"events":{}},"method":"thing.event.property.batch.post"}`,
		`{"id":"3","params":[{"identity":{"productKey":"pk","deviceName":"dn"},"properties":[{"t":{"value":1.5,"time":1}}],"events":[]}],"method":"thing.event.property.history.post"}`,
		`{"id":"1","params":{"t":1},"method":"thing.event.property.post"}`, `{}`, `[`,
	} {
		for _, k := range []string{"post", "batch", "history"} {
			f.Add([]byte(s), k)
		}
	}
	now := time.UnixMilli(1795632600812)
	f.Fuzz(func(t *testing.T, b []byte, kind string) {
		p, code, msg := DecodePost(b, kind, dev, now)
		if code != 200 {
			if msg == "" {
				t.Fatalf("code %d without a message", code)
			}
			return
		}
		if len(p.Values) == 0 || len(p.Values) > 200 || p.MsgID == "" {
			t.Fatalf("accepted %+v", p)
		}
		for _, v := range p.Values {
			if !strings.ContainsAny(v.Raw, ".eE") || v.Property == "" {
				t.Fatalf("accepted value %+v", v)
			}
			if kind != "history" && now.Sub(v.Time) > 24*time.Hour {
				t.Fatalf("accepted a %v old value in a %s", now.Sub(v.Time), kind)
			}
		}
	})
}
