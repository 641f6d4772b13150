package uplink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"gatewayd/internal/rawio"
	"gatewayd/internal/reading"
)

// Errors Run and its helpers wrap.
var (
	// ErrAuth: the far end refused our credentials (CONNACK 4 or 5).
	ErrAuth = errors.New("credentials refused")
	// ErrConnectionLost: an established connection broke.
	ErrConnectionLost = errors.New("connection lost")
	// ErrClock marks a certificate error that a wrong system clock explains
	// better than a wrong server: a board without an RTC boots in the past.
	ErrClock   = errors.New("the system clock looks wrong")
	errRunning = errors.New("uplink: Run is already running")
)

// Client is the uplink. Create it with New, run it with Run.
type Client struct {
	o       Options
	src     reading.Source
	log     *slog.Logger
	p       platform
	win     *window // nil: unlimited
	gate    *logGate
	stats   statsBox
	running atomic.Bool
	nextID  atomic.Uint64
	ntp     ntpClock // NTP answers count only for the last request sent

	inbound chan inboundMsg           // paho handlers -> send loop
	jobs    chan job                  // send loop -> downlink worker
	quiet   chan struct{}             // Quiet -> send loop
	gconn   atomic.Pointer[guardConn] // the current connection's guard: keepalive
	quietAt atomic.Int64              // Options.Now in Unix ns until which no live sample comes (Quiet)

	mu   sync.Mutex
	conn mqtt.Client   // current connection, for the downlink worker's replies
	done chan struct{} // closed when Run returns: paho callbacks stop waiting
}

// Quiet tells the client that no new live sample will reach its source for
// d: the sensors' sampling round is complete (sensors.Options.Quiet). Live
// samples then go out at once when waiting out MaxDelay could not add
// another sample to their message: the same messages as waiting, sent up to
// MaxDelay sooner, and one wake-up of the board fewer per round. Without
// calls to Quiet, live samples wait MaxDelay as before. The caller keeps
// its promise: a sample appended before d runs out is taken to belong to
// the round just promised complete and goes at once too. Safe to call from
// any goroutine, at any time.
func (c *Client) Quiet(d time.Duration) {
	c.quietAt.Store(c.o.Now().Add(d).UnixNano())
	select {
	case c.quiet <- struct{}{}:
	default:
	}
}

type inboundMsg struct {
	topic   string
	payload []byte
}

// New validates o and returns a Client that drains src.
func New(o Options, src reading.Source) (*Client, error) {
	if src == nil {
		return nil, errors.New("uplink: nil reading source")
	}
	opts, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Client{
		o:       opts,
		src:     src,
		log:     opts.Logger.With("component", "uplink", "platform", opts.Platform),
		gate:    newLogGate(30 * time.Second),
		inbound: make(chan inboundMsg, 256),
		jobs:    make(chan job, 8),
		quiet:   make(chan struct{}, 1),
	}
	c.win = newWindow(opts.MaxMessagesPerSecond, windowGuard)
	if opts.Platform == PlatformMQTT {
		c.p = &plainMQTT{o: &c.o, newID: c.newID}
	} else {
		c.p = &alink{o: &c.o, newID: c.newID}
	}
	// Ids are unique per device per day: start at the milliseconds since
	// UTC midnight and count up. A restart later the same day starts above
	// every id used before as long as we averaged under 1000 messages/s.
	now := opts.Now().UTC()
	mid := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	c.nextID.Store(uint64(now.Sub(mid).Milliseconds()))
	if _, err := c.tlsConfigIfNeeded(); err != nil {
		return nil, fmt.Errorf("uplink options: %w", err)
	}
	return c, nil
}

// Stats returns a snapshot of the counters.
func (c *Client) Stats() Stats { return c.stats.snapshot() }

func (c *Client) newID() string {
	return strconv.FormatUint((c.nextID.Add(1)-1)%(1<<32), 10)
}

// beat tells the watchdog the send loop is alive.
func (c *Client) beat() {
	if c.o.Beat != nil {
		c.o.Beat()
	}
}

// sleep waits d or until ctx ends, beating meanwhile; false if ctx ended.
func (c *Client) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	tick := time.NewTicker(c.o.BeatEvery)
	defer tick.Stop()
	for {
		c.beat()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-tick.C:
		}
	}
}

// waitToken waits for a paho token, the context, or the timeout, beating.
func (c *Client) waitToken(ctx context.Context, tok mqtt.Token, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	tick := time.NewTicker(c.o.BeatEvery)
	defer tick.Stop()
	for {
		c.beat()
		select {
		case <-tok.Done():
			return tok.Error()
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return fmt.Errorf("no answer within %v", timeout)
		case <-tick.C:
		}
	}
}

