package uplink

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"gatewayd/internal/reading"
)

// outMsg is one message on its way: published and awaiting its reply (or
// PUBACK on a plain broker). Its readings are in flight in the source until
// the message is acknowledged, dead-lettered or released.
type outMsg struct {
	kind     kind
	key      string // Alink id, or "r"+reading id on a plain broker
	topic    string
	payload  []byte
	ids      []reading.ID
	rs       []reading.Reading // what ids name, kept to split a refused message
	deadline time.Time
}

type pubResult struct {
	m   *outMsg
	err error
}

// sendState is owned by the send loop goroutine alone.
type sendState struct {
	pending    map[string]*outMsg
	live       []*outMsg // built from live readings, not yet published
	backlog    []*outMsg // built from backlog readings, not yet published
	split      []*outMsg // halves of refused messages, to find the bad readings
	liveDirty  bool      // readings were appended since the last live Take
	liveCheck  time.Time // next unconditional live Take
	liveHold   time.Time // no live Take before (time not trustworthy yet)
	backHold   time.Time // no backlog Take before (empty, or untrustworthy times)
	pauseUntil time.Time // retry backoff after 429/500/timeouts
	fails      int       // consecutive retryable failures
	window     float64   // congestion window (messages in flight), AIMD on 429
	acks       []reading.ID
	ntpDue     time.Time
	ntpSynced  bool
}

// action is what a platform reply code means for the readings of a message.
type action int

const (
	actAck action = iota
	actRetry
	actDeadLetter
)

// classifyCode decides, per reply code, whether retrying can ever help.
// 460 (bad parameters), 6106 (over 200 properties), 6203 (topic parse error)
// and 26001..26010 (data-parsing script errors) reject the message itself:
// resending it would fail forever, so its readings are dead-lettered. 429
// and 500 are transient. Anything unknown (including device-level errors
// such as 6100 device not found or 6204 device disabled, which would
// otherwise dead-letter the whole buffer) is retried with backoff.
func classifyCode(code int) action {
	switch {
	case code == 200:
		return actAck
	case code == 460, code == 6106, code == 6203, code >= 26001 && code <= 26010:
		return actDeadLetter
	}
	return actRetry
}

func (c *Client) serve(ctx context.Context, cl mqtt.Client, lost chan error) (err error) {
	// Publishes outlive ctx by the shutdown grace, so the answers to what is
	// already in flight can still arrive (see drainInflight).
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	pubDone := make(chan pubResult, c.o.MaxInflight)
	st := &sendState{pending: map[string]*outMsg{}, liveDirty: true, window: float64(c.o.MaxInflight)}
	defer func() {
		cancel()
		wg.Wait()
		c.flushAcks(st)
		var ids []reading.ID
		for _, m := range st.pending {
			ids = append(ids, m.ids...)
		}
		for _, m := range append(append(st.live, st.backlog...), st.split...) {
			ids = append(ids, m.ids...)
		}
		if len(ids) > 0 {
			// In flight when the connection ended: send again later. The far
			// end may have seen some of them (the only source of duplicates).
			c.src.Release(ids)
			c.stats.update(func(s *Stats) { s.Retried += uint64(len(ids)) })
		}
	}()
	notify := c.src.Notify()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c.beat()
		now := c.o.Now()
		c.expire(st, now)
		c.fill(sctx, cl, st, now, &wg, pubDone)
		c.maybeNTP(cl, st, now)
		c.flushAcks(st)
		c.stats.update(func(s *Stats) { s.Inflight = len(st.pending) })
		timer.Reset(c.nextWake(st, c.o.Now()))
		select {
		case <-ctx.Done():
			c.drainInflight(cl, st, lost, pubDone)
			return nil
		case err := <-lost:
			return err
		case <-notify:
			// Mostly live readings, but a restarted buffer or re-dated
			// readings may add backlog too: look at both at once.
			st.liveDirty = true
			st.backHold = time.Time{}
		case r := <-pubDone:
			c.published(st, r)
		case m := <-c.inbound:
			c.handleInbound(cl, st, m)
		case <-timer.C:
		}
		// Take whatever else is already waiting, so acks are flushed to the
		// source in one call rather than one per reply.
		for i := 0; i < 256; i++ {
			select {
			case r := <-pubDone:
				c.published(st, r)
				continue
			case m := <-c.inbound:
				c.handleInbound(cl, st, m)
				continue
			default:
			}
			break
		}
	}
}

