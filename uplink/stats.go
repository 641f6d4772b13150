package uplink

import (
	"sync"
	"time"
)

// Stats is a snapshot of what the uplink did since New.
type Stats struct {
	Connected       bool
	Connects        uint64 // successful connections
	ConnectFailures uint64
	Sent            uint64 // messages published (all kinds)
	SentReadings    uint64 // readings carried by them (a retried reading counts again)
	SentByKind      map[string]uint64
	Acked           uint64 // readings acknowledged to the source
	DeadLettered    uint64 // readings set aside for good
	Retried         uint64 // readings released after a failure, to be sent again
	Throttled       uint64 // 429 replies from the platform
	Timeouts        uint64 // messages without a reply in time
	Inflight        int    // messages awaiting their reply or PUBACK
	Downlink        uint64 // downlink requests handled
	DownlinkRefused uint64 // downlink requests refused (unknown, malformed, failed)
	Oversize        uint64 // inbound packets over MaxInboundPacket (each dropped the connection unread)
	LastAck         time.Time
	LastConnect     time.Time
	LastDisconnect  time.Time // when the last connection ended (zero: never connected, or still is)
	LastErr         string
	// ServerTimeOffset is the platform clock minus ours from the last NTP
	// exchange (zero before one completed).
	ServerTimeOffset time.Duration
}

type statsBox struct {
	mu sync.Mutex
	s  Stats
}

func (b *statsBox) update(f func(s *Stats)) {
	b.mu.Lock()
	f(&b.s)
	b.mu.Unlock()
}

func (b *statsBox) snapshot() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.s
	s.SentByKind = make(map[string]uint64, len(b.s.SentByKind))
	for k, v := range b.s.SentByKind {
		s.SentByKind[k] = v
	}
	return s
}

// logGate rate-limits repeated log lines by key: a broken link must not
// write 150,000 lines in five minutes.
type logGate struct {
	mu    sync.Mutex
	every time.Duration
	last  map[string]time.Time
	held  map[string]int
}

func newLogGate(every time.Duration) *logGate {
	return &logGate{every: every, last: map[string]time.Time{}, held: map[string]int{}}
}

// allow reports whether a line for key may be logged now, and how many
// were suppressed since the last one.
func (g *logGate) allow(key string, now time.Time) (bool, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t, ok := g.last[key]; ok && now.Sub(t) < g.every {
		g.held[key]++
		return false, 0
	}
	g.last[key] = now
	n := g.held[key]
	g.held[key] = 0
	return true, n
}
