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

// GenerateCerts makes a throwaway certificate chain shaped like the
// platform's in dir, unless all three files already exist (then it returns
// them unchanged, so a demo's gateway keeps trusting the same root across
// restarts): a private self-signed root (caFile; like "CN=Aliyun IoT Root
// CA", it is never sent by the server), an intermediate (like "CN=Aliyun,
// O=Aliyun IoT, OU=IoT Platform") and a server certificate for localhost and
// 127.0.0.1. certFile holds the leaf followed by the intermediate, which is
// what the server sends. The demo points the gateway's ca_file (with
// replacement) at caFile.
func GenerateCerts(dir string) (caFile, certFile, keyFile string, err error) {
	caFile, certFile, keyFile = filepath.Join(dir, CAFileName), filepath.Join(dir, CertFileName), filepath.Join(dir, KeyFileName)
	if exists(caFile) && exists(certFile) && exists(keyFile) {
		return caFile, certFile, keyFile, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", "", fmt.Errorf("iotsim certs: %w", err)
	}
	now := time.Now()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", fmt.Errorf("iotsim certs: %w", err)
	}
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "iotsim throwaway root CA", Organization: []string{"iotsim"}, OrganizationalUnit: []string{"Root CA"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(5, 0, 0),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		return "", "", "", fmt.Errorf("iotsim certs: %w", err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	midKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", fmt.Errorf("iotsim certs: %w", err)
	}
	midTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "iotsim", Organization: []string{"iotsim"}, OrganizationalUnit: []string{"IoT Platform"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(5, 0, 0),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	midDER, err := x509.CreateCertificate(rand.Reader, midTmpl, root, &midKey.PublicKey, rootKey)
	if err != nil {
		return "", "", "", fmt.Errorf("iotsim certs: %w", err)
	}
	mid, _ := x509.ParseCertificate(midDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", fmt.Errorf("iotsim certs: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(5, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, mid, &key.PublicKey, midKey)
	if err != nil {
		return "", "", "", fmt.Errorf("iotsim certs: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", "", fmt.Errorf("iotsim certs: %w", err)
	}
	err = errors.Join(
		os.WriteFile(caFile, pemBlock("CERTIFICATE", rootDER), 0o644),
		// leaf, then intermediate; the root is not sent
		os.WriteFile(certFile, append(pemBlock("CERTIFICATE", der), pemBlock("CERTIFICATE", midDER)...), 0o644),
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