// drainInflight is the graceful part of a stop: nothing new is sent, but
// for up to ShutdownGrace the answers to messages already in flight are
// still taken, so their readings are acknowledged now instead of being
// sent (and delivered) a second time after the restart.
func (c *Client) drainInflight(cl mqtt.Client, st *sendState, lost chan error, pubDone chan pubResult) {
	if len(st.pending) == 0 || c.o.ShutdownGrace < 0 {
		return
	}
	grace := time.NewTimer(c.o.ShutdownGrace)
	defer grace.Stop()
	beat := time.NewTicker(min(c.o.BeatEvery, c.o.ShutdownGrace))
	defer beat.Stop()
	for len(st.pending) > 0 {
		select {
		case <-grace.C:
			return
		case <-lost:
			return
		case r := <-pubDone:
			c.published(st, r)
		case m := <-c.inbound:
			c.handleInbound(cl, st, m)
		case <-beat.C:
			c.beat()
		}
		c.flushAcks(st)
	}
}

func (c *Client) nextWake(st *sendState, now time.Time) time.Duration {
	d := c.o.BeatEvery // the watchdog beat
	at := func(t time.Time) {
		if w := t.Sub(now); w < d {
			d = w
		}
	}
	if st.pauseUntil.After(now) {
		at(st.pauseUntil)
	} else if c.lim != nil && len(st.pending) < int(st.window) {
		// Out of tokens with room in the window: wake when one is back
		// (at most once, as waking does not spend it).
		if tk := c.lim.TokensAt(now); tk < 1 {
			at(now.Add(time.Duration((1 - tk) / float64(c.lim.Limit()) * float64(time.Second))))
		}
	}
	if st.backHold.After(now) && len(st.pending) < int(st.window) {
		at(st.backHold)
	}
	for _, m := range st.pending {
		at(m.deadline)
	}
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return d
}

func (c *Client) tokenReady(now time.Time) bool {
	return c.lim == nil || c.lim.TokensAt(now) >= 1
}

func (c *Client) takeToken(now time.Time) bool {
	return c.lim == nil || c.lim.AllowN(now, 1)
}

// fill publishes as much as the window, the retry pause and the token
// bucket allow: live readings first, then the backlog, oldest first.
func (c *Client) fill(ctx context.Context, cl mqtt.Client, st *sendState, now time.Time, wg *sync.WaitGroup, pubDone chan pubResult) {
	for len(st.pending) < int(st.window) && !now.Before(st.pauseUntil) && c.tokenReady(now) {
		m := c.nextMessage(st, now)
		if m == nil {
			return
		}
		if !c.takeToken(now) {
			// Lost the token to the downlink worker: keep the message first
			// in line.
			st.live = append([]*outMsg{m}, st.live...)
			return
		}
		c.publish(ctx, cl, st, m, now, wg, pubDone)
	}
}

func (c *Client) publish(ctx context.Context, cl mqtt.Client, st *sendState, m *outMsg, now time.Time, wg *sync.WaitGroup, pubDone chan pubResult) {
	m.deadline = now.Add(c.o.ReplyTimeout)
	st.pending[m.key] = m
	tok := cl.Publish(m.topic, 1, false, m.payload)
	c.stats.update(func(s *Stats) {
		s.Sent++
		s.SentReadings += uint64(len(m.ids))
		if s.SentByKind == nil {
			s.SentByKind = map[string]uint64{}
		}
		s.SentByKind[m.kind.String()]++
	})
	wg.Go(func() {
		select {
		case <-tok.Done():
			select {
			case pubDone <- pubResult{m, tok.Error()}:
			case <-ctx.Done():
			}
		case <-ctx.Done():
		}
	})
}