// backoff is the capped exponential backoff with full jitter: a fleet of
// boards must not reconnect in lockstep after a platform outage. The cap
// (BackoffMax, 20 s) is what bounds recovery: however long the outage, a
// board's next attempt after the platform returns comes within the cap,
// half of it on average, while 500 boards still knock at about 50/s
// (recovery_test.go models both with this function).
// lostFailures is where the backoff starts after a lost connection: the
// window of the first retry is BackoffMin<<(lostFailures-1).
const lostFailures = 5

func (c *Client) backoff(failures int) time.Duration {
	ceil := c.o.BackoffMax
	if failures < 30 {
		if d := c.o.BackoffMin << (failures - 1); d > 0 && d < ceil {
			ceil = d
		}
	}
	if failures <= 0 {
		ceil = c.o.BackoffMin
	}
	// Full jitter, but never below a tenth of the floor: zero waits in a
	// row would be a storm of their own.
	return c.o.BackoffMin/10 + rand.N(ceil)
}

// Run connects, drains the source until ctx ends, then disconnects. It
// returns nil after a clean stop; it never gives up on its own.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errRunning
	}
	defer c.running.Store(false)
	done := make(chan struct{})
	c.mu.Lock()
	c.done = done
	c.mu.Unlock()
	defer close(done)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { c.worker(ctx) })

	failures := 0
	for ctx.Err() == nil {
		cl, lost, err := c.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			c.stats.update(func(s *Stats) { s.ConnectFailures++; s.LastErr = err.Error() })
			d := c.backoff(failures)
			if errors.Is(err, ErrAuth) {
				// Credentials do not fix themselves: wait long (with
				// jitter) instead of hammering the platform.
				d = c.o.AuthBackoff/2 + rand.N(c.o.AuthBackoff/2+1)
			}
			if ok, n := c.gate.allow("connect", c.o.Now()); ok {
				c.log.Error("connect failed", "err", err, "retry_in", d.Round(time.Millisecond), "attempt", failures, "suppressed", n)
			}
			if !c.sleep(ctx, d) {
				break
			}
			continue
		}
		failures = 0
		c.setConn(cl)
		c.stats.update(func(s *Stats) { s.Connected = true; s.Connects++; s.LastConnect = c.o.Now() })
		c.log.Info("connected", "server", c.serverDesc())
		err = c.serve(ctx, cl, lost)
		c.setConn(nil)
		c.stats.update(func(s *Stats) { s.Connected = false; s.Inflight = 0; s.LastDisconnect = c.o.Now() })
		if ctx.Err() != nil {
			// Clean disconnect: DISCONNECT tells the platform we left on
			// purpose; 250ms lets paho flush it.
			cl.Disconnect(250)
			break
		}
		cl.Disconnect(0)
		c.stats.update(func(s *Stats) { s.LastErr = err.Error() })
		// A lost link is often lost by the whole fleet at once (the broker
		// restarted): spread the first retry over 16 floors (16 s by default)
		// instead of one, so 500 boards do not all knock within a second.
		failures = lostFailures
		d := c.backoff(failures)
		if ok, n := c.gate.allow("lost", c.o.Now()); ok {
			c.log.Warn("disconnected", "err", err, "retry_in", d.Round(time.Millisecond), "suppressed", n)
		}
		if !c.sleep(ctx, d) {
			break
		}
	}
	c.log.Info("stopped")
	return nil
}

func (c *Client) setConn(cl mqtt.Client) {
	c.mu.Lock()
	c.conn = cl
	c.mu.Unlock()
}

func (c *Client) serverDesc() string {
	if c.o.Platform == PlatformMQTT {
		return c.o.Broker
	}
	return c.o.Endpoint
}

// dialTarget returns host:port and whether to use TLS.
func (c *Client) dialTarget() (string, bool, error) {
	if c.o.Platform == PlatformAliyun {
		return c.o.Endpoint, c.o.TLS, nil
	}
	u, err := url.Parse(c.o.Broker)
	if err != nil {
		return "", false, err
	}
	return u.Host, u.Scheme == "tls" || u.Scheme == "ssl" || u.Scheme == "mqtts", nil
}

