package uplink

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"gatewayd/internal/reading"
	"gatewayd/internal/tick"
)

// outMsg is one message on its way: published and awaiting its reply (or
// PUBACK on a plain broker). Its samples are in flight in the source until
// every message carrying their values is acknowledged, dead-lettered or
// released.
type outMsg struct {
	kind     kind
	key      string // Alink id, or "m"+id on a plain broker
	topic    string
	payload  []byte
	items    []item // the values it carries, kept to ack exactly and to split a refused message
	deadline time.Time
	old      bool // from the backlog or a split, not live
}

type pubResult struct {
	m   *outMsg
	err error
}

// heldSample is the send loop's record of a sample it took from the
// source. A sample is released as a whole (Source.Release takes IDs), so it
// is released only once no queued or pending message carries any of its
// values: releasing it earlier would hand out values that are still on
// their way.
type heldSample struct {
	values  int  // values it had when taken
	msgs    int  // messages (queued or pending) carrying some of them
	acked   bool // some of its values were acknowledged
	release bool // a message carrying it failed: release it when msgs is 0
}

// sendState is owned by the send loop goroutine alone.
type sendState struct {
	held       map[reading.ID]*heldSample
	pending    map[string]*outMsg
	live       []*outMsg // built from live samples, not yet published
	backlog    []*outMsg // built from backlog samples, not yet published
	split      []*outMsg // halves of refused messages, to find the refused values
	release    []reading.ID
	liveDue    time.Time // take live samples then (zero: nothing announced)
	liveHold   time.Time // no live Take before (time not trustworthy yet)
	backHold   time.Time // no backlog Take before (empty, or untrustworthy times)
	pauseUntil time.Time // retry backoff after 429/500/timeouts
	fails      int       // consecutive retryable failures
	window     float64   // congestion window (messages in flight), AIMD on 429
	ntpDue     time.Time
	ntpSynced  bool
	pingSent   time.Time // a PINGREQ awaits an answer (zero: none)
}

// action is what a platform reply code means for the values of a message.
type action int

const (
	actAck action = iota
	actRetry
	actDeadLetter
)

func (c *Client) serve(ctx context.Context, cl mqtt.Client, lost chan error) (err error) {
	// Publishes outlive ctx by the shutdown grace, so the answers to what is
	// already in flight can still arrive (see drainInflight).
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	pubDone := make(chan pubResult, c.o.MaxInflight)
	st := &sendState{held: map[reading.ID]*heldSample{}, pending: map[string]*outMsg{}, window: float64(c.o.MaxInflight)}
	st.liveDue = c.o.Now() // whatever is live already
	defer func() {
		cancel()
		wg.Wait()
		// In flight when the connection ended: send again later. The far
		// end may have seen some of them (the only source of duplicates).
		n := 0
		for id, h := range st.held {
			st.release = append(st.release, id)
			n += h.values
		}
		st.held = nil
		c.flushRelease(st)
		if n > 0 {
			c.stats.update(func(s *Stats) { s.Retried += uint64(n) })
		}
	}()
	notify := c.src.Notify()
	// A Wake, not a time.Timer: while idle it is pending between every
	// two rounds, and a runtime timer would wake sysmon too (tick.Wake).
	timer := tick.NewWake(time.Hour)
	defer timer.Stop()
	for {
		c.beat()
		now := c.o.Now()
		c.expire(st, now)
		c.keepalive(st)
		c.sendRoundEarly(st, now)
		c.fill(sctx, cl, st, now, &wg, pubDone)
		c.maybeNTP(cl, st, now)
		c.flushRelease(st)
		c.stats.update(func(s *Stats) { s.Inflight = len(st.pending) })
		timer.Reset(c.nextWake(st, c.o.Now()))
		select {
		case <-ctx.Done():
			c.drainInflight(cl, st, lost, pubDone)
			return nil
		case err := <-lost:
			return err
		case <-notify:
			// Mostly live samples: they wait up to MaxDelay for the others
			// of their round. A restarted buffer or re-dated samples may
			// add backlog too: look at it at once.
			if st.liveDue.IsZero() {
				st.liveDue = c.o.Now().Add(c.o.MaxDelay)
			}
			st.backHold = time.Time{}
			// The first sample of a round wakes this loop before the
			// other sensors of the round have appended (the scheduler
			// runs a goroutine readied by a channel send next). Let them
			// run first, so their Quiet comes before this loop blocks
			// again. Blocking with the max_delay timer armed and then
			// moving it later leaves the runtime a stale timer that
			// wakes the process once for nothing (strace: an
			// epoll_pwait of ~1 s after every round's post).
			runtime.Gosched()
		case r := <-pubDone:
			c.published(st, r)
		case m := <-c.inbound:
			c.handleInbound(cl, st, m)
		case <-c.quiet: // looked at by sendRoundEarly
		case <-timer.C:
		}
		// Take whatever else is already waiting before the next round.
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
// still taken, so their values are acknowledged now instead of being sent
// (and delivered) a second time after the restart.
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
		c.flushRelease(st)
	}
}

