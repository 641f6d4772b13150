package uplink

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

func sentMs(t *testing.T, payload string) int64 {
	t.Helper()
	var m struct{ DeviceSendTime string }
	if err := json.Unmarshal([]byte(payload), &m); err != nil {
		t.Fatal(err)
	}
	ms, err := strconv.ParseInt(m.DeviceSendTime, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// Only the answer to the last request sent counts, once; claimed times
// outside the plausible range and implausible round trips are refused.
func TestNTPAnswerMatchesLastRequest(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	ok := func(ds int64) NTPResponse {
		return NTPResponse{DeviceSend: ds, ServerRecv: ds + 3_600_050, ServerSend: ds + 3_600_060}
	}
	var n ntpClock
	if _, _, err := n.answer(ok(t0.UnixMilli()), t0); err == nil || !strings.Contains(err.Error(), "no request outstanding") {
		t.Fatalf("unsolicited answer: %v", err)
	}
	first := sentMs(t, n.request(t0))
	second := sentMs(t, n.request(t0.Add(30*time.Second)))
	if _, _, err := n.answer(ok(first), t0.Add(30*time.Second+100*time.Millisecond)); err == nil || !strings.Contains(err.Error(), "not the last request") {
		t.Fatalf("stale answer to an earlier request: %v", err)
	}
	server, rtt, err := n.answer(ok(second), t0.Add(30*time.Second+100*time.Millisecond))
	if err != nil || rtt != 90*time.Millisecond || server.Sub(t0.Add(30*time.Second+100*time.Millisecond)) != time.Hour+5*time.Millisecond {
		t.Fatalf("good answer: %v %v %v", server, rtt, err)
	}
	if _, _, err := n.answer(ok(second), t0.Add(31*time.Second)); err == nil {
		t.Fatal("a repeated answer counted twice")
	}
	for _, tc := range []struct {
		name string
		r    func(ds int64) NTPResponse
		recv time.Duration
		want string
	}{
		{"server claims 2001", func(ds int64) NTPResponse {
			s := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
			return NTPResponse{DeviceSend: ds, ServerRecv: s, ServerSend: s}
		}, 50 * time.Millisecond, "outside"},
		{"server claims 2150", func(ds int64) NTPResponse {
			s := time.Date(2150, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
			return NTPResponse{DeviceSend: ds, ServerRecv: s, ServerSend: s}
		}, 50 * time.Millisecond, "outside"},
		{"round trip of a minute", ok, time.Minute, "round trip"},
		{"server held it a minute", func(ds int64) NTPResponse {
			return NTPResponse{DeviceSend: ds, ServerRecv: ds, ServerSend: ds + 60_000}
		}, 50 * time.Millisecond, "held"},
	} {
		at := t0.Add(time.Hour)
		ds := sentMs(t, n.request(at))
		if _, _, err := n.answer(tc.r(ds), at.Add(tc.recv)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// NTP answer: whatever arrives, only a plausible answer to the request
// outstanding is taken, and at most once.
func FuzzNTPAnswer(f *testing.F) {
	f.Add([]byte(`{"deviceSendTime":"%d","serverRecvTime":"1795000000000","serverSendTime":"1795000000005"}`), int64(40))
	f.Add([]byte(`{"deviceSendTime":"%d","serverRecvTime":"1","serverSendTime":"2"}`), int64(10))
	f.Add([]byte(`{"deviceSendTime":"1","serverRecvTime":"1795000000000","serverSendTime":"1795000000005"}`), int64(10))
	f.Add([]byte(`{"deviceSendTime":"%d","serverRecvTime":"9007199254740992","serverSendTime":"9007199254740992"}`), int64(-5))
	f.Fuzz(func(t *testing.T, tmpl []byte, after int64) {
		now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
		var n ntpClock
		ds := sentMs(t, n.request(now))
		b := []byte(strings.Replace(string(tmpl), "%d", strconv.FormatInt(ds, 10), 1))
		r, err := DecodeNTPResponse(b)
		if err != nil {
			return
		}
		recv := now.Add(time.Duration(after%120_000) * time.Millisecond)
		server, rtt, err := n.answer(r, recv)
		if err != nil {
			return
		}
		if r.DeviceSend != ds || server.Before(ntpFloor) || server.After(ntpCeiling) || rtt < 0 || rtt > ntpMaxRTT {
			t.Fatalf("accepted %+v at %v: server %v rtt %v", r, recv, server, rtt)
		}
		if _, _, err := n.answer(r, recv); err == nil {
			t.Fatal("the same answer counted twice")
		}
	})
}

// Control topic: a device name cannot add topic levels or wildcards to the
// plain-MQTT control topic; NUL and invalid UTF-8 are refused.
func TestControlTopicSanitised(t *testing.T) {
	base := Options{Platform: PlatformMQTT, Broker: "tcp://127.0.0.1:1883"}
	for _, tc := range []struct {
		dn, want, err string
	}{
		{"greenhouse-7", "gatewayd/greenhouse-7/control", ""},
		{"x/+", "gatewayd/x__/control", ""},
		{"#", "gatewayd/_/control", ""},
		{"a\x00b", "", "NUL"},
		{"bad\xff", "", "UTF-8"},
	} {
		o := base
		o.DeviceName = tc.dn
		got, err := o.withDefaults()
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: err %v, want %q", tc.dn, err, tc.err)
		case tc.err == "" && (err != nil || got.ControlTopic != tc.want):
			t.Errorf("%q: control topic %q (err %v), want %q", tc.dn, got.ControlTopic, err, tc.want)
		}
	}
	o := base
	o.DeviceName, o.ControlTopic = "dev", "cmd/+/control"
	if _, err := o.withDefaults(); err == nil || !strings.Contains(err.Error(), "wildcards") {
		t.Errorf("wildcard control topic: %v", err)
	}
	a := Options{ProductKey: "pk", DeviceName: "a/b", DeviceSecret: "s", Endpoint: "h:1"}
	if _, err := a.withDefaults(); err == nil || !strings.Contains(err.Error(), "cannot appear in the platform's topics") {
		t.Errorf("aliyun device name with '/': %v", err)
	}
}

// Control topic derivation: whatever the device name, the topic has exactly
// the template's levels and no wildcard, or the options are refused.
func FuzzControlTopic(f *testing.F) {
	for _, s := range []string{"dev", "a/b", "+", "#", "a\x00", "\xff", "ünïcode", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dn string) {
		o := Options{Platform: PlatformMQTT, Broker: "tcp://127.0.0.1:1883", DeviceName: dn}
		got, err := o.withDefaults()
		if err != nil {
			return
		}
		ct := got.ControlTopic
		if strings.Count(ct, "/") != 2 || strings.ContainsAny(ct, "+#\x00") || !strings.HasPrefix(ct, "gatewayd/") {
			t.Fatalf("device %q gave control topic %q", dn, ct)
		}
	})
}
