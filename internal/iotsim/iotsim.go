package iotsim

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/time/rate"
)

// Device is one device triple the emulator knows.
type Device struct {
	ProductKey, DeviceName, DeviceSecret string
}

// Options configure the emulator. Zero values are documented per field.
type Options struct {
	// TLSAddr and TCPAddr are listen addresses ("127.0.0.1:0" picks a free
	// port); "" = no such listener. At least one is required.
	TLSAddr, TCPAddr string
	// CertFile and KeyFile are the TLS listener's certificate (required
	// with TLSAddr).
	CertFile, KeyFile string
	Devices           []Device
	// Out receives one human-readable line per accepted property value;
	// nil = none.
	Out    io.Writer
	Logger *slog.Logger // nil = discard
	// MaxPacketBytes: larger posts are dropped without a reply, as the
	// platform does. 0 = 256 KiB.
	MaxPacketBytes int
	// RateLimit is a per-device upstream message rate above which posts are
	// answered with 429 (burst: RateBurst, 0 = one second's worth).
	// 0 = unlimited.
	RateLimit float64
	RateBurst int
	// RateWindow is the most messages a device may publish in any sliding
	// one-second window, counting everything it publishes (posts, NTP
	// requests, downlink replies) as it arrives; posts beyond it are
	// answered with 429. 0 = no window.
	RateWindow int
	// ClockOffset is added to the emulator's clock in NTP answers (to test
	// a device whose clock is wrong).
	ClockOffset time.Duration
}

// Accepted is one property value the emulator accepted (code 200).
type Accepted struct {
	ProductKey, DeviceName string
	Property               string
	Value                  float64
	Raw                    string    // the value's JSON text as sent
	Time                   time.Time // the reading time the message carried
	MsgID                  string
	Kind                   string // "post", "batch" or "history"
	Received               time.Time
}

// Value is one property value of a post, as ReplyFunc sees it.
type Value struct {
	Property string
	Value    float64
	Raw      string
	Time     time.Time
}

// Post is one decoded upstream post.
type Post struct {
	ProductKey, DeviceName string
	Kind                   string
	MsgID                  string
	Values                 []Value
}

// ReplyFunc chooses the reply code for a valid post: return 0 for the
// normal handling (rate limit, then 200), anything else to answer it.
type ReplyFunc func(p Post) (code int, message string)

// Message records every upstream message and what it was answered.
type Message struct {
	DeviceName string
	Topic      string
	Kind       string
	MsgID      string
	Bytes      int
	Values     int // property values it carried (decoded, even if refused)
	Samples    int // distinct (property time) stamps among them: samples, when each sample's values share a time
	Code       int // reply code; -1: dropped without a reply
	Message    string
	Received   time.Time
	QoS        byte // the PUBLISH's QoS
}

// Connect records one CONNECT attempt.
type Connect struct {
	Time     time.Time
	ClientID string
	Username string
	Code     byte // 0 accepted, else the CONNACK return code
	Reason   string
}

// Server is a running emulator.
type Server struct {
	o   Options
	log *slog.Logger
	mq  *mochi.Server
	tls *gateListener
	tcp *gateListener

	work chan work
	wg   sync.WaitGroup
	done chan struct{}

	pubacks atomic.Uint64 // PUBACKs received from devices

	mu       sync.Mutex
	devices  map[string]Device // by "dn&pk"
	limits   map[string]*rate.Limiter
	windows  map[string]*slide // RateWindow per device
	loginSeq map[*mochi.Client]uint64
	logins   uint64
	stats    Counts
	accepted []Accepted
	messages []Message
	connects []Connect
	outage   bool
	replyFn  ReplyFunc
	waiters  map[string]chan []byte // topic -> first message published there by a device
	setID    uint64                 // last property-set id sent
	closed   bool
}

type work struct {
	user    string
	topic   string
	payload []byte
	at      time.Time
	qos     byte
	over    bool // beyond RateWindow when it arrived
}

// Counts are totals over every device since Start.
type Counts struct {
	Publishes  int // everything devices published (posts, NTP requests, replies)
	Posts      int // property, batch and history posts
	Accepted   int // posts answered 200
	Values     int // property values accepted
	Throttled  int // posts answered 429 (RateLimit or RateWindow)
	OverWindow int // publishes beyond RateWindow when they arrived (posts among them got 429)
	// PeakWindow is the most publishes one device made in any sliding
	// one-second window (counted at arrival).
	PeakWindow int
}