// published handles a PUBACK (or a failed publish).
func (c *Client) published(st *sendState, r pubResult) {
	if st.pending[r.m.key] != r.m {
		return // already answered, timed out or released
	}
	if r.err != nil {
		delete(st.pending, r.m.key)
		c.src.Release(r.m.ids)
		st.backHold = time.Time{}
		c.stats.update(func(s *Stats) { s.Retried += uint64(len(r.m.ids)); s.LastErr = r.err.Error() })
		c.pause(st, c.o.Now())
		return
	}
	if r.m.kind == kindMQTT {
		delete(st.pending, r.m.key)
		c.acked(st, r.m)
	}
}

func (c *Client) acked(st *sendState, m *outMsg) {
	st.acks = append(st.acks, m.ids...)
	st.fails = 0
	st.window = min(st.window+0.25, float64(c.o.MaxInflight))
	if c.lim != nil && float64(c.lim.Limit()) < c.o.MaxMessagesPerSecond {
		// Additive increase back towards the configured rate after a 429.
		l := min(float64(c.lim.Limit())+c.o.MaxMessagesPerSecond/50, c.o.MaxMessagesPerSecond)
		c.lim.SetLimit(rateLimit(l))
		c.lim.SetBurst(int(math.Ceil(l)))
	}
	now := c.o.Now()
	c.stats.update(func(s *Stats) { s.Acked += uint64(len(m.ids)); s.LastAck = now })
}

func (c *Client) flushAcks(st *sendState) {
	if len(st.acks) == 0 {
		return
	}
	ids := st.acks
	st.acks = nil
	if err := c.src.Ack(ids); err != nil {
		// The far end has them; releasing may duplicate but never loses.
		c.src.Release(ids)
		c.stats.update(func(s *Stats) { s.LastErr = err.Error() })
		if ok, n := c.gate.allow("ack", c.o.Now()); ok {
			c.log.Error("acknowledge readings in the buffer", "err", err, "readings", len(ids), "suppressed", n)
		}
	}
}

// pause stops sending for a while after a retryable failure; repeated
// failures (not each reply of a burst) double the pause up to BackoffMax.
func (c *Client) pause(st *sendState, now time.Time) {
	if now.Before(st.pauseUntil) {
		return
	}
	st.fails++
	d := c.o.BackoffMax
	if st.fails < 30 {
		if v := c.o.BackoffMin << (st.fails - 1); v > 0 && v < d {
			d = v
		}
	}
	d = d/2 + randN(d/2+1)
	st.pauseUntil = now.Add(d)
}

func (c *Client) expire(st *sendState, now time.Time) {
	for k, m := range st.pending {
		if now.Before(m.deadline) {
			continue
		}
		delete(st.pending, k)
		c.src.Release(m.ids)
		st.backHold = time.Time{}
		c.stats.update(func(s *Stats) { s.Timeouts++; s.Retried += uint64(len(m.ids)) })
		if ok, n := c.gate.allow("timeout", now); ok {
			c.log.Warn("no reply in time; readings will be sent again", "kind", m.kind.String(), "id", m.key, "readings", len(m.ids), "timeout", c.o.ReplyTimeout, "suppressed", n)
		}
		c.pause(st, now)
	}
}

