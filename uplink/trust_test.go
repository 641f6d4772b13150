package uplink_test

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"strings"
	"testing"
	"time"

	"gatewayd/internal/iotsim"
	"gatewayd/internal/testutil"
	"gatewayd/uplink"
)

// The built-in roots are the ones the platform's endpoints chain to, byte
// for byte: the Aliyun file hashes to the MD5 Alibaba publishes.
func TestBuiltinRoots(t *testing.T) {
	if got := hex.EncodeToString(md5sum(uplink.AliyunRootFile())); got != uplink.AliyunRootMD5 {
		t.Fatalf("embedded ali_iot_ca.crt MD5 %s, Alibaba publishes %s", got, uplink.AliyunRootMD5)
	}
	want := map[string]struct {
		sha      string
		notAfter time.Time
		subject  string
	}{
		"GlobalSign Root CA": {"EBD41040E4BB3EC742C9E381D31EF2A41A48B6685C96E7CEF3C1DF6CD4331C99",
			time.Date(2028, 1, 28, 12, 0, 0, 0, time.UTC), "CN=GlobalSign Root CA,OU=Root CA,O=GlobalSign nv-sa,C=BE"},
		"Aliyun IoT Root CA": {"7CA438A3976B5242D231F861499822DA855831382735836B361E7E9715661676",
			time.Date(2053, 7, 4, 6, 36, 58, 0, time.UTC), "CN=Aliyun IoT Root CA,OU=Root CA,O=Aliyun IoT,L=Hangzhou,ST=Zhejiang,C=CN"},
	}
	for _, f := range [][]byte{uplink.GlobalSignR1File(), uplink.AliyunRootFile()} {
		b, _ := pem.Decode(f)
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		w, ok := want[c.Subject.CommonName]
		sum := sha256.Sum256(c.Raw)
		if !ok || strings.ToUpper(hex.EncodeToString(sum[:])) != w.sha || !c.NotAfter.Equal(w.notAfter) ||
			c.Subject.String() != w.subject || c.Issuer.String() != w.subject || !c.IsCA {
			t.Fatalf("root %s: sha256 %X, until %v, issuer %s", c.Subject, sum, c.NotAfter, c.Issuer)
		}
		// (Go refuses to check SHA-1 signatures; GlobalSign R1's own one does
		// not matter: a root is trusted by its bytes, not its signature.)
		if err := c.CheckSignatureFrom(c); err != nil && c.SignatureAlgorithm != x509.SHA1WithRSA {
			t.Fatalf("%s is not self-signed: %v", c.Subject, err)
		}
	}
	rs := uplink.BuiltinRoots()
	if len(rs) != 2 || rs[0].Name != "GlobalSign Root CA" || rs[1].Name != "Aliyun IoT Root CA" || rs[1].NotAfter.Year() != 2053 {
		t.Fatalf("BuiltinRoots() = %+v", rs)
	}
}

func md5sum(b []byte) []byte { s := md5.Sum(b); return s[:] }

// check warns a year ahead of a built-in root's expiry, not before.
func TestRootWarnings(t *testing.T) {
	for _, tc := range []struct {
		now  time.Time
		want []string
	}{
		{time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC), nil},
		{time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC), []string{`"GlobalSign Root CA" expires on 2028-01-28 (in 361 days)`}},
		{time.Date(2028, 2, 1, 0, 0, 0, 0, time.UTC), []string{`"GlobalSign Root CA" expired on 2028-01-28`}},
		{time.Date(2052, 8, 1, 0, 0, 0, 0, time.UTC), []string{`"GlobalSign Root CA" expired`, `"Aliyun IoT Root CA" expires on 2053-07-04`}},
	} {
		got := uplink.RootWarnings(tc.now)
		if len(got) != len(tc.want) {
			t.Fatalf("%v: %q", tc.now, got)
		}
		for i, w := range tc.want {
			if !strings.Contains(got[i], w) {
				t.Errorf("%v: %q does not contain %q", tc.now, got[i], w)
			}
		}
	}
}