// keepalive is MQTT's: a PINGREQ once nothing went either way for half the
// keepalive, and the connection closed (paho then reports it lost, and Run
// reconnects) when nothing at all comes back within the ping timeout. It
// runs on the send loop's wake-ups, which come at least every BeatEvery on
// the clock's ticks, so on a board that posts or samples more often than
// that it never wakes the board on its own.
func (c *Client) keepalive(st *sendState) {
	g := c.gconn.Load()
	if g == nil || g.ka == 0 {
		return
	}
	now := time.Now()
	read := time.Unix(0, g.lastRead.Load())
	if !st.pingSent.IsZero() {
		switch {
		case read.After(st.pingSent):
			st.pingSent = time.Time{} // the far end is there
		case now.Sub(st.pingSent) >= c.pingTimeout():
			st.pingSent = time.Time{}
			if ok, n := c.gate.allow("ping", c.o.Now()); ok {
				c.log.Warn("no answer to a keepalive ping; reconnecting", "timeout", c.pingTimeout(), "server", c.serverDesc(), "suppressed", n)
			}
			g.kill(fmt.Errorf("%w (%v)", ErrPingTimeout, c.pingTimeout()))
			return
		default:
			return
		}
	}
	if now.Sub(g.quietSince()) >= c.o.Keepalive/2 && g.ping() == nil {
		st.pingSent = now
	}
}

// pingTimeout is how long a PINGREQ may go unanswered.
func (c *Client) pingTimeout() time.Duration { return min(c.o.Keepalive, 10*time.Second) }

// pingWake is how long until keepalive must run, or false when the send
// loop's beat on the clock's ticks comes soon enough: a ping is due at half
// the keepalive and must go before three quarters of it (the broker drops
// a client silent for 1.5 keepalives).
func (c *Client) pingWake(st *sendState) (time.Duration, bool) {
	g := c.gconn.Load()
	if g == nil || g.ka == 0 {
		return 0, false
	}
	if !st.pingSent.IsZero() {
		return time.Until(st.pingSent.Add(c.pingTimeout())), true
	}
	if c.o.Keepalive/4 >= c.o.BeatEvery {
		return 0, false
	}
	return time.Until(g.quietSince().Add(c.o.Keepalive / 2)), true
}

// sendRoundEarly makes live samples due now when the sensors promised
// (Quiet) that nothing new comes before they would be due anyway: waiting
// could not add a sample to their message.
func (c *Client) sendRoundEarly(st *sendState, now time.Time) {
	if st.liveDue.IsZero() || !now.Before(st.liveDue) {
		return
	}
	if q := time.Unix(0, c.quietAt.Load()); q.After(now) && !q.Before(st.liveDue) {
		st.liveDue = now
	}
}

