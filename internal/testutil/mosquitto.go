package testutil

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// MosquittoOpts configure a broker started by a test.
type MosquittoOpts struct {
	// TLS: when CertFile is set the listener speaks TLS with that
	// certificate and key.
	CAFile, CertFile, KeyFile string
	// RequireClientCert makes the broker demand a client certificate signed
	// by CAFile.
	RequireClientCert bool
	// PasswordFile (mosquitto_passwd format) disables anonymous access.
	PasswordFile string
	// Port to listen on (0: a free one).
	Port int
	// Extra lines appended to the config.
	Extra []string
}

// Mosquitto is a real broker process owned by a test.
type Mosquitto struct {
	Port int
	Addr string // 127.0.0.1:port
	cmd  *exec.Cmd
	conf string
	log  *lockedBuffer
	done chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// MosquittoPath finds the broker binary; tests fail (not skip) without it,
// because CI installs it.
func MosquittoPath(tb testing.TB) string {
	tb.Helper()
	for _, p := range []string{"mosquitto", "/usr/sbin/mosquitto"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	tb.Fatal("mosquitto not found: install the Debian package mosquitto (.ci/run does)")
	return ""
}

// StartMosquitto starts a broker on a free loopback port and stops it when
// the test ends.
func StartMosquitto(tb testing.TB, o MosquittoOpts) *Mosquitto {
	tb.Helper()
	bin := MosquittoPath(tb)
	if o.Port == 0 {
		o.Port = FreePort(tb)
	}
	dir := tb.TempDir()
	var conf strings.Builder
	fmt.Fprintf(&conf, "per_listener_settings false\npersistence false\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n")
	if os.Geteuid() == 0 {
		// Do not drop to the mosquitto user: the test's files are private.
		fmt.Fprintf(&conf, "user root\n")
	}
	fmt.Fprintf(&conf, "listener %d 127.0.0.1\n", o.Port)
	if o.CertFile != "" {
		fmt.Fprintf(&conf, "certfile %s\nkeyfile %s\n", o.CertFile, o.KeyFile)
		if o.CAFile != "" {
			fmt.Fprintf(&conf, "cafile %s\n", o.CAFile)
		}
		if o.RequireClientCert {
			fmt.Fprintf(&conf, "require_certificate true\n")
		}
	}
	if o.PasswordFile != "" {
		fmt.Fprintf(&conf, "allow_anonymous false\npassword_file %s\n", o.PasswordFile)
	} else {
		fmt.Fprintf(&conf, "allow_anonymous true\n")
	}
	for _, l := range o.Extra {
		conf.WriteString(l + "\n")
	}
	confPath := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	m := &Mosquitto{Port: o.Port, Addr: fmt.Sprintf("127.0.0.1:%d", o.Port), conf: confPath, log: &lockedBuffer{}}
	m.start(tb, bin)
	tb.Cleanup(func() { m.Stop() })
	return m
}

func (m *Mosquitto) start(tb testing.TB, bin string) {
	tb.Helper()
	cmd := exec.Command(bin, "-c", m.conf)
	// If the test binary dies (a timeout panic skips the cleanups), the
	// broker must not outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	cmd.Stdout = m.log
	cmd.Stderr = m.log
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start mosquitto: %v", err)
	}
	m.cmd = cmd
	m.done = make(chan struct{})
	go func() { cmd.Wait(); close(m.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", m.Addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-m.done:
			tb.Fatalf("mosquitto exited: %s", m.log.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	m.Stop()
	tb.Fatalf("mosquitto did not listen on %s within 10s: %s", m.Addr, m.log.String())
}

// Log returns what the broker printed so far.
func (m *Mosquitto) Log() string { return m.log.String() }

// Stop terminates the broker and waits for it (bounded).
func (m *Mosquitto) Stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	select {
	case <-m.done:
		return
	default:
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(5 * time.Second):
		m.cmd.Process.Kill()
		<-m.done
	}
}

// Restart stops and starts the broker on the same port.
func (m *Mosquitto) Restart(tb testing.TB) {
	tb.Helper()
	m.Stop()
	m.start(tb, m.cmd.Path)
}

// Pause freezes the broker (SIGSTOP): connections stay open but nothing is
// answered, like a blackholed network. Resume undoes it.
func (m *Mosquitto) Pause()  { m.cmd.Process.Signal(syscall.SIGSTOP) }
func (m *Mosquitto) Resume() { m.cmd.Process.Signal(syscall.SIGCONT) }
