package uplink

import (
	"fmt"
	"strings"
	"time"
)

// platform is everything that differs between the Alibaba Cloud IoT
// Platform (Alink thing model) and a plain MQTT broker: topics, encoding,
// whether a reply or the PUBACK acknowledges, and what a reply code means.
// The send loop holds one and never branches on the platform itself. A
// platform makes no Source call: it only builds messages and classifies.
type platform interface {
	// subscriptions are the topics to subscribe to after connecting,
	// besides the control topic, with their QoS.
	subscriptions() map[string]byte
	// pack turns values taken together (oldest first) into as few messages
	// as the limits allow (MaxValuesPerMsg values, MaxMessageBytes bytes).
	// Values that cannot fit even alone come back as refusals.
	pack(its []item, live bool, now time.Time) ([]*outMsg, []refusal)
	// encode builds one message of kind k: the halves of a refused one.
	encode(k kind, its []item) *outMsg
	// ackedByPuback reports whether the PUBACK acknowledges a message
	// (plain broker) instead of a reply on a reply topic (Alink).
	ackedByPuback() bool
	// qos is the QoS data messages are published at.
	qos() byte
	// sort tells what an inbound message's topic is.
	sort(topic string) inbound
	// classify says what a reply code means for the message's values.
	classify(code int) action
	// ntpRequestTopic returns the topic of the NTP-over-MQTT request; ok is
	// false where the far end has none. The payload comes from the Client's
	// ntpClock, which remembers the request so only its answer counts.
	ntpRequestTopic() (topic string, ok bool)
}

// inbound is what an inbound topic carries.
type inbound int

const (
	inUnknown  inbound = iota
	inReply            // the reply to one of our posts
	inNTP              // an NTP answer
	inDownlink         // a request for the downlink worker (property set)
)

// refusal is values no message can carry, and why.
type refusal struct {
	its    []item
	reason string
}

// fit packs items into messages of at most maxValues values and maxBytes
// bytes: chunks of maxValues, each halved until it encodes small enough. A
// single value that cannot fit is refused.
func fit(its []item, maxValues, maxBytes int, build func([]item) *outMsg) ([]*outMsg, []refusal) {
	var out []*outMsg
	var bad []refusal
	var halve func(its []item)
	halve = func(its []item) {
		m := build(its)
		if len(m.payload) <= maxBytes {
			out = append(out, m)
			return
		}
		if len(its) == 1 {
			bad = append(bad, refusal{its: its, reason: fmt.Sprintf("a single value encodes to %d bytes, over the %d byte message limit", len(m.payload), maxBytes)})
			return
		}
		h := len(its) / 2
		halve(its[:h])
		halve(its[h:])
	}
	for len(its) > 0 {
		n := min(len(its), maxValues)
		halve(its[:n:n])
		its = its[n:]
	}
	return out, bad
}

// ---- Alibaba Cloud IoT Platform (Alink JSON) ----

type alink struct {
	o     *Options
	newID func() string
}

// subscriptions: property sets at QoS 1 (the persistent session keeps
// those sent while the device is offline); replies and NTP answers at QoS
// 0. A reply is worth nothing after its connection: the messages it would
// answer were released when the connection ended and are sent again, so a
// reply the broker keeps for later is ignored anyway. At QoS 0 each reply
// costs no PUBACK: one write (and paho's work for it) less per message.
func (a *alink) subscriptions() map[string]byte {
	pk, dn := a.o.ProductKey, a.o.DeviceName
	subs := map[string]byte{sysTopic(pk, dn, topicPropertySet): 1}
	for _, k := range []kind{kindPost, kindBatch, kindHistory} {
		subs[sysTopic(pk, dn, k.topicSuffix()+"_reply")] = 0
	}
	if a.o.OnServerTime != nil {
		subs[a.ntpTopic("response")] = 0
	}
	return subs
}

func (a *alink) ntpTopic(dir string) string {
	return "/ext/ntp/" + a.o.ProductKey + "/" + a.o.DeviceName + "/" + dir
}