func (c *Client) nextWake(st *sendState, now time.Time) time.Duration {
	// The watchdog beat, on the ticks of the clock the sampling rounds use
	// (see package tick): no wake-up of its own on a board sampling at a
	// multiple of it.
	d := tick.Until(time.Now(), c.o.BeatEvery)
	at := func(t time.Time) {
		if w := t.Sub(now); w < d {
			d = w
		}
	}
	if st.pauseUntil.After(now) {
		at(st.pauseUntil)
	} else if len(st.pending) < int(st.window) {
		// The rate limiter runs on the monotonic clock. Never wake before
		// the window has a slot: a due Take that cannot send would spin.
		rn := time.Now()
		slot := c.win.readyAt(rn, 0).Sub(rn)
		wake := func(w time.Duration) { d = min(d, max(w, slot)) }
		if slot > 0 && (len(st.live)+len(st.split)+len(st.backlog) > 0 || !now.Before(st.backHold)) {
			// Queued messages may go then. Nothing queued: no wake-up for
			// the slot (after each post it opens 1.25 s/N later, a wake-up
			// for nothing on an idle board); a due Take or backlog look
			// below waits for it through wake's max.
			wake(slot)
		}
		if !st.liveDue.IsZero() {
			wake(max(st.liveDue.Sub(now), st.liveHold.Sub(now)))
		}
		if len(st.live) == 0 && len(st.split)+len(st.backlog) > 0 {
			wake(c.win.readyAt(rn, backlogReserve).Sub(rn))
		}
		if st.backHold.After(now) {
			wake(st.backHold.Sub(now))
		}
	}
	for _, m := range st.pending {
		at(m.deadline)
	}
	if w, ok := c.pingWake(st); ok && w < d {
		d = w
	}
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return d
}

// backlogReserve is how many slots of the rate window the backlog (and
// the halves of refused messages) leave to live messages: a live message
// never waits a whole window behind a catch-up.
const backlogReserve = 1

// fill publishes as much as the in-flight window, the retry pause and the
// rate limit allow: live samples first, then halves of refused messages,
// then the backlog, oldest first.
func (c *Client) fill(ctx context.Context, cl mqtt.Client, st *sendState, now time.Time, wg *sync.WaitGroup, pubDone chan pubResult) {
	for i := 0; i < 1024 && len(st.pending) < int(st.window) && !now.Before(st.pauseUntil); i++ {
		if rn := time.Now(); c.win.readyAt(rn, 0).After(rn) {
			// The rate window is full; nextWake wakes us when it has
			// room, if anything is queued. A live Take or a backlog look
			// that is due happens now (taking needs no slot, only
			// publishing does), so that an idle board (a post just went
			// out; a late notification of the same round, nothing old)
			// needs no wake-up at the next slot only to find nothing.
			c.takeLive(st, now)
			if len(st.split)+len(st.backlog) == 0 && !now.Before(st.backHold) {
				c.lookBacklog(st, now)
			}
			return
		}
		q := c.nextQueue(st, now)
		if q == nil {
			return
		}
		reserve := backlogReserve
		if q == &st.live {
			reserve = 0
		}
		if !c.win.take(time.Now(), reserve) {
			return // the message stays first in line; nextWake wakes us when it may go
		}
		m := (*q)[0]
		*q = (*q)[1:]
		m.old = q != &st.live
		c.publish(ctx, cl, st, m, now, wg, pubDone)
	}
}