// slide counts arrivals in the last second.
type slide struct{ times []time.Time }

// add records an arrival at and returns how many arrived in (at-1s, at].
func (w *slide) add(at time.Time) int {
	i := 0
	for i < len(w.times) && !w.times[i].After(at.Add(-time.Second)) {
		i++
	}
	w.times = append(w.times[i:], at)
	return len(w.times)
}

// Start starts the emulator's listeners.
func Start(o Options) (*Server, error) {
	if o.TLSAddr == "" && o.TCPAddr == "" {
		return nil, errors.New("iotsim: no listener: set TLSAddr and/or TCPAddr")
	}
	if o.MaxPacketBytes == 0 {
		o.MaxPacketBytes = 256 << 10
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "iotsim")
	s := &Server{
		o: o, log: log,
		work:     make(chan work, 4096),
		done:     make(chan struct{}),
		devices:  map[string]Device{},
		limits:   map[string]*rate.Limiter{},
		windows:  map[string]*slide{},
		loginSeq: map[*mochi.Client]uint64{},
		waiters:  map[string]chan []byte{},
	}
	for _, d := range o.Devices {
		if d.ProductKey == "" || d.DeviceName == "" || d.DeviceSecret == "" {
			return nil, fmt.Errorf("iotsim: device %q/%q: product key, device name and secret are required", d.ProductKey, d.DeviceName)
		}
		s.devices[d.DeviceName+"&"+d.ProductKey] = d
	}
	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = 0
	s.mq = mochi.New(&mochi.Options{
		InlineClient: true,
		Logger:       log.With("part", "mochi"),
		Capabilities: caps,
	})
	if err := s.mq.AddHook(&hook{s: s}, nil); err != nil {
		return nil, fmt.Errorf("iotsim: add hook: %w", err)
	}
	if o.TLSAddr != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("iotsim: load server certificate: %w", err)
		}
		l, err := net.Listen("tcp", o.TLSAddr)
		if err != nil {
			return nil, fmt.Errorf("iotsim: listen tls %s: %w", o.TLSAddr, err)
		}
		s.tls = &gateListener{Listener: tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})}
		if err := s.mq.AddListener(listeners.NewNet("tls", s.tls)); err != nil {
			l.Close()
			return nil, fmt.Errorf("iotsim: listen tls %s: %w", o.TLSAddr, err)
		}
	}
	if o.TCPAddr != "" {
		l, err := net.Listen("tcp", o.TCPAddr)
		if err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("iotsim: listen tcp %s: %w", o.TCPAddr, err)
		}
		s.tcp = &gateListener{Listener: l}
		if err := s.mq.AddListener(listeners.NewNet("tcp", s.tcp)); err != nil {
			l.Close()
			s.closeListeners()
			return nil, fmt.Errorf("iotsim: listen tcp %s: %w", o.TCPAddr, err)
		}
	}
	if err := s.mq.Serve(); err != nil {
		s.closeListeners()
		s.mq.Close()
		return nil, fmt.Errorf("iotsim: serve: %w", err)
	}
	s.wg.Go(s.worker)
	return s, nil
}

// TLSAddr is the TLS listener's address ("" without one).
func (s *Server) TLSAddr() string {
	if s.tls == nil {
		return ""
	}
	return s.tls.Addr().String()
}

// TCPAddr is the plain listener's address ("" without one).
func (s *Server) TCPAddr() string {
	if s.tcp == nil {
		return ""
	}
	return s.tcp.Addr().String()
}

// closeListeners stops accepting and lets accepted connections reach mochi
// (see gateListener).
func (s *Server) closeListeners() {
	for _, l := range []*gateListener{s.tls, s.tcp} {
		if l != nil {
			l.Close()
		}
	}
	for _, l := range []*gateListener{s.tls, s.tcp} {
		if l != nil {
			l.settle(time.Second)
		}
	}
}

// Close stops the listeners and the worker.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.closeListeners()
	err := s.mq.Close()
	close(s.done)
	s.wg.Wait()
	return err
}

// Accepted returns every property value accepted so far (a resent reading
// appears again: the platform would store it again too).
func (s *Server) Accepted() []Accepted {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Accepted(nil), s.accepted...)
}

