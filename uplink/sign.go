package uplink

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
)

// Sign methods the platform accepts in the clientId's signmethod field.
const (
	SignHMACSHA256 = "hmacsha256"
	SignHMACSHA1   = "hmacsha1"
	SignHMACMD5    = "hmacmd5"
)

// sdkTimestamp is the timestamp the official C SDKs put into every clientId.
// The platform does not check it against its clock, and a fixed value keeps
// the CONNECT independent of a board clock that may still be wrong at boot.
const sdkTimestamp = "2524608000000"

func hashFor(method string) (func() hash.Hash, error) {
	switch strings.ToLower(method) {
	case SignHMACSHA256:
		return sha256.New, nil
	case SignHMACSHA1:
		return sha1.New, nil
	case SignHMACMD5:
		return md5.New, nil
	}
	return nil, fmt.Errorf("sign method %q: want %s, %s or %s", method, SignHMACSHA256, SignHMACSHA1, SignHMACMD5)
}

// Sign returns the MQTT password for a device: the lower-case hex HMAC
// (key = deviceSecret) of the parameter names sorted alphabetically, each
// followed by its value. clientID and timestamp are optional; when given they
// must be the values the clientId field of the CONNECT carries.
func Sign(method, productKey, deviceName, deviceSecret, clientID, timestamp string) (string, error) {
	h, err := hashFor(method)
	if err != nil {
		return "", err
	}
	mac := hmac.New(h, []byte(deviceSecret))
	mac.Write([]byte(SignContent(productKey, deviceName, clientID, timestamp)))
	return hex.EncodeToString(mac.Sum(nil)), nil
}

// SignContent is the string Sign authenticates; exported so the platform
// emulator checks exactly what the device signs.
func SignContent(productKey, deviceName, clientID, timestamp string) string {
	var b strings.Builder
	// Alphabetical: clientId, deviceName, productKey, timestamp.
	if clientID != "" {
		b.WriteString("clientId" + clientID)
	}
	b.WriteString("deviceName" + deviceName)
	b.WriteString("productKey" + productKey)
	if timestamp != "" {
		b.WriteString("timestamp" + timestamp)
	}
	return b.String()
}

// ClientIDField is the CONNECT clientId for the platform:
// "{id}|securemode={2|3},signmethod={method},timestamp={ts}|".
func ClientIDField(id string, tls bool, method, timestamp string) string {
	mode := 3
	if tls {
		mode = 2
	}
	return fmt.Sprintf("%s|securemode=%d,signmethod=%s,timestamp=%s|", id, mode, strings.ToLower(method), timestamp)
}

// ParseClientIDField splits a platform clientId into the caller's id and the
// k=v parameters between the bars. The platform emulator uses it; it is a
// decoder of untrusted input and is fuzzed.
func ParseClientIDField(s string) (id string, params map[string]string, err error) {
	i := strings.IndexByte(s, '|')
	if i < 0 || !strings.HasSuffix(s, "|") || i == len(s)-1 {
		return "", nil, fmt.Errorf("client id %q: want {id}|k=v,...|", s)
	}
	id = s[:i]
	if id == "" || len(id) > 64 {
		return "", nil, fmt.Errorf("client id %q: the id before the first bar must be 1..64 characters", s)
	}
	params = map[string]string{}
	for _, kv := range strings.Split(s[i+1:len(s)-1], ",") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return "", nil, fmt.Errorf("client id %q: parameter %q is not k=v", s, kv)
		}
		params[k] = v
	}
	return id, params, nil
}

// Credentials are the CONNECT fields a client signs in with.
type Credentials struct {
	ClientID, Username, Password string
}

// Credentials returns exactly the CONNECT fields New's client will send
// (defaults applied), so `gatewayd sign` shows what the platform sees.
func (o Options) Credentials() (Credentials, error) {
	d, err := o.withDefaults()
	if err != nil {
		return Credentials{}, err
	}
	return d.credentials()
}

func (o *Options) credentials() (Credentials, error) {
	if o.Platform != PlatformAliyun {
		return Credentials{ClientID: o.ClientID, Username: o.Username, Password: o.Password}, nil
	}
	pw, err := Sign(o.SignMethod, o.ProductKey, o.DeviceName, o.DeviceSecret, o.ClientID, sdkTimestamp)
	if err != nil {
		return Credentials{}, err
	}
	return Credentials{
		ClientID: ClientIDField(o.ClientID, o.TLS, o.SignMethod, sdkTimestamp),
		Username: o.DeviceName + "&" + o.ProductKey,
		Password: pw,
	}, nil
}
