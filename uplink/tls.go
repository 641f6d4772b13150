package uplink

import (
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"time"
)

// platformRootPEM is GlobalSign Root CA (R1), the root the official device
// SDKs embed for the platform (valid until 2028-01-28). SHA-256 fingerprint
// EB:D4:10:40:E4:BB:3E:C7:42:C9:E3:81:D3:1E:F2:A4:1A:48:B6:68:5C:96:E7:CE:F3:C1:DF:6C:D4:33:1C:99,
// checked by a test. Taken from Debian's ca-certificates (Mozilla's store).
//
//go:embed globalsign-root-ca-r1.pem
var platformRootPEM []byte

// PlatformRootPEM returns the embedded platform root certificate (PEM).
func PlatformRootPEM() []byte { return append([]byte(nil), platformRootPEM...) }

// tlsConfig builds the client TLS configuration: TLS 1.2 minimum, the server
// name always verified, trust anchors from the embedded root (aliyun) or the
// system (mqtt) plus or instead of CAFile.
func (c *Client) tlsConfig(host string) (*tls.Config, error) {
	o := &c.o
	var pool *x509.CertPool
	switch {
	case o.CAReplace && o.CAFile != "":
		pool = x509.NewCertPool()
	case o.Platform == PlatformAliyun:
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(platformRootPEM) {
			return nil, errors.New("embedded platform root certificate does not parse")
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