// Messages returns every upstream post and its outcome.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// Connects returns every CONNECT attempt.
func (s *Server) Connects() []Connect {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Connect(nil), s.connects...)
}

// SetReplyFunc installs (or with nil removes) a reply-code override.
func (s *Server) SetReplyFunc(f ReplyFunc) {
	s.mu.Lock()
	s.replyFn = f
	s.mu.Unlock()
}

// SetRateLimit changes the per-device rate limit (0 = unlimited).
func (s *Server) SetRateLimit(perSecond float64, burst int) {
	s.mu.Lock()
	s.o.RateLimit, s.o.RateBurst = perSecond, burst
	s.limits = map[string]*rate.Limiter{}
	s.mu.Unlock()
}

// SetRateWindow changes RateWindow (0 = none) and forgets what arrived.
func (s *Server) SetRateWindow(n int) {
	s.mu.Lock()
	s.o.RateWindow = n
	s.windows = map[string]*slide{}
	s.mu.Unlock()
}

// Counts returns the totals so far.
func (s *Server) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// SetOutage switches an outage on (every device connection is dropped and
// new ones are refused with CONNACK 3, server unavailable) or off.
func (s *Server) SetOutage(on bool) {
	s.mu.Lock()
	s.outage = on
	s.mu.Unlock()
	if !on {
		return
	}
	for _, cl := range s.mq.Clients.GetAll() {
		if !cl.Net.Inline {
			s.mq.DisconnectClient(cl, packets.ErrServerUnavailable)
		}
	}
}

// Connected reports whether a device currently has a connection.
func (s *Server) Connected(productKey, deviceName string) bool {
	for _, cl := range s.mq.Clients.GetAll() {
		if !cl.Net.Inline && string(cl.Properties.Username) == deviceName+"&"+productKey && !cl.Closed() {
			return true
		}
	}
	return false
}

// PubacksReceived counts the PUBACKs devices sent: one per QoS 1 message
// delivered to a QoS 1 subscription (replies go at the subscription's QoS).
func (s *Server) PubacksReceived() uint64 { return s.pubacks.Load() }

// Publish sends a downlink message to whoever subscribed to topic, at QoS 1
// or the subscription's QoS if lower.
func (s *Server) Publish(topic string, payload []byte) error {
	return s.mq.Publish(topic, payload, false, 1)
}

// Request publishes a downlink message and waits for the first message a
// device publishes on replyTopic. One request per reply topic at a time.
func (s *Server) Request(ctx context.Context, topic string, payload []byte, replyTopic string) ([]byte, error) {
	ch := make(chan []byte, 1)
	s.mu.Lock()
	s.waiters[replyTopic] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.waiters[replyTopic] == ch {
			delete(s.waiters, replyTopic)
		}
		s.mu.Unlock()
	}()
	if err := s.Publish(topic, payload); err != nil {
		return nil, fmt.Errorf("iotsim: publish %s: %w", topic, err)
	}
	select {
	case b := <-ch:
		return b, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("iotsim: no answer on %s: %w", replyTopic, ctx.Err())
	}
}

// SetReply is a decoded set_reply.
type SetReply struct {
	ID      string          `json:"id"`
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

// SetProperty sends thing.service.property.set to a device and waits for
// its set_reply.
func (s *Server) SetProperty(ctx context.Context, productKey, deviceName string, params map[string]any) (SetReply, error) {
	s.mu.Lock()
	s.setID++
	id := strconv.FormatUint(s.setID, 10)
	s.mu.Unlock()
	body, err := json.Marshal(map[string]any{"id": id, "version": "1.0", "params": params, "method": "thing.service.property.set"})
	if err != nil {
		return SetReply{}, err
	}
	base := "/sys/" + productKey + "/" + deviceName + "/thing/service/property/set"
	b, err := s.Request(ctx, base, body, base+"_reply")
	if err != nil {
		return SetReply{}, err
	}
	var r SetReply
	if err := json.Unmarshal(b, &r); err != nil {
		return SetReply{}, fmt.Errorf("iotsim: set_reply %q: %w", b, err)
	}
	if r.ID != id {
		return r, fmt.Errorf("iotsim: set_reply id %q, want %q", r.ID, id)
	}
	return r, nil
}

// ---- mochi hook ----

type hook struct {
	mochi.HookBase
	s *Server
}

func (h *hook) ID() string { return "iotsim" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{mochi.OnConnect, mochi.OnConnectAuthenticate, mochi.OnACLCheck, mochi.OnPublish, mochi.OnSessionEstablished, mochi.OnPacketRead}, []byte{b})
}

