package iotsim

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"sort"
	"strings"
)

// The emulator checks a CONNECT with its own code, written from the
// platform's documentation and checked against its published test vector
// (auth_test.go), never with the uplink's: a signing bug in gatewayd must
// fail here as it would against the real platform, not pass on both sides.

// platformSign is the password the platform expects: hex HMAC-{method} of
// the signed parameters' names, sorted alphabetically, each followed by its
// value, keyed with the device secret. Empty parameters are left out.
func platformSign(method, secret string, params map[string]string) (string, error) {
	var h func() hash.Hash
	switch method {
	case "hmacsha256":
		h = sha256.New
	case "hmacsha1":
		h = sha1.New
	case "hmacmd5":
		h = md5.New
	default:
		return "", fmt.Errorf("signmethod %q: the platform knows hmacmd5, hmacsha1 and hmacsha256", method)
	}
	names := make([]string, 0, len(params))
	for k, v := range params {
		if v != "" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var content strings.Builder
	for _, k := range names {
		content.WriteString(k)
		content.WriteString(params[k])
	}
	m := hmac.New(h, []byte(secret))
	m.Write([]byte(content.String()))
	return hex.EncodeToString(m.Sum(nil)), nil
}

// parseClientID splits "{id}|k=v,k=v|" as the platform reads it.
func parseClientID(s string) (id string, params map[string]string, err error) {
	first := strings.Index(s, "|")
	if first <= 0 || first > 64 || len(s) < first+2 || s[len(s)-1] != '|' {
		return "", nil, fmt.Errorf("client id %q: want {id}|securemode=..,signmethod=..|", s)
	}
	params = map[string]string{}
	for _, kv := range strings.Split(s[first+1:len(s)-1], ",") {
		if kv == "" {
			continue
		}
		eq := strings.Index(kv, "=")
		if eq <= 0 {
			return "", nil, fmt.Errorf("client id %q: %q is not k=v", s, kv)
		}
		params[kv[:eq]] = kv[eq+1:]
	}
	return s[:first], params, nil
}
