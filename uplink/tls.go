package uplink

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Built-in trust anchors for platform "aliyun". Both are checked by
// TestBuiltinRoots (fingerprint, subject, expiry, and the published MD5 of
// the Aliyun file as shipped).
//
// GlobalSign Root CA (R1): the legacy endpoints
// ({pk}.iot-as-mqtt.{region}.aliyuncs.com:1883, securemode 2) chain to it.
// Valid until 2028-01-28. SHA-256 EB:D4:10:40:E4:BB:3E:C7:42:C9:E3:81:D3:1E:
// F2:A4:1A:48:B6:68:5C:96:E7:CE:F3:C1:DF:6C:D4:33:1C:99. Taken from Debian's
// ca-certificates (Mozilla's store).
//
//go:embed globalsign-root-ca-r1.pem
var globalSignR1PEM []byte

// Aliyun IoT Root CA: the platform's own self-signed root, for port 8883
// and the instance endpoints ({instance}.mqtt.iothub.aliyuncs.com), which
// send only leaf and intermediate (CN=Aliyun, O=Aliyun IoT): the root is in
// no public trust store. Subject C=CN, ST=Zhejiang, L=Hangzhou, O=Aliyun
// IoT, OU=Root CA, CN=Aliyun IoT Root CA; serial
// 7E25FA9936B944C5131920B7AD08677ACB48; valid 2023-07-04T06:36:58Z ..
// 2053-07-04T06:36:58Z; SHA-256 7C:A4:38:A3:97:6B:52:42:D2:31:F8:61:49:98:
// 22:DA:85:58:31:38:27:35:83:6B:36:1E:7E:97:15:66:16:76.
//
// Where it came from: the ALIYUN_IOT_S1 string of a copy of Alibaba's Link
// SDK C (4.x) file external/ali_ca_cert.c, in the public repository
// gsq7474741/LinkSDK-C-, path src/csdk/ali_ca_cert.c, commit
// 8276caaa4bcaed9ff6949d138f9a156305068360 (2024-07-16).
//
// How it was verified: Alibaba publishes the file as ali_iot_ca.crt with MD5
// c7a6afb466713832af778a7bcb6d1aef (IoT Platform docs, "Connect over
// MQTT-TLS"). The PEM lines with LF endings and one empty line after END
// CERTIFICATE - exactly the bytes of aliyun-iot-root-ca.pem - hash to that
// MD5; the LF-only-one-newline, no-newline and CRLF variants do not (they
// hash to cdf10b3b…, 1cecaaf6…, e4ff33d4…, 6c6effaf…). The same DER
// (same SHA-256) is also shipped in Alibaba's Python Link Kit SDK
// (linkkit.py, __ALIYUN_BROKER_CA_DATA, next to GlobalSign R1 and R6) and
// in several independent ESP32/Qt clients found by the same search.
//
//go:embed aliyun-iot-root-ca.pem
var aliyunIoTRootPEM []byte

// AliyunRootMD5 is the MD5 Alibaba publishes for ali_iot_ca.crt.
const AliyunRootMD5 = "c7a6afb466713832af778a7bcb6d1aef"

// builtinRootPEMs is the built-in pool for platform "aliyun". Tests swap it
// (export_test.go) to make the emulator's private root a built-in one.
var builtinRootPEMs = [][]byte{globalSignR1PEM, aliyunIoTRootPEM}

// RootInfo describes one built-in trust anchor.
type RootInfo struct {
	Name     string // subject common name
	NotAfter time.Time
	SHA256   string // upper-case hex of the DER
	Use      string // which endpoints chain to it
}

// BuiltinRoots lists the built-in trust anchors of platform "aliyun".
func BuiltinRoots() []RootInfo {
	var out []RootInfo
	for _, p := range builtinRootPEMs {
		c, err := parseRoot(p)
		if err != nil {
			continue // a test hook may put anything here; TestBuiltinRoots checks the real ones
		}
		sum := sha256.Sum256(c.Raw)
		use := "legacy endpoints {pk}.iot-as-mqtt.{region}.aliyuncs.com:1883"
		if c.Subject.CommonName == "Aliyun IoT Root CA" {
			use = "port 8883 and instance endpoints {instance}.mqtt.iothub.aliyuncs.com"
		} else if c.Subject.CommonName != "GlobalSign Root CA" {
			use = "test root"
		}
		out = append(out, RootInfo{Name: c.Subject.CommonName, NotAfter: c.NotAfter.UTC(),
			SHA256: strings.ToUpper(hex.EncodeToString(sum[:])), Use: use})
	}
	return out
}