// platformLikeSim serves the emulator under a private root exactly like the
// real platform: root -> intermediate -> leaf, and the server sends leaf and
// intermediate only.
func platformLikeSim(t *testing.T) (*sim, *testutil.CA) {
	t.Helper()
	root := testutil.NewCA(t, "private-root")
	mid := root.NewIntermediate(t, "Aliyun")
	cert, key := mid.Issue(t, "iotsim-server", testutil.CertOpts{})
	out := &logBuf{}
	s, err := iotsim.Start(iotsim.Options{
		TLSAddr: "127.0.0.1:0", CertFile: cert, KeyFile: key, Out: out,
		Devices: []iotsim.Device{{ProductKey: pk, DeviceName: dn, DeviceSecret: secret}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &sim{Server: s, caFile: root.File, out: out}, root
}

func TestPlatformLikeChainRootNotSent(t *testing.T) {
	s, root := platformLikeSim(t)
	pool := x509.NewCertPool()
	pool.AddCert(root.Cert)
	conn, err := tls.Dial("tcp", s.TLSAddr(), &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	peers := conn.ConnectionState().PeerCertificates
	if len(peers) != 2 || peers[1].Subject.CommonName != "Aliyun" || !peers[1].IsCA || peers[1].Issuer.CommonName != "private-root" {
		t.Fatalf("server sent %d certificates: %v", len(peers), peers)
	}
	for _, p := range peers {
		if p.Equal(root.Cert) {
			t.Fatal("the server sent its root")
		}
	}
}

// With the emulator's private root among the built-in ones, the uplink
// connects with no ca_file at all; with the real built-in roots it refuses,
// and says which file to get and how to check it.
func TestBuiltinRootsAloneTrustPlatformChain(t *testing.T) {
	s, root := platformLikeSim(t)
	for _, tc := range []struct {
		name  string
		roots [][]byte
		ok    bool
	}{
		{"emulator root built in", [][]byte{uplink.GlobalSignR1File(), root.CertPEM}, true},
		{"real built-in roots", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.roots != nil {
				defer uplink.SetBuiltinRootsForTest(tc.roots...)()
			}
			log, _ := newLogger(t)
			src := testutil.NewMemSource()
			src.Add(liveReadings(3, time.Now())...)
			o := simOptions(s, log)
			o.CAFile, o.CAReplace = "", false
			c := newClient(t, o, src)
			stop := run(t, c)
			testutil.Eventually(5*time.Second, func() bool {
				left, _, _, _ := src.Counts()
				return left == 0 || c.Stats().ConnectFailures > 0
			})
			stop()
			left, _, _, _ := src.Counts()
			st := c.Stats()
			if drained := left == 0 && st.ConnectFailures == 0; drained != tc.ok {
				t.Fatalf("drained=%v, want %v; stats %+v", drained, tc.ok, st)
			}
			if !tc.ok {
				for _, w := range []string{"certificate signed by unknown authority", "ali_iot_ca.crt", "Connect over MQTT-TLS", uplink.AliyunRootMD5, "Aliyun IoT Root CA (until 2053-07-04)"} {
					if !strings.Contains(st.LastErr, w) {
						t.Errorf("LastErr %q does not contain %q", st.LastErr, w)
					}
				}
			}
		})
	}
}

// The demo's generated certificates have the platform's shape too.
func TestIotsimGeneratedChain(t *testing.T) {
	caFile, certFile, _, err := iotsim.GenerateCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, _ := os.ReadFile(caFile)
	chainPEM, _ := os.ReadFile(certFile)
	var chain []*x509.Certificate
	for rest := chainPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	rb, _ := pem.Decode(rootPEM)
	root, _ := x509.ParseCertificate(rb.Bytes)
	if len(chain) != 2 || chain[1].Equal(root) || chain[0].Equal(root) {
		t.Fatalf("server chain has %d certificates (root included?)", len(chain))
	}
	roots, mids := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	mids.AddCert(chain[1])
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: mids, DNSName: "localhost"}); err != nil {
		t.Fatal(err)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, DNSName: "localhost"}); err == nil {
		t.Fatal("the leaf verifies without the intermediate: it is not an intermediate chain")
	}
}
