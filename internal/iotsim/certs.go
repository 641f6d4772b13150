package iotsim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Names of the files GenerateCerts writes.
const (
	CAFileName   = "iotsim-ca.pem"
	CertFileName = "iotsim-server.pem"
	KeyFileName  = "iotsim-server-key.pem"
)

// GenerateCerts makes a throwaway CA and a server certificate for
// localhost and 127.0.0.1 in dir, unless all three files already exist
// (then it returns them unchanged, so a demo's gateway keeps trusting the
// same CA across restarts). The demo points the gateway's ca_file (with
// replacement) at caFile.
func GenerateCerts(dir string) (caFile, certFile, keyFile string, err error) {
	caFile, certFile, keyFile = filepath.Join(dir, CAFileName), filepath.Join(dir, CertFileName), filepath.Join(dir, KeyFileName)
	if exists(caFile) && exists(certFile) && exists(keyFile) {
		return caFile, certFile, keyFile, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", "", fmt.Errorf("iotsim certs: %w", err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", fmt.Errorf("iotsim certs: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "iotsim throwaway CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(5, 0, 0),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return "", "", "", fmt.Errorf("iotsim certs: %w", err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", fmt.Errorf("iotsim certs: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(5, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return "", "", "", fmt.Errorf("iotsim certs: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", "", fmt.Errorf("iotsim certs: %w", err)
	}
	err = errors.Join(
		os.WriteFile(caFile, pemBlock("CERTIFICATE", caDER), 0o644),
		os.WriteFile(certFile, pemBlock("CERTIFICATE", der), 0o644),
		os.WriteFile(keyFile, pemBlock("EC PRIVATE KEY", kder), 0o600),
	)
	if err != nil {
		return "", "", "", fmt.Errorf("iotsim certs: %w", err)
	}
	return caFile, certFile, keyFile, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