// OnPacketRead counts the PUBACKs devices send (for the QoS 1 messages the
// emulator publishes to them).
func (h *hook) OnPacketRead(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type == packets.Puback {
		h.s.pubacks.Add(1)
	}
	return pk, nil
}

// OnSessionEstablished enforces one connection per device, as the platform
// does: a second login with the same device kicks the first (two gateways
// sharing an identity flap forever; the emulator shows it). Only earlier
// logins are kicked: mochi may run this hook after the CONNACK, when a
// later login of the same device may already be in.
func (h *hook) OnSessionEstablished(cl *mochi.Client, pk packets.Packet) {
	h.s.mu.Lock()
	mine := h.s.loginSeq[cl]
	seqs := make(map[*mochi.Client]uint64, len(h.s.loginSeq))
	for c, n := range h.s.loginSeq {
		if c.Closed() && c != cl {
			delete(h.s.loginSeq, c)
			continue
		}
		seqs[c] = n
	}
	h.s.mu.Unlock()
	for _, other := range h.s.mq.Clients.GetAll() {
		if other != cl && !other.Net.Inline && !other.Closed() && string(other.Properties.Username) == string(cl.Properties.Username) && seqs[other] < mine {
			h.s.log.Warn("second login of the same device: kicking the first", "username", string(cl.Properties.Username), "kicked", other.ID)
			h.s.mq.DisconnectClient(other, packets.ErrSessionTakenOver)
		}
	}
}

// OnConnect checks the CONNECT the way the platform does. It answers a
// refusal itself because mochi would map "bad user name or password" to the
// MQTT 3.1.1 code 5; the platform sends 4.
func (h *hook) OnConnect(cl *mochi.Client, pk packets.Packet) error {
	s := h.s
	code, reason := s.checkConnect(cl, pk)
	s.mu.Lock()
	s.logins++
	s.loginSeq[cl] = s.logins
	s.connects = append(s.connects, Connect{Time: time.Now(), ClientID: pk.Connect.ClientIdentifier,
		Username: string(pk.Connect.Username), Code: code, Reason: reason})
	s.mu.Unlock()
	who, _, _ := strings.Cut(string(pk.Connect.Username), "&")
	if code == 0 {
		s.log.Info("device connected", "client_id", pk.Connect.ClientIdentifier, "username", string(pk.Connect.Username))
		s.println(fmt.Sprintf("%s %s connected over %s", time.Now().Format("15:04:05"), who, cl.Net.Listener))
		return nil
	}
	s.log.Warn("connect refused", "client_id", pk.Connect.ClientIdentifier, "username", string(pk.Connect.Username), "code", code, "reason", reason)
	s.println(fmt.Sprintf("%s %s login refused: CONNACK %d %s", time.Now().Format("15:04:05"), who, code, reason))
	c := packets.Code{Code: code, Reason: reason}
	_ = s.mq.SendConnack(cl, c, false, nil)
	return fmt.Errorf("iotsim: connect refused (%d): %s", code, reason)
}

