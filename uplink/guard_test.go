package uplink_test

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gatewayd/internal/mqttwire"
	"gatewayd/internal/reading"
	"gatewayd/internal/testutil"
	"gatewayd/uplink"
)

// readPacket reads one MQTT packet (test broker side).
func readPacket(r *bufio.Reader) (byte, []byte, error) { return mqttwire.Read(r, nil) }

func varint(n int) []byte { return mqttwire.AppendLength(nil, n) }

// hostile plays a broken or malicious broker on one connection: CONNACK,
// SUBACK, then a PUBLISH whose header announces 200 MiB, followed by junk
// for as long as the client reads (at most 16 MiB).
func hostile(t *testing.T, c net.Conn, sent *atomic.Int64) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	if h, _, err := readPacket(r); err != nil || h>>4 != 1 {
		t.Errorf("hostile broker: want CONNECT, got %x %v", h, err)
		return
	}
	c.Write([]byte{0x20, 2, 0, 0})
	for {
		h, body, err := readPacket(r)
		if err != nil {
			return
		}
		if h>>4 != 8 { // not SUBSCRIBE: ignore (publishes are never answered)
			continue
		}
		n := 0
		for p := body[2:]; len(p) >= 2; n++ {
			l := int(binary.BigEndian.Uint16(p))
			p = p[min(len(p), 2+l+1):]
		}
		suback := append([]byte{0x90}, varint(2+n)...)
		suback = append(suback, body[:2]...)
		for i := 0; i < n; i++ {
			suback = append(suback, 1)
		}
		c.Write(suback)
		break
	}
	const announced = 200 << 20
	pub := append([]byte{0x30}, varint(announced)...)
	pub = append(pub, 0, 3, 'a', '/', 'b')
	if _, err := c.Write(pub); err != nil {
		return
	}
	junk := make([]byte, 64<<10)
	for i := range junk {
		junk[i] = byte(i * 7)
	}
	for sent.Load() < 16<<20 {
		c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Write(junk)
		sent.Add(int64(n))
		if err != nil {
			return
		}
	}
}

// A broker that announces a 200 MiB PUBLISH and streams junk: the uplink
// refuses the packet before reading it into memory (Go heap grows by under
// 5 MiB), drops the connection, logs it, reconnects to a good broker, and
// every reading arrives.
func TestHostileBrokerOversizePublish(t *testing.T) {
	s := startSim(t, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for i := 0; ; i++ {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if i == 0 {
				wg.Go(func() { hostile(t, c, &sent) })
				continue
			}
			wg.Go(func() { // later connections reach the good broker
				defer c.Close()
				up, err := net.Dial("tcp", s.TCPAddr())
				if err != nil {
					return
				}
				defer up.Close()
				go func() { io.Copy(up, c); up.Close() }()
				io.Copy(c, up)
			})
		}
	})

	log, logs := newLogger(t)
	src := testutil.NewMemSource()
	rs := src.Add(liveSamples(10, time.Now())...) // 30 values
	n := reading.CountValues(rs)
	o := simOptions(s, log)
	o.Endpoint, o.TLS, o.CAFile, o.CAReplace = l.Addr().String(), false, "", false
	c := newClient(t, o, src)

	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	stop := run(t, c)
	if !testutil.Eventually(10*time.Second, func() bool { return c.Stats().Oversize >= 1 }) {
		t.Fatalf("oversize packet not refused; stats %+v", c.Stats())
	}
	runtime.ReadMemStats(&m1)
	if grew := m1.TotalAlloc - m0.TotalAlloc; grew > 5<<20 {
		t.Fatalf("Go heap allocations grew by %.1f MiB while a 200 MiB packet was announced (limit 5 MiB)", float64(grew)/(1<<20))
	} else {
		t.Logf("allocated %.2f MiB in total while the hostile broker announced 200 MiB and sent %.1f MiB of junk",
			float64(grew)/(1<<20), float64(sent.Load())/(1<<20))
	}
	if !testutil.Eventually(15*time.Second, func() bool { left, acked, _, _ := src.Counts(); return left == 0 && acked == n }) {
		left, acked, dead, infl := src.Counts()
		t.Fatalf("after the hostile broker: left %d acked %d dead %d inflight %d; stats %+v", left, acked, dead, infl, c.Stats())
	}
	stop()
	st := c.Stats()
	if st.Connects < 2 || st.Oversize != 1 {
		t.Fatalf("stats %+v", st)
	}
	if got := len(s.Accepted()); got < n {
		t.Fatalf("the good broker accepted %d of %d values", got, n)
	}
	if !strings.Contains(logs.String(), "over the size limit") || !strings.Contains(logs.String(), "announced 209715200 bytes") {
		t.Fatalf("oversize not logged:\n%s", logs.String())
	}
	if n := strings.Count(logs.String(), "travel in clear"); n < 1 {
		t.Fatal("plaintext connection not warned about")
	}
	_ = uplink.MaxInboundPacket
}
