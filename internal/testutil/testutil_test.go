package testutil

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
)

// The broker helper must really serve TLS with the throwaway CA: everything
// that talks to Mosquitto in other packages relies on it.
func TestMosquittoTLS(t *testing.T) {
	ca := NewCA(t, "test")
	cert, key := ca.Issue(t, "server", CertOpts{})
	m := StartMosquitto(t, MosquittoOpts{CAFile: ca.File, CertFile: cert, KeyFile: key})
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(ca.File)
	pool.AppendCertsFromPEM(pem)
	c, err := tls.Dial("tcp", m.Addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("tls dial: %v\n%s", err, m.Log())
	}
	c.Close()
	if _, err := tls.Dial("tcp", m.Addr, &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "localhost"}); err == nil {
		t.Fatal("dial with an empty trust store succeeded")
	}
}