func (s *Server) checkConnect(cl *mochi.Client, pk packets.Packet) (byte, string) {
	s.mu.Lock()
	outage := s.outage
	s.mu.Unlock()
	if outage {
		return 3, "server unavailable (outage switched on)"
	}
	if pk.ProtocolVersion != 4 {
		return 1, "MQTT 3.1.1 only"
	}
	id, params, err := parseClientID(pk.Connect.ClientIdentifier)
	if err != nil {
		return 2, err.Error()
	}
	mode := params["securemode"]
	if mode != "2" && mode != "3" {
		return 2, fmt.Sprintf("securemode %q: want 2 (TLS) or 3 (TCP)", mode)
	}
	tlsConn := cl.Net.Listener == "tls"
	if (mode == "2") != tlsConn {
		return 2, fmt.Sprintf("securemode %s does not match the %s listener", mode, cl.Net.Listener)
	}
	if pk.Connect.Keepalive < 30 || pk.Connect.Keepalive > 1200 {
		return 2, fmt.Sprintf("keepalive %ds: the platform allows 30..1200", pk.Connect.Keepalive)
	}
	user := string(pk.Connect.Username)
	s.mu.Lock()
	dev, ok := s.devices[user]
	s.mu.Unlock()
	if !ok {
		return 4, fmt.Sprintf("unknown device %q (username must be deviceName&productKey)", user)
	}
	method := params["signmethod"]
	ts := params["timestamp"]
	got := strings.ToLower(string(pk.Connect.Password))
	// clientId and timestamp are optional in the signed content.
	for _, v := range [][2]string{{id, ts}, {id, ""}, {"", ts}, {"", ""}} {
		want, err := platformSign(method, dev.DeviceSecret, map[string]string{
			"clientId": v[0], "deviceName": dev.DeviceName, "productKey": dev.ProductKey, "timestamp": v[1]})
		if err != nil {
			return 4, err.Error()
		}
		if want == got {
			return 0, ""
		}
	}
	return 4, "bad user name or password (signature does not match the device secret)"
}

func (h *hook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool { return true }

// OnACLCheck lets a device use only its own topics.
func (h *hook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	dn, pk, ok := strings.Cut(string(cl.Properties.Username), "&")
	return ok && strings.Contains(topic, "/"+pk+"/"+dn+"/")
}

func (h *hook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	w := work{user: string(cl.Properties.Username), topic: pk.TopicName, payload: append([]byte(nil), pk.Payload...), at: time.Now(), qos: pk.FixedHeader.Qos}
	h.s.mu.Lock()
	h.s.stats.Publishes++
	if h.s.o.RateWindow > 0 {
		sl := h.s.windows[w.user]
		if sl == nil {
			sl = &slide{}
			h.s.windows[w.user] = sl
		}
		n := sl.add(w.at)
		h.s.stats.PeakWindow = max(h.s.stats.PeakWindow, n)
		if n > h.s.o.RateWindow {
			w.over = true
			h.s.stats.OverWindow++
		}
	}
	h.s.mu.Unlock()
	select {
	case h.s.work <- w:
	case <-h.s.done:
	}
	return pk, nil
}

func (s *Server) worker() {
	for {
		select {
		case <-s.done:
			return
		case w := <-s.work:
			s.handle(w)
		}
	}
}

func (s *Server) handle(w work) {
	s.mu.Lock()
	if ch, ok := s.waiters[w.topic]; ok {
		delete(s.waiters, w.topic)
		ch <- w.payload
	}
	dev, ok := s.devices[w.user]
	s.mu.Unlock()
	if !ok {
		return
	}
	base := "/sys/" + dev.ProductKey + "/" + dev.DeviceName + "/"
	switch w.topic {
	case base + "thing/event/property/post":
		s.handlePost(dev, w, "post")
	case base + "thing/event/property/batch/post":
		s.handlePost(dev, w, "batch")
	case base + "thing/event/property/history/post":
		s.handlePost(dev, w, "history")
	case "/ext/ntp/" + dev.ProductKey + "/" + dev.DeviceName + "/request":
		s.handleNTP(dev, w)
	}
}

func (s *Server) handleNTP(dev Device, w work) {
	var req struct {
		DeviceSendTime json.RawMessage `json:"deviceSendTime"`
	}
	if err := json.Unmarshal(w.payload, &req); err != nil || len(req.DeviceSendTime) == 0 {
		s.log.Warn("bad ntp request", "device", dev.DeviceName, "payload", string(w.payload))
		return
	}
	ds := strings.Trim(string(req.DeviceSendTime), `"`)
	recv := w.at.Add(s.o.ClockOffset).UnixMilli()
	send := time.Now().Add(s.o.ClockOffset).UnixMilli()
	body := fmt.Sprintf(`{"deviceSendTime":"%s","serverRecvTime":"%d","serverSendTime":"%d"}`, ds, recv, send)
	s.Publish("/ext/ntp/"+dev.ProductKey+"/"+dev.DeviceName+"/response", []byte(body))
}

func (s *Server) handlePost(dev Device, w work, kind string) {
	msg := Message{DeviceName: dev.DeviceName, Topic: w.topic, Kind: kind, Bytes: len(w.payload), Received: w.at, QoS: w.qos}
	if len(w.payload) > s.o.MaxPacketBytes {
		msg.Code = -1
		msg.Message = fmt.Sprintf("dropped: %d bytes is over the %d byte limit", len(w.payload), s.o.MaxPacketBytes)
		s.record(msg, nil)
		s.log.Warn("post dropped: too large", "device", dev.DeviceName, "bytes", len(w.payload))
		return
	}
	p, code, text := DecodePost(w.payload, kind, dev, w.at)
	msg.MsgID = p.MsgID
	// Oldest first, then by name: one line per value in a stable order.
	sort.SliceStable(p.Values, func(i, j int) bool {
		a, b := p.Values[i], p.Values[j]
		if !a.Time.Equal(b.Time) {
			return a.Time.Before(b.Time)
		}
		return a.Property < b.Property
	})
	msg.Values = len(p.Values)
	stamps := map[int64]bool{}
	for _, v := range p.Values {
		stamps[v.Time.UnixMilli()] = true
	}
	msg.Samples = len(stamps)
	if code == 200 {
		s.mu.Lock()
		fn := s.replyFn
		s.mu.Unlock()
		if fn != nil {
			if c, m := fn(p); c != 0 {
				code, text = c, m
			}
		}
	}
	if code == 200 && (w.over || !s.allow(dev)) {
		code, text = 429, "request too frequent"
	}
	if code == 200 {
		text = "success"
	}
	msg.Code, msg.Message = code, text
	var acc []Accepted
	if code == 200 {
		for _, v := range p.Values {
			acc = append(acc, Accepted{ProductKey: dev.ProductKey, DeviceName: dev.DeviceName, Property: v.Property,
				Value: v.Value, Raw: v.Raw, Time: v.Time, MsgID: p.MsgID, Kind: kind, Received: w.at})
		}
	}
	s.record(msg, acc)
	if p.MsgID == "" {
		return // nothing to answer to
	}
	reply, _ := json.Marshal(map[string]any{"code": code, "data": map[string]any{}, "id": p.MsgID, "message": text,
		"method": methodFor(kind), "version": "1.0"})
	if err := s.Publish(w.topic+"_reply", reply); err != nil {
		s.log.Warn("publish reply", "err", err)
	}
}

func methodFor(kind string) string {
	switch kind {
	case "batch":
		return "thing.event.property.batch.post"
	case "history":
		return "thing.event.property.history.post"
	}
	return "thing.event.property.post"
}

func (s *Server) allow(dev Device) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.o.RateLimit <= 0 {
		return true
	}
	l := s.limits[dev.DeviceName]
	if l == nil {
		b := s.o.RateBurst
		if b <= 0 {
			b = max(1, int(s.o.RateLimit))
		}
		l = rate.NewLimiter(rate.Limit(s.o.RateLimit), b)
		s.limits[dev.DeviceName] = l
	}
	return l.Allow()
}