func (c *Client) handleReply(st *sendState, r Reply) {
	m := st.pending[r.ID]
	if m == nil || m.kind == kindMQTT {
		c.log.Debug("reply for no message in flight (late or duplicate)", "id", r.ID, "code", r.Code)
		return
	}
	delete(st.pending, r.ID)
	now := c.o.Now()
	switch classifyCode(r.Code) {
	case actAck:
		c.acked(st, m)
	case actDeadLetter:
		if len(m.rs) > 1 && m.kind != kindMQTT {
			// The platform refuses the message, not a reading: halve it and
			// send the halves, so only the readings that cause the refusal
			// end up dead-lettered (bisection: log2(200) rounds at most).
			h := len(m.rs) / 2
			halves := append(c.pack(m.kind, m.rs[:h]), c.pack(m.kind, m.rs[h:])...)
			st.split = append(halves, st.split...)
			c.log.Debug("message refused; splitting it to find the readings", "code", r.Code, "id", r.ID, "readings", len(m.rs))
			return
		}
		reason := fmt.Sprintf("platform refused %s message %s: code %d %s", m.kind, r.ID, r.Code, r.Message)
		if err := c.src.DeadLetter(m.ids, reason); err != nil {
			c.src.Release(m.ids)
			c.log.Error("dead-letter readings", "err", err, "readings", len(m.ids))
			return
		}
		c.stats.update(func(s *Stats) { s.DeadLettered += uint64(len(m.ids)) })
		c.log.Warn("readings dead-lettered: the platform will never accept them", "code", r.Code, "message", r.Message, "kind", m.kind.String(), "id", r.ID, "readings", len(m.ids))
	default:
		c.src.Release(m.ids)
		st.backHold = time.Time{}
		c.stats.update(func(s *Stats) {
			s.Retried += uint64(len(m.ids))
			if r.Code == 429 {
				s.Throttled++
			}
			s.LastErr = fmt.Sprintf("platform code %d: %s", r.Code, r.Message)
		})
		if r.Code == 429 && !now.Before(st.pauseUntil) {
			// Multiplicative decrease of rate, burst and window (once per
			// pause, not per reply of a burst): the platform throttles above
			// a rate it does not tell us; find it instead of hammering it.
			st.window = max(1, st.window/2)
			if c.lim != nil {
				l := max(c.lim.Limit()/2, rateLimit(0.5))
				c.lim.SetLimit(l)
				c.lim.SetBurst(max(1, int(l)))
			}
		}
		if ok, n := c.gate.allow(fmt.Sprintf("code-%d", r.Code), now); ok {
			c.log.Warn("platform refused a message for now; will retry", "code", r.Code, "message", r.Message, "kind", m.kind.String(), "suppressed", n)
		}
		c.pause(st, now)
	}
}

// idleBacklogCheck is how often an idle client looks for readings that
// became backlog without a notification (e.g. released after a timeout);
// busyBacklogCheck is the same while messages are in flight.
const (
	idleBacklogCheck = 5 * time.Second
	busyBacklogCheck = 200 * time.Millisecond
)

// nextMessage returns the next message to publish, or nil.
func (c *Client) nextMessage(st *sendState, now time.Time) *outMsg {
	if len(st.live) == 0 && (st.liveDirty || !now.Before(st.liveCheck)) && !now.Before(st.liveHold) {
		st.liveDirty = false
		st.liveCheck = now.Add(time.Second)
		st.live = c.build(st, now, true)
	}
	if len(st.live) > 0 {
		m := st.live[0]
		st.live = st.live[1:]
		return m
	}
	if len(st.split) > 0 {
		m := st.split[0]
		st.split = st.split[1:]
		return m
	}
	if len(st.backlog) == 0 && !now.Before(st.backHold) {
		st.backlog = c.build(st, now, false)
		if len(st.backlog) == 0 {
			// Nothing old: look again in a while; live data has its own
			// path, and an append or a release looks again at once. Every
			// look is a wake-up and a read transaction on an idle board.
			hold := idleBacklogCheck
			if len(st.pending) > 0 {
				// Mid-drain, everything left may just be in flight: look
				// again soon, or a catch-up stalls between windows.
				hold = busyBacklogCheck
			}
			st.backHold = now.Add(hold)
		}
	}
	if len(st.backlog) > 0 {
		m := st.backlog[0]
		st.backlog = st.backlog[1:]
		return m
	}
	return nil
}