func (c *Client) publish(ctx context.Context, cl mqtt.Client, st *sendState, m *outMsg, now time.Time, wg *sync.WaitGroup, pubDone chan pubResult) {
	m.deadline = now.Add(c.o.ReplyTimeout)
	st.pending[m.key] = m
	tok := cl.Publish(m.topic, c.p.qos(), false, m.payload)
	samples := countSamples(m.items)
	c.stats.update(func(s *Stats) {
		s.Sent++
		s.SentValues += uint64(len(m.items))
		s.SentSamples += uint64(samples)
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

// countSamples counts the distinct samples among items (items of one
// sample are adjacent).
func countSamples(its []item) int {
	n := 0
	for i := range its {
		if i == 0 || its[i].id != its[i-1].id {
			n++
		}
	}
	return n
}

// track notes that m carries values of its samples.
func (st *sendState) track(m *outMsg) {
	for i := range m.items {
		if i > 0 && m.items[i].id == m.items[i-1].id {
			continue
		}
		if h := st.held[m.items[i].id]; h != nil {
			h.msgs++
		}
	}
}

// finish notes that m is done with (acked, dead-lettered, split, or failed:
// then its samples are released once no other message carries them).
func (c *Client) finish(st *sendState, m *outMsg, failed bool) {
	for i := range m.items {
		if i > 0 && m.items[i].id == m.items[i-1].id {
			continue
		}
		id := m.items[i].id
		h := st.held[id]
		if h == nil {
			continue
		}
		h.msgs--
		h.release = h.release || failed
		if h.msgs <= 0 {
			c.settle(st, id, h)
		}
	}
}

// settle forgets a sample no message carries any more: released when a
// message failed (its remaining values are sent again), otherwise gone
// from the source (every value acked or dead-lettered).
func (c *Client) settle(st *sendState, id reading.ID, h *heldSample) {
	delete(st.held, id)
	if h.release {
		st.release = append(st.release, id)
		return
	}
	if h.acked {
		c.stats.update(func(s *Stats) { s.AckedSamples++ })
	}
}

func (c *Client) flushRelease(st *sendState) {
	if len(st.release) == 0 {
		return
	}
	c.src.Release(st.release)
	st.release = nil
}

// refs addresses m's values: a whole-sample Ref where m carries every value
// the sample had when taken, one Ref per value otherwise.
func (st *sendState) refs(m *outMsg) []reading.Ref {
	refs := make([]reading.Ref, 0, len(m.items))
	for i := 0; i < len(m.items); {
		j := i + 1
		for j < len(m.items) && m.items[j].id == m.items[i].id {
			j++
		}
		if h := st.held[m.items[i].id]; h != nil && h.values == j-i {
			refs = append(refs, reading.Ref{ID: m.items[i].id})
		} else {
			for k := i; k < j; k++ {
				refs = append(refs, m.items[k].ref())
			}
		}
		i = j
	}
	return refs
}

// published handles a PUBACK (or a failed publish).
func (c *Client) published(st *sendState, r pubResult) {
	if st.pending[r.m.key] != r.m {
		return // already answered, timed out or released
	}
	if r.err != nil {
		delete(st.pending, r.m.key)
		c.retry(st, r.m)
		c.stats.update(func(s *Stats) { s.LastErr = r.err.Error() })
		c.pause(st, c.o.Now())
		return
	}
	if c.p.ackedByPuback() {
		delete(st.pending, r.m.key)
		c.ack(st, r.m)
	}
}

// ack tells the source that m's values arrived: one Ack call per
// acknowledged message, so the buffer can count messages per reading.
func (c *Client) ack(st *sendState, m *outMsg) {
	if err := c.src.Ack(st.refs(m)); err != nil {
		// The far end has them; releasing may duplicate but never loses.
		c.finish(st, m, true)
		c.stats.update(func(s *Stats) { s.LastErr = err.Error() })
		if ok, n := c.gate.allow("ack", c.o.Now()); ok {
			c.log.Error("acknowledge values in the buffer", "err", err, "values", len(m.items), "suppressed", n)
		}
		return
	}
	for i := range m.items {
		if h := st.held[m.items[i].id]; h != nil {
			h.acked = true
		}
	}
	c.finish(st, m, false)
	st.fails = 0
	st.window = min(st.window+0.25, float64(c.o.MaxInflight))
	c.win.grow() // additive increase back towards the configured rate after a 429
	now := c.o.Now()
	c.stats.update(func(s *Stats) {
		s.AckedMessages++
		s.Acked += uint64(len(m.items))
		s.LastAck = now
	})
}

// retry releases m's samples (once no other message carries them) to be
// sent again.
func (c *Client) retry(st *sendState, m *outMsg) {
	c.finish(st, m, true)
	st.backHold = time.Time{}
	st.liveDue = c.o.Now()
	c.stats.update(func(s *Stats) { s.Retried += uint64(len(m.items)) })
}

// deadLetter sets values aside for good, with the reason. On failure their
// samples are released instead (sent again; never lost).
func (c *Client) deadLetter(st *sendState, its []item, reason string) bool {
	refs := make([]reading.Ref, len(its))
	for i := range its {
		refs[i] = its[i].ref()
	}
	if err := c.src.DeadLetter(refs, reason); err != nil {
		if ok, n := c.gate.allow("dead-letter", c.o.Now()); ok {
			c.log.Error("dead-letter values", "err", err, "values", len(its), "suppressed", n)
		}
		return false
	}
	c.stats.update(func(s *Stats) { s.DeadLettered += uint64(len(its)) })
	return true
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
		c.retry(st, m)
		c.stats.update(func(s *Stats) { s.Timeouts++ })
		if ok, n := c.gate.allow("timeout", now); ok {
			c.log.Warn("no reply in time; values will be sent again", "kind", m.kind.String(), "id", m.key, "values", len(m.items), "timeout", c.o.ReplyTimeout, "suppressed", n)
		}
		c.pause(st, now)
	}
}

func (c *Client) handleReply(st *sendState, r Reply) {
	m := st.pending[r.ID]
	if m == nil || c.p.ackedByPuback() {
		c.log.Debug("reply for no message in flight (late or duplicate)", "id", r.ID, "code", r.Code)
		return
	}
	delete(st.pending, r.ID)
	now := c.o.Now()
	switch c.p.classify(r.Code) {
	case actAck:
		c.ack(st, m)
	case actDeadLetter:
		if len(m.items) > 1 {
			// The platform refuses the message, not a value: halve it and
			// send the halves, so only the values that cause the refusal
			// end up dead-lettered (bisection: log2(200) rounds at most).
			h := len(m.items) / 2
			halves := []*outMsg{c.p.encode(m.kind, m.items[:h:h]), c.p.encode(m.kind, m.items[h:])}
			for _, x := range halves {
				st.track(x)
			}
			c.finish(st, m, false)
			st.split = append(halves, st.split...)
			c.log.Debug("message refused; splitting it to find the values", "code", r.Code, "id", r.ID, "values", len(m.items))
			return
		}
		reason := fmt.Sprintf("platform refused %s message %s: code %d %s", m.kind, r.ID, r.Code, r.Message)
		ok := c.deadLetter(st, m.items, reason)
		c.finish(st, m, !ok)
		if ok {
			c.log.Warn("value dead-lettered: the platform will never accept it", "code", r.Code, "message", r.Message, "kind", m.kind.String(), "id", r.ID,
				"sample", m.items[0].id, "property", m.items[0].v.Property)
		}
	default:
		c.retry(st, m)
		c.stats.update(func(s *Stats) {
			if r.Code == 429 {
				s.Throttled++
			}
			s.LastErr = fmt.Sprintf("platform code %d: %s", r.Code, r.Message)
		})
		if r.Code == 429 && !now.Before(st.pauseUntil) {
			// Multiplicative decrease of rate and window (once per pause,
			// not per reply of a burst): the platform throttles above a
			// rate it does not tell us; find it instead of hammering it.
			st.window = max(1, st.window/2)
			c.win.halve()
		}
		if ok, n := c.gate.allow(fmt.Sprintf("code-%d", r.Code), now); ok {
			c.log.Warn("platform refused a message for now; will retry", "code", r.Code, "message", r.Message, "kind", m.kind.String(), "suppressed", n)
		}
		c.pause(st, now)
	}
}

// idleBacklogCheck is how often an idle client looks for samples that
// became backlog without a notification (e.g. released after a timeout);
// busyBacklogCheck is the same while messages are in flight.
const (
	idleBacklogCheck = 5 * time.Second
	busyBacklogCheck = 200 * time.Millisecond
)

// nextQueue returns the queue whose first message goes next, or nil.
func (c *Client) nextQueue(st *sendState, now time.Time) *[]*outMsg {
	c.takeLive(st, now)
	if len(st.live) > 0 {
		return &st.live
	}
	if len(st.split) > 0 {
		return &st.split
	}
	if len(st.backlog) == 0 && !now.Before(st.backHold) {
		c.lookBacklog(st, now)
	}
	if len(st.backlog) > 0 {
		return &st.backlog
	}
	return nil
}

// takeLive takes the live samples into the live queue when they are due
// and the queue is empty.
func (c *Client) takeLive(st *sendState, now time.Time) {
	if len(st.live) == 0 && !st.liveDue.IsZero() && !now.Before(st.liveDue) && !now.Before(st.liveHold) {
		st.liveDue = time.Time{}
		if full := c.build(st, now, true); full {
			st.liveDue = now // more live samples than one Take: take again
		}
	}
}

// lookBacklog takes backlog samples into the backlog queue. When there are
// none it sets when to look again: in a while (live data has its own path,
// and an append or a release looks again at once; every look is a wake-up
// and a read on an idle board), on the ticks of the clock the sampling
// rounds use (see package tick), or soon while backlog messages are in
// flight.
func (c *Client) lookBacklog(st *sendState, now time.Time) {
	c.build(st, now, false)
	if len(st.backlog) > 0 || now.Before(st.backHold) {
		return
	}
	// At least idleBacklogCheck apart, and on the beat's grid when the
	// beat is slower (the daemon sets it from the sampling intervals): the
	// look then shares the beat's wake-up.
	hold := tick.Until(time.Now(), max(idleBacklogCheck, c.o.BeatEvery))
	for _, m := range st.pending {
		if m.old {
			// Mid-drain, everything left may just be in flight: look
			// again soon, or a catch-up stalls between windows.
			hold = busyBacklogCheck
			break
		}
	}
	st.backHold = now.Add(hold)
}

// build takes samples from the source and packs them into messages on the
// live or backlog queue. It reports whether the Take came back full (more
// may be waiting). Every Source call is made here, in the send loop:
// FixTime and the packer only return verdicts.
func (c *Client) build(st *sendState, now time.Time, live bool) (full bool) {
	f := reading.Filter{Before: now.Add(-c.o.LiveWindow)}
	if live {
		f = reading.Filter{NewestFirst: true, NotBefore: now.Add(-c.o.LiveWindow)}
	}
	ss, err := c.src.Take(c.o.MaxValuesPerMsg, f)
	if err != nil {
		if ok, k := c.gate.allow("take", now); ok {
			c.log.Error("take samples from the buffer", "err", err, "suppressed", k)
		}
		hold := now.Add(time.Second)
		st.liveHold, st.backHold = hold, hold
		if live {
			st.liveDue = hold
		}
		return false
	}
	if len(ss) == 0 {
		return false
	}
	values := reading.CountValues(ss)
	full = values > c.o.MaxValuesPerMsg-len(ss[len(ss)-1].Values)
	if live {
		slices.Reverse(ss) // oldest first in the message
	}
	p := c.prepare(ss)
	if len(p.hold) > 0 {
		c.src.Release(p.hold)
		if len(p.send) == 0 {
			// The clock is not trustworthy yet: do not spin on the same
			// samples; look again in a second.
			if live {
				st.liveHold = now.Add(time.Second)
				st.liveDue = st.liveHold
			} else {
				st.backHold = now.Add(time.Second)
			}
			full = false
			if g, k := c.gate.allow("unsynced", now); g {
				c.log.Info("holding samples until their time can be trusted", "samples", len(p.hold), "suppressed", k)
			}
		}
	}
	for i, s := range p.send {
		st.held[s.ID] = &heldSample{values: p.taken[i]}
	}
	its := itemsOf(p.send)
	msgs, tooBig := c.p.pack(its, live, now)
	for _, m := range msgs {
		st.track(m)
	}
	refused := append(p.refused, tooBig...)
	for _, r := range refused {
		if c.deadLetter(st, r.its, r.reason) {
			continue
		}
		for _, it := range r.its {
			if h := st.held[it.id]; h != nil {
				h.release = true
			} else {
				st.release = append(st.release, it.id)
			}
		}
	}
	for _, s := range p.send {
		if h := st.held[s.ID]; h != nil && h.msgs == 0 {
			c.settle(st, s.ID, h) // every value refused
		}
	}
	if live {
		st.live = append(st.live, msgs...)
	} else {
		st.backlog = append(st.backlog, msgs...)
	}
	return full
}

// prepared is what prepare decided about taken samples; the send loop
// makes the Source calls it implies.
type prepared struct {
	send    []reading.Sample // to pack (values that cannot go are removed)
	taken   []int            // per send: how many values the sample had when taken
	hold    []reading.ID     // time not trustworthy yet: release
	refused []refusal        // never sendable: dead-letter
}

// prepare applies FixTime and checks every value. It calls nothing on the
// Source.
func (c *Client) prepare(ss []reading.Sample) prepared {
	p := prepared{send: make([]reading.Sample, 0, len(ss)), taken: make([]int, 0, len(ss))}
	for i := range ss {
		s := ss[i]
		if len(s.Values) == 0 {
			p.hold = append(p.hold, s.ID) // nothing to send; never keep it in flight
			continue
		}
		if c.o.FixTime != nil {
			switch c.o.FixTime(&s) {
			case TimeHold:
				p.hold = append(p.hold, s.ID)
				continue
			case TimeUnknown:
				p.refused = append(p.refused, refusal{its: itemsOf([]reading.Sample{s}), reason: TimeUnknownReason})
				continue
			}
		}
		var bad []item
		ok := s.Values
		if !allSendable(s.Values) { // the usual case copies nothing
			ok = s.Values[:0:0]
			for _, v := range s.Values {
				if !sendable(v) {
					bad = append(bad, item{id: s.ID, sensor: s.Sensor, time: s.Time, synced: s.Synced, v: v})
					continue
				}
				ok = append(ok, v)
			}
		}
		if len(bad) > 0 {
			p.refused = append(p.refused, refusal{its: bad, reason: "value is not a finite number or the property name is empty"})
			if len(ok) == 0 {
				continue
			}
		}
		p.taken = append(p.taken, len(s.Values))
		s.Values = ok
		p.send = append(p.send, s)
	}
	return p
}

func sendable(v reading.Value) bool { return finite(v.Value) && v.Property != "" }

func allSendable(vs []reading.Value) bool {
	for _, v := range vs {
		if !sendable(v) {
			return false
		}
	}
	return true
}

// maybeNTP asks the platform for its time: at connect, again every 30s
// until one answer came, then every NTPInterval. The request counts
// against the rate limit like every other message.
func (c *Client) maybeNTP(cl mqtt.Client, st *sendState, now time.Time) {
	if now.Before(st.ntpDue) {
		return
	}
	topic, ok := c.p.ntpRequestTopic()
	if !ok || !c.win.take(time.Now(), 0) {
		return
	}
	if st.ntpSynced {
		st.ntpDue = now.Add(c.o.NTPInterval)
	} else {
		st.ntpDue = now.Add(min(30*time.Second, c.o.NTPInterval))
	}
	// Only the answer to this request counts (ntpClock).
	cl.Publish(topic, 0, false, c.ntp.request(now))
	c.stats.update(func(s *Stats) { s.SentOther++ })
}

func (c *Client) handleInbound(cl mqtt.Client, st *sendState, m inboundMsg) {
	now := c.o.Now()
	if m.topic == c.o.ControlTopic {
		c.toWorker(cl, m)
		return
	}
	switch c.p.sort(m.topic) {
	case inReply:
		r, err := DecodeReply(m.payload)
		if err != nil {
			c.refuse(m.topic, err)
			return
		}
		c.handleReply(st, r)
	case inNTP:
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
	case inDownlink:
		c.toWorker(cl, m)
	default:
		c.refuse(m.topic, fmt.Errorf("no handler for this topic"))
	}
}

func (c *Client) toWorker(cl mqtt.Client, m inboundMsg) {
	select {
	case c.jobs <- job{topic: m.topic, payload: m.payload, conn: cl}:
	default:
		c.refuse(m.topic, fmt.Errorf("downlink worker busy"))
	}
}

// refuse logs (rate-limited) and counts a downlink message we do not act on.
func (c *Client) refuse(topic string, err error) {
	c.stats.update(func(s *Stats) { s.DownlinkRefused++ })
	if ok, n := c.gate.allow("refuse-"+topic, c.o.Now()); ok {
		c.log.Warn("downlink message refused", "topic", topic, "err", err, "suppressed", n)
	}
}