// RootWarnings returns one line for each built-in root that expires within
// a year of now (or already has): `gatewayd check` prints them.
func RootWarnings(now time.Time) []string {
	var ws []string
	for _, r := range BuiltinRoots() {
		switch left := r.NotAfter.Sub(now); {
		case left <= 0:
			ws = append(ws, fmt.Sprintf("built-in root %q expired on %s: endpoints that chain to it (%s) can no longer be verified; update gatewayd or set ca_file",
				r.Name, r.NotAfter.Format("2006-01-02"), r.Use))
		case left < 365*24*time.Hour:
			ws = append(ws, fmt.Sprintf("built-in root %q expires on %s (in %d days): endpoints that chain to it (%s) will then fail; update gatewayd before then, or move to port 8883 (Aliyun IoT Root CA, valid until 2053-07-04)",
				r.Name, r.NotAfter.Format("2006-01-02"), int(left.Hours()/24), r.Use))
		}
	}
	return ws
}

// PlatformRootPEM returns the built-in platform roots (PEM, concatenated).
func PlatformRootPEM() []byte {
	var b []byte
	for _, p := range builtinRootPEMs {
		b = append(b, p...)
	}
	return b
}

func parseRoot(p []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(p)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// tlsConfig builds the client TLS configuration: TLS 1.2 minimum, the server
// name always verified, trust anchors from the built-in roots (aliyun) or
// the system (mqtt) plus or instead of CAFile.
func (c *Client) tlsConfig(host string) (*tls.Config, error) {
	o := &c.o
	var pool *x509.CertPool
	switch {
	case o.CAReplace && o.CAFile != "":
		pool = x509.NewCertPool()
	case o.Platform == PlatformAliyun:
		pool = x509.NewCertPool()
		for _, p := range builtinRootPEMs {
			if !pool.AppendCertsFromPEM(p) {
				return nil, errors.New("built-in platform root certificate does not parse")
			}
		}
	default:
		sys, err := x509.SystemCertPool()
		if err != nil || sys == nil {
			sys = x509.NewCertPool()
		}
		pool = sys
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca file %s: no PEM certificate in it", o.CAFile)
		}
	}
	name := o.ServerName
	if name == "" {
		name = host
	}
	cfg := &tls.Config{
		RootCAs:    pool,
		ServerName: name,
		MinVersion: tls.VersionTLS12,
		// Verification is done by crypto/tls with the clock we are given, so
		// a test can move the clock; a wrong clock is diagnosed afterwards.
		Time: o.Now,
	}
	if o.ClientCert != "" {
		cert, err := tls.LoadX509KeyPair(o.ClientCert, o.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// explainTLS turns certificate errors into a message that names the likely
// cause: the clock, or (platform aliyun) a root that is not built in.
func (c *Client) explainTLS(err error, now time.Time) error {
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) && c.o.Platform == PlatformAliyun && !c.o.CAReplace {
		var names []string
		for _, r := range BuiltinRoots() {
			names = append(names, fmt.Sprintf("%s (until %s)", r.Name, r.NotAfter.Format("2006-01-02")))
		}
		return fmt.Errorf("%w (the built-in roots are %s; if this endpoint uses another root, get Alibaba's "+
			"ali_iot_ca.crt from the IoT Platform docs \"Connect over MQTT-TLS\", check its MD5 is %s, and set ca_file to it)",
			err, strings.Join(names, ", "), AliyunRootMD5)
	}
	return explainTLS(err, now)
}

// explainTLS turns certificate validity errors into a message that names
// the clock when the clock is the likely culprit.
func explainTLS(err error, now time.Time) error {
	var cie x509.CertificateInvalidError
	if !errors.As(err, &cie) || cie.Reason != x509.Expired || cie.Cert == nil {
		return err
	}
	c := cie.Cert
	switch {
	case now.Before(c.NotBefore):
		return fmt.Errorf("%w: it says %s but the server certificate is valid only from %s (set the time, e.g. NTP): %w",
			ErrClock, now.UTC().Format(time.RFC3339), c.NotBefore.UTC().Format(time.RFC3339), err)
	case now.After(c.NotAfter) && now.Sub(c.NotAfter) > 5*365*24*time.Hour:
		return fmt.Errorf("%w: it says %s, years after the server certificate expired (%s): %w",
			ErrClock, now.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), err)
	}
	return fmt.Errorf("server certificate expired on %s: %w", c.NotAfter.UTC().Format(time.RFC3339), err)
}