// build takes readings from the source and packs them into messages.
func (c *Client) build(st *sendState, now time.Time, live bool) []*outMsg {
	f := reading.Filter{Before: now.Add(-c.o.LiveWindow)}
	if live {
		f = reading.Filter{NewestFirst: true, NotBefore: now.Add(-c.o.LiveWindow)}
	}
	rs, err := c.src.Take(c.o.MaxReadingsPerMsg, f)
	if err != nil {
		if ok, k := c.gate.allow("take", now); ok {
			c.log.Error("take readings from the buffer", "err", err, "suppressed", k)
		}
		hold := now.Add(time.Second)
		st.liveHold, st.backHold = hold, hold
		return nil
	}
	if len(rs) == 0 {
		return nil
	}
	var ok []reading.Reading
	var held, bad []reading.ID
	for i := range rs {
		r := rs[i]
		if c.o.FixTime != nil && !c.o.FixTime(&r) {
			held = append(held, r.ID)
			continue
		}
		if !finite(r.Value) || r.Property == "" {
			bad = append(bad, r.ID)
			continue
		}
		ok = append(ok, r)
	}
	if len(bad) > 0 {
		if err := c.src.DeadLetter(bad, "value is not a finite number or the property name is empty"); err != nil {
			c.src.Release(bad)
		} else {
			c.stats.update(func(s *Stats) { s.DeadLettered += uint64(len(bad)) })
		}
	}
	if len(held) > 0 {
		c.src.Release(held)
		if len(ok) == 0 {
			// The clock is not trustworthy yet: do not spin on the same
			// readings; look again in a second.
			if live {
				st.liveHold = now.Add(time.Second)
			} else {
				st.backHold = now.Add(time.Second)
			}
			if g, k := c.gate.allow("unsynced", now); g {
				c.log.Info("holding readings until their time can be trusted", "readings", len(held), "suppressed", k)
			}
		}
	}
	if len(ok) == 0 {
		return nil
	}
	if c.o.Platform == PlatformMQTT {
		// One message per topic: a reading alone is a JSON object, the
		// readings of one sensor taken together (or a backlog) an array.
		// A message per reading tripled the broker traffic and the CPU
		// per reading on the board.
		return c.packMQTT(ok)
	}
	// By age: older than HistoryAge -> history post (the platform refuses
	// them in a post); live with each property once -> property post;
	// everything else -> batch post.
	var hist, rest []reading.Reading
	for _, r := range ok {
		if now.Sub(r.Time) > c.o.HistoryAge {
			hist = append(hist, r)
		} else {
			rest = append(rest, r)
		}
	}
	var out []*outMsg
	out = append(out, c.pack(kindHistory, hist)...)
	if len(rest) > 0 {
		k := kindBatch
		if live && distinctProps(rest) {
			k = kindPost
		}
		out = append(out, c.pack(k, rest)...)
	}
	return out
}

func distinctProps(rs []reading.Reading) bool {
	seen := make(map[string]bool, len(rs))
	for _, r := range rs {
		if seen[r.Property] {
			return false
		}
		seen[r.Property] = true
	}
	return true
}

// pack encodes readings into Alink messages no larger than MaxMessageBytes.
func (c *Client) pack(k kind, rs []reading.Reading) []*outMsg {
	return c.fitting(rs, func(rs []reading.Reading) *outMsg {
		id := c.newID()
		return &outMsg{
			kind: k, key: id, payload: encodeAlink(k, id, c.o.ProductKey, c.o.DeviceName, rs), ids: reading.IDs(rs), rs: rs,
			topic: sysTopic(c.o.ProductKey, c.o.DeviceName, k.topicSuffix()),
		}
	})
}

// fitting builds one message of rs, halving rs until every message fits
// MaxMessageBytes; a single reading that cannot fit is dead-lettered.
func (c *Client) fitting(rs []reading.Reading, build func([]reading.Reading) *outMsg) []*outMsg {
	if len(rs) == 0 {
		return nil
	}
	m := build(rs)
	if len(m.payload) <= c.o.MaxMessageBytes {
		return []*outMsg{m}
	}
	if len(rs) == 1 {
		reason := fmt.Sprintf("a single reading encodes to %d bytes, over the %d byte message limit", len(m.payload), c.o.MaxMessageBytes)
		if err := c.src.DeadLetter(reading.IDs(rs), reason); err != nil {
			c.src.Release(reading.IDs(rs))
		} else {
			c.stats.update(func(s *Stats) { s.DeadLettered++ })
		}
		return nil
	}
	h := len(rs) / 2
	return append(c.fitting(rs[:h], build), c.fitting(rs[h:], build)...)
}

