// Package testutil holds helpers the tests of several packages share: a
// throwaway certificate authority, a real Mosquitto broker started on a free
// loopback port, and free-port lookup. It is imported only from tests and
// test helpers, never from the product.
package testutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gatewayd/internal/freeport"
)

// CA is a throwaway certificate authority written to a test's temp dir.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	File    string // PEM file of the CA certificate
	dir     string
	serial  int64
	// chain is what a server sends after its leaf: the intermediates from
	// this CA up to (not including) the root. Empty for a root.
	chain []byte
}

// NewCA creates a CA whose files live in tb.TempDir().
func NewCA(tb testing.TB, name string) *CA {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	dir := tb.TempDir()
	ca := &CA{Cert: cert, Key: key, CertPEM: pemBlock("CERTIFICATE", der), dir: dir, serial: 1}
	ca.File = filepath.Join(dir, name+"-ca.pem")
	writeFile(tb, ca.File, ca.CertPEM)
	return ca
}

// NewIntermediate creates a CA signed by ca, shaped like the platform's
// "CN=Aliyun, O=Aliyun IoT, OU=IoT Platform" intermediate. Certificates it
// issues are written with the intermediate chain appended, and without the
// root, as the real endpoints send them: a client needs the root already.
func (ca *CA) NewIntermediate(tb testing.TB, name string) *CA {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	ca.serial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(ca.serial),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Aliyun IoT"}, OrganizationalUnit: []string{"IoT Platform"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	in := &CA{Cert: cert, Key: key, CertPEM: pemBlock("CERTIFICATE", der), dir: ca.dir, serial: ca.serial * 1000}
	in.chain = append(append([]byte(nil), in.CertPEM...), ca.chain...)
	in.File = filepath.Join(ca.dir, name+"-intermediate.pem")
	writeFile(tb, in.File, in.CertPEM)
	return in
}

// CertOpts shape an issued certificate.
type CertOpts struct {
	DNSNames  []string  // default: localhost
	IPs       []net.IP  // default: 127.0.0.1
	NotBefore time.Time // default: an hour ago
	NotAfter  time.Time // default: a day from now
	Client    bool      // client certificate (ExtKeyUsageClientAuth)
}

// Issue signs a certificate and writes cert and key PEM files; it returns
// their paths. The cert file holds the leaf and, for an intermediate CA, the
// chain up to (not including) the root.
func (ca *CA) Issue(tb testing.TB, name string, o CertOpts) (certFile, keyFile string) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	if o.DNSNames == nil && o.IPs == nil && !o.Client {
		o.DNSNames = []string{"localhost"}
		o.IPs = []net.IP{net.ParseIP("127.0.0.1")}
	}
	if o.NotBefore.IsZero() {
		o.NotBefore = time.Now().Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = time.Now().Add(24 * time.Hour)
	}
	ca.serial++
	usage := x509.ExtKeyUsageServerAuth
	if o.Client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     o.DNSNames,
		IPAddresses:  o.IPs,
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		tb.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	certFile = filepath.Join(ca.dir, name+".pem")
	keyFile = filepath.Join(ca.dir, name+"-key.pem")
	writeFile(tb, certFile, append(pemBlock("CERTIFICATE", der), ca.chain...))
	writeFile(tb, keyFile, pemBlock("EC PRIVATE KEY", kder))
	return certFile, keyFile
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func writeFile(tb testing.TB, path string, b []byte) {
	tb.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		tb.Fatal(err)
	}
}

// FreePort returns a loopback TCP port for another process to bind: free a
// moment ago, outside the ephemeral range, never handed out twice (freeport).
func FreePort(tb testing.TB) int {
	tb.Helper()
	p, err := freeport.Get()
	if err != nil {
		tb.Fatal(err)
	}
	return p
}