// pack chooses the message kind by age at send time: older than HistoryAge
// -> history post (the platform refuses them in a post); live with each
// property once -> property post; everything else (several sensors sharing
// property names, several rounds, a backlog) -> batch post.
func (a *alink) pack(its []item, live bool, now time.Time) ([]*outMsg, []refusal) {
	old := 0
	for _, it := range its {
		if now.Sub(it.time) > a.o.HistoryAge {
			old++
		}
	}
	hist, rest := []item(nil), its // the usual case, all live or all old, copies nothing
	switch {
	case old == len(its):
		hist, rest = its, nil
	case old > 0:
		hist, rest = make([]item, 0, old), make([]item, 0, len(its)-old)
		for _, it := range its {
			if now.Sub(it.time) > a.o.HistoryAge {
				hist = append(hist, it)
			} else {
				rest = append(rest, it)
			}
		}
	}
	out, bad := a.fit(kindHistory, hist)
	if len(rest) > 0 {
		k := kindBatch
		if live && distinctProps(rest) {
			k = kindPost
		}
		m, b := a.fit(k, rest)
		out, bad = append(out, m...), append(bad, b...)
	}
	return out, bad
}

func (a *alink) fit(k kind, its []item) ([]*outMsg, []refusal) {
	return fit(its, a.o.MaxValuesPerMsg, a.o.MaxMessageBytes, func(its []item) *outMsg { return a.encode(k, its) })
}

func (a *alink) encode(k kind, its []item) *outMsg {
	id := a.newID()
	return &outMsg{
		kind: k, key: id, items: its,
		payload: encodeAlink(k, id, a.o.ProductKey, a.o.DeviceName, its),
		topic:   sysTopic(a.o.ProductKey, a.o.DeviceName, k.topicSuffix()),
	}
}

func (a *alink) ackedByPuback() bool { return false }
func (a *alink) qos() byte           { return byte(a.o.PostQoS) }

func (a *alink) sort(topic string) inbound {
	pk, dn := a.o.ProductKey, a.o.DeviceName
	switch {
	case strings.HasPrefix(topic, sysTopic(pk, dn, "thing/event/property/")) && strings.HasSuffix(topic, "_reply"):
		return inReply
	case topic == a.ntpTopic("response"):
		return inNTP
	case topic == sysTopic(pk, dn, topicPropertySet):
		return inDownlink
	}
	return inUnknown
}

func (a *alink) classify(code int) action { return classifyCode(code) }

func (a *alink) ntpRequestTopic() (string, bool) {
	if a.o.OnServerTime == nil {
		return "", false
	}
	return a.ntpTopic("request"), true
}

// classifyCode decides, per reply code, whether retrying can ever help.
// 460 (bad parameters), 6106 (over 200 properties), 6203 (topic parse error)
// and 26001..26010 (data-parsing script errors) reject the message itself:
// resending it would fail forever, so it is split down to the values that
// cause it, which are dead-lettered. 429 and 500 are transient. Anything
// unknown (including device-level errors such as 6100 device not found or
// 6204 device disabled, which would otherwise dead-letter the whole buffer)
// is retried with backoff.
func classifyCode(code int) action {
	switch {
	case code == 200:
		return actAck
	case code == 460, code == 6106, code == 6203, code >= 26001 && code <= 26010:
		return actDeadLetter
	}
	return actRetry
}

// ---- any MQTT broker ----

type plainMQTT struct {
	o     *Options
	newID func() string
}

func (p *plainMQTT) subscriptions() map[string]byte { return nil }

// pack groups values by their expanded topic (in order of first
// appearance): one message per topic per round, a JSON object for a value
// alone, an array for several.
func (p *plainMQTT) pack(its []item, _ bool, _ time.Time) ([]*outMsg, []refusal) {
	var order []string
	groups := map[string][]item{}
	for _, it := range its {
		t := expandTopic(p.o.Topic, p.o.DeviceName, &it)
		if _, ok := groups[t]; !ok {
			order = append(order, t)
		}
		groups[t] = append(groups[t], it)
	}
	var out []*outMsg
	var bad []refusal
	for _, t := range order {
		m, b := fit(groups[t], p.o.MaxValuesPerMsg, p.o.MaxMessageBytes, func(its []item) *outMsg { return p.build(t, its) })
		out, bad = append(out, m...), append(bad, b...)
	}
	return out, bad
}

func (p *plainMQTT) build(topic string, its []item) *outMsg {
	return &outMsg{kind: kindMQTT, key: "m" + p.newID(), topic: topic, payload: encodeMQTT(p.o.DeviceName, its), items: its}
}

func (p *plainMQTT) encode(_ kind, its []item) *outMsg {
	return p.build(expandTopic(p.o.Topic, p.o.DeviceName, &its[0]), its)
}

func (p *plainMQTT) ackedByPuback() bool             { return true }
func (p *plainMQTT) qos() byte                       { return 1 }
func (p *plainMQTT) sort(string) inbound             { return inUnknown }
func (p *plainMQTT) classify(int) action             { return actRetry }
func (p *plainMQTT) ntpRequestTopic() (string, bool) { return "", false }