// packMQTT groups readings by their expanded topic (in order of first
// appearance) into JSON arrays no larger than MaxMessageBytes.
func (c *Client) packMQTT(rs []reading.Reading) []*outMsg {
	var order []string
	groups := map[string][]reading.Reading{}
	for _, r := range rs {
		t := expandTopic(c.o.Topic, c.o.DeviceName, &r)
		if _, ok := groups[t]; !ok {
			order = append(order, t)
		}
		groups[t] = append(groups[t], r)
	}
	var out []*outMsg
	for _, t := range order {
		out = append(out, c.packTopic(t, groups[t])...)
	}
	return out
}

func (c *Client) packTopic(topic string, rs []reading.Reading) []*outMsg {
	return c.fitting(rs, func(rs []reading.Reading) *outMsg {
		return &outMsg{kind: kindMQTT, key: "m" + c.newID(), topic: topic, payload: encodeMQTT(c.o.DeviceName, rs), ids: reading.IDs(rs), rs: rs}
	})
}

// maybeNTP asks the platform for its time: at connect, again every 30s
// until one answer came, then every NTPInterval.
func (c *Client) maybeNTP(cl mqtt.Client, st *sendState, now time.Time) {
	if c.o.OnServerTime == nil || c.o.Platform != PlatformAliyun || now.Before(st.ntpDue) || !c.takeToken(now) {
		return
	}
	if st.ntpSynced {
		st.ntpDue = now.Add(c.o.NTPInterval)
	} else {
		st.ntpDue = now.Add(min(30*time.Second, c.o.NTPInterval))
	}
	p := c.ntp.request(now)
	cl.Publish("/ext/ntp/"+c.o.ProductKey+"/"+c.o.DeviceName+"/request", 0, false, p)
}

func (c *Client) handleInbound(cl mqtt.Client, st *sendState, m inboundMsg) {
	now := c.o.Now()
	pk, dn := c.o.ProductKey, c.o.DeviceName
	switch {
	case c.o.Platform == PlatformAliyun && strings.HasPrefix(m.topic, sysTopic(pk, dn, "thing/event/property/")) && strings.HasSuffix(m.topic, "_reply"):
		r, err := DecodeReply(m.payload)
		if err != nil {
			c.refuse(m.topic, err)
			return
		}
		c.handleReply(st, r)
	case c.o.Platform == PlatformAliyun && m.topic == "/ext/ntp/"+pk+"/"+dn+"/response":
		r, err := DecodeNTPResponse(m.payload)
		if err != nil {
			c.refuse(m.topic, err)
			return
		}
		server, rtt, err := c.ntp.answer(r, now)
		if err != nil {
			c.refuse(m.topic, err)
			return
		}
		st.ntpSynced = true
		st.ntpDue = now.Add(c.o.NTPInterval)
		c.stats.update(func(s *Stats) { s.ServerTimeOffset = server.Sub(now) })
		if c.o.OnServerTime != nil {
			c.o.OnServerTime(server, rtt)
		}
	case c.o.Platform == PlatformAliyun && m.topic == sysTopic(pk, dn, topicPropertySet),
		m.topic == c.o.ControlTopic:
		select {
		case c.jobs <- job{topic: m.topic, payload: m.payload, conn: cl}:
		default:
			c.refuse(m.topic, fmt.Errorf("downlink worker busy"))
		}
	default:
		c.refuse(m.topic, fmt.Errorf("no handler for this topic"))
	}
}

// refuse logs (rate-limited) and counts a downlink message we do not act on.
func (c *Client) refuse(topic string, err error) {
	c.stats.update(func(s *Stats) { s.DownlinkRefused++ })
	if ok, n := c.gate.allow("refuse-"+topic, c.o.Now()); ok {
		c.log.Warn("downlink message refused", "topic", topic, "err", err, "suppressed", n)
	}
}