// println writes one line to Out, if any.
func (s *Server) println(line string) {
	s.mu.Lock()
	out := s.o.Out
	s.mu.Unlock()
	if out != nil {
		io.WriteString(out, line+"\n")
	}
}

func (s *Server) record(m Message, acc []Accepted) {
	s.mu.Lock()
	s.stats.Posts++
	switch m.Code {
	case 200:
		s.stats.Accepted++
		s.stats.Values += len(acc)
	case 429:
		s.stats.Throttled++
	}
	s.messages = append(s.messages, m)
	s.accepted = append(s.accepted, acc...)
	out := s.o.Out
	s.mu.Unlock()
	if out == nil {
		return
	}
	var b strings.Builder
	for _, a := range acc {
		fmt.Fprintf(&b, "%s %s %s=%s taken=%s id=%s", a.Received.Local().Format("15:04:05"), a.DeviceName, a.Property, a.Raw,
			a.Time.Local().Format("15:04:05.000"), a.MsgID)
		if a.Kind != "post" {
			fmt.Fprintf(&b, " (%s, taken %s)", a.Kind, a.Time.Local().Format("2006-01-02"))
		}
		b.WriteByte('\n')
	}
	if m.Code != 200 {
		fmt.Fprintf(&b, "%s %s %s id=%s refused: code %d %s\n", m.Received.Local().Format("15:04:05"), m.DeviceName, m.Kind, m.MsgID, m.Code, m.Message)
	}
	io.WriteString(out, b.String())
}
