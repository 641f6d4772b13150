package iotsim

import (
	"strings"
	"testing"

	"gatewayd/uplink"
)

// The platform's published test vector (docs/aliyun-iot.md): the
// emulator's own signing must reproduce it.
func TestPlatformSignTestVector(t *testing.T) {
	got, err := platformSign("hmacsha1", "secret", map[string]string{
		"clientId": "12345", "deviceName": "device", "productKey": "pk", "timestamp": "789"})
	if err != nil {
		t.Fatal(err)
	}
	if got != "fafd82a3d602b37fb0fa8b7892f24a477f851a14" {
		t.Errorf("test vector: got %s", got)
	}
	if _, err := platformSign("hmacsha512", "k", nil); err == nil {
		t.Error("unknown signmethod accepted")
	}
}

// gatewayd's signer and the emulator's, written apart, agree for every
// method and for the optional parameters left out; a bug on either side
// shows here and in every login test.
func TestUplinkSignAgreesWithThePlatformsRule(t *testing.T) {
	for _, m := range []string{"hmacsha256", "hmacsha1", "hmacmd5"} {
		for _, v := range [][2]string{{"gw-01", "2524608000000"}, {"gw-01", ""}, {"", "789"}, {"", ""}} {
			ours, err := uplink.Sign(m, "a1PK", "dev-7", "s3cret", v[0], v[1])
			if err != nil {
				t.Fatal(err)
			}
			theirs, _ := platformSign(m, "s3cret", map[string]string{
				"clientId": v[0], "deviceName": "dev-7", "productKey": "a1PK", "timestamp": v[1]})
			if !strings.EqualFold(ours, theirs) {
				t.Errorf("%s %q: uplink %s, platform rule %s", m, v, ours, theirs)
			}
		}
	}
}

func TestParseClientID(t *testing.T) {
	id, p, err := parseClientID("gw-01|securemode=2,signmethod=hmacsha256,timestamp=789,_v=1|")
	if err != nil || id != "gw-01" || p["securemode"] != "2" || p["signmethod"] != "hmacsha256" || p["timestamp"] != "789" || p["_v"] != "1" {
		t.Errorf("got %q %v %v", id, p, err)
	}
	for _, bad := range []string{"", "|securemode=2|", "gw", "gw|securemode=2", "gw|=2|", "gw|securemode|", strings.Repeat("x", 65) + "|a=b|"} {
		if _, _, err := parseClientID(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