func (c *Client) tlsConfigIfNeeded() (*tls.Config, error) {
	addr, useTLS, err := c.dialTarget()
	if err != nil || !useTLS {
		return nil, err
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	return c.tlsConfig(host)
}

// connect dials (TLS verified by us, so a wrong clock can be named), sends
// the CONNECT and subscribes to the downlink topics.
func (c *Client) connect(ctx context.Context) (mqtt.Client, chan error, error) {
	addr, useTLS, err := c.dialTarget()
	if err != nil {
		return nil, nil, err
	}
	tcfg, err := c.tlsConfigIfNeeded()
	if err != nil {
		return nil, nil, err
	}
	opts := mqtt.NewClientOptions()
	opts.AddBroker("tcp://" + addr) // the dial below decides TLS
	opts.SetCustomOpenConnectionFn(func(*url.URL, mqtt.ClientOptions) (net.Conn, error) {
		dctx, cancel := context.WithTimeout(ctx, c.o.ConnectTimeout)
		defer cancel()
		var d net.Dialer
		raw, err := d.DialContext(dctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		raw = rawio.Wrap(raw) // reads and writes without waking the runtime's monitor thread
		if !useTLS {
			c.warnPlaintext()
			return c.guard(raw), nil
		}
		tc := tls.Client(raw, tcfg)
		if err := tc.HandshakeContext(dctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("tls handshake with %s: %w", addr, c.explainTLS(err, c.o.Now()))
		}
		return c.guard(tc), nil // inbound packets over MaxInboundPacket are refused unread
	})
	cr, err := c.o.credentials()
	if err != nil {
		return nil, nil, err
	}
	opts.SetClientID(cr.ClientID)
	opts.SetUsername(cr.Username)
	opts.SetPassword(cr.Password)
	// A persistent session keeps the platform's subscriptions across
	// reconnects; a fresh paho client (and store) per connection keeps paho
	// from resending messages we already released to the source.
	opts.SetCleanSession(false)
	opts.SetProtocolVersion(4)
	// The keepalive is ours (Client.keepalive): paho's pinger checks on a
	// 5 s ticker of its own phase, a wake-up of the board every 5 s that
	// no other timer shares. Paho connects with 0; the guard writes
	// Options.Keepalive into the CONNECT, so the broker sees the same.
	opts.SetKeepAlive(0)
	opts.SetAutoReconnect(false)
	opts.SetConnectRetry(false)
	opts.SetConnectTimeout(c.o.ConnectTimeout)
	opts.SetWriteTimeout(c.o.ConnectTimeout)
	opts.SetOrderMatters(true) // in order; onMessage never blocks paho's router
	lost := make(chan error, 1)
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		select {
		case lost <- fmt.Errorf("%w: %w", ErrConnectionLost, err):
		default:
		}
	})
	opts.SetDefaultPublishHandler(c.onMessage)
	cl := mqtt.NewClient(opts)
	tok := cl.Connect()
	if err := c.waitToken(ctx, tok, c.o.ConnectTimeout+time.Second); err != nil {
		cl.Disconnect(0)
		done := false
		select {
		case <-tok.Done():
			done = true // only then is the return code safe to read
		default:
		}
		if ct, ok := tok.(*mqtt.ConnectToken); ok && done {
			switch ct.ReturnCode() {
			case 4:
				return nil, nil, fmt.Errorf("connect to %s: %w: CONNACK 4 bad user name or password (check product key, device name, device secret and sign method): %w", addr, ErrAuth, err)
			case 5:
				return nil, nil, fmt.Errorf("connect to %s: %w: CONNACK 5 not authorised (device disabled or deleted, or the credentials are wrong): %w", addr, ErrAuth, err)
			}
		}
		return nil, nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	subs := map[string]byte{c.o.ControlTopic: 1}
	for t, q := range c.p.subscriptions() {
		subs[t] = q
	}
	// No callback: every message then reaches the default handler (the
	// same onMessage) without paho matching it against a route per
	// subscription, which splits the topic and each filter into fresh
	// slices for every message (~1 KiB of garbage per round).
	if err := c.waitToken(ctx, cl.SubscribeMultiple(subs, nil), c.o.ConnectTimeout); err != nil {
		cl.Disconnect(0)
		return nil, nil, fmt.Errorf("subscribe: %w", err)
	}
	return cl, lost, nil
}

// onMessage runs on paho's router goroutine (in order): copy and hand over
// to the bounded inbound queue without ever blocking. A full queue drops the
// message (counted, logged): a lost reply only means a resend.
func (c *Client) onMessage(_ mqtt.Client, m mqtt.Message) {
	p := append([]byte(nil), m.Payload()...)
	select {
	case c.inbound <- inboundMsg{topic: m.Topic(), payload: p}:
	default:
		c.refuse(m.Topic(), errors.New("downlink message dropped: the send loop is busy (inbound queue full)"))
	}
}

func randN(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}
