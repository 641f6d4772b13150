package uplink

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"gatewayd/internal/reading"
)

// item is one value of a sample the send loop took from the source, on its
// way in a message. Acks, dead letters and the split of a refused message
// work on items, so they stay exact to the value.
type item struct {
	id     reading.ID
	sensor string
	time   time.Time
	synced bool
	v      reading.Value
}

func (it *item) ref() reading.Ref { return reading.Ref{ID: it.id, Measurement: it.v.Measurement} }

// itemsOf flattens samples into items, oldest sample first.
func itemsOf(ss []reading.Sample) []item {
	out := make([]item, 0, reading.CountValues(ss))
	for i := range ss {
		s := &ss[i]
		for _, v := range s.Values {
			out = append(out, item{id: s.ID, sensor: s.Sensor, time: s.Time, synced: s.Synced, v: v})
		}
	}
	return out
}

// appendNumber writes v at its resolution (reading.Format): no more digits
// than the chip resolves, and always a decimal point, because the platform
// rejects 20 for a float property and wants 20.0.
func appendNumber(b []byte, v reading.Value) []byte {
	if !finite(reading.Round(v.Value, v.Resolution)) {
		// A resolution so fine that rounding overflows: full precision
		// rather than "+Inf", which is not JSON.
		return reading.Format(b, v.Value, 0)
	}
	return reading.Format(b, v.Value, v.Resolution)
}

func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	// Plain ASCII needs no escaping: the common case, and the hot one when
	// a backlog of thousands of values is encoded.
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func appendValue(b []byte, it *item) []byte {
	b = append(b, `{"value":`...)
	b = appendNumber(b, it.v)
	b = append(b, `,"time":`...)
	b = strconv.AppendInt(b, it.time.UnixMilli(), 10)
	return append(b, '}')
}

// encodeAlink renders items as one Alink JSON message of kind k. For
// kindPost every property must appear once (the caller checks).
func encodeAlink(k kind, id, pk, dn string, its []item) []byte {
	b := make([]byte, 0, 96+len(its)*44)
	b = append(b, `{"id":`...)
	b = appendString(b, id)
	b = append(b, `,"version":"1.0","sys":{"ack":1},"params":`...)
	switch k {
	case kindPost:
		b = append(b, '{')
		for i := range its {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, its[i].v.Property)
			b = append(b, ':')
			b = appendValue(b, &its[i])
		}
		b = append(b, '}')
	case kindBatch:
		// Properties in order of first appearance, values in item order
		// (oldest first): several sensors' values of one property share
		// its list.
		var order []string
		groups := map[string][]int{}
		for i := range its {
			p := its[i].v.Property
			if _, ok := groups[p]; !ok {
				order = append(order, p)
			}
			groups[p] = append(groups[p], i)
		}
		b = append(b, `{"properties":{`...)
		for j, p := range order {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendString(b, p)
			b = append(b, ":["...)
			for n, i := range groups[p] {
				if n > 0 {
					b = append(b, ',')
				}
				b = appendValue(b, &its[i])
			}
			b = append(b, ']')
		}
		b = append(b, `},"events":{}}`...)
	case kindHistory:
		// One properties entry per sample: its values share the object.
		b = append(b, `[{"identity":{"productKey":`...)
		b = appendString(b, pk)
		b = append(b, `,"deviceName":`...)
		b = appendString(b, dn)
		b = append(b, `},"properties":[`...)
		var seen map[string]bool
		for i := range its {
			if i == 0 || its[i].id != its[i-1].id || seen[its[i].v.Property] {
				if i > 0 {
					b = append(b, "},"...)
				}
				b = append(b, '{')
				seen = map[string]bool{}
			} else {
				b = append(b, ',')
			}
			seen[its[i].v.Property] = true
			b = appendString(b, its[i].v.Property)
			b = append(b, ':')
			b = appendValue(b, &its[i])
		}
		if len(its) > 0 {
			b = append(b, '}')
		}
		b = append(b, `],"events":[]}]`...)
	}
	b = append(b, `,"method":`...)
	b = appendString(b, k.method())
	return append(b, '}')
}

// encodeMQTTValue renders one value for a plain broker: a self-describing
// JSON object with the time it was taken and its sample's stable id (a
// resend is recognisable; the values of one sample share the id).
func encodeMQTTValue(b []byte, device string, it *item) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, uint64(it.id), 10)
	b = append(b, `,"device":`...)
	b = appendString(b, device)
	b = append(b, `,"sensor":`...)
	b = appendString(b, it.sensor)
	b = append(b, `,"measurement":`...)
	b = appendString(b, it.v.Measurement)
	b = append(b, `,"property":`...)
	b = appendString(b, it.v.Property)
	b = append(b, `,"value":`...)
	b = appendNumber(b, it.v)
	b = append(b, `,"unit":`...)
	b = appendString(b, it.v.Unit)
	b = append(b, `,"time":`...)
	b = appendString(b, it.time.UTC().Format(time.RFC3339Nano))
	b = append(b, `,"time_ms":`...)
	b = strconv.AppendInt(b, it.time.UnixMilli(), 10)
	b = append(b, `,"synced":`...)
	b = strconv.AppendBool(b, it.synced)
	return append(b, '}')
}

// encodeMQTT renders values for a plain broker: one value alone as a JSON
// object, several sharing a topic (a sensor's measurements, the samples of
// one round, a backlog catching up; up to 200) as a JSON array of such
// objects.
func encodeMQTT(device string, its []item) []byte {
	b := make([]byte, 0, 16+len(its)*240)
	if len(its) == 1 {
		return encodeMQTTValue(b, device, &its[0])
	}
	b = append(b, '[')
	for i := range its {
		if i > 0 {
			b = append(b, ',')
		}
		b = encodeMQTTValue(b, device, &its[i])
	}
	return append(b, ']')
}

// expandTopic fills the "mqtt" topic template.
func expandTopic(tmpl, device string, it *item) string {
	if !strings.Contains(tmpl, "{") {
		return tmpl
	}
	clean := func(s string) string {
		// A topic level must not smuggle in wildcards or extra levels.
		return strings.NewReplacer("/", "_", "+", "_", "#", "_").Replace(s)
	}
	return strings.NewReplacer(
		"{device}", clean(device),
		"{sensor}", clean(it.sensor),
		"{property}", clean(it.v.Property),
		"{measurement}", clean(it.v.Measurement),
	).Replace(tmpl)
}

func distinctProps(its []item) bool {
	seen := make(map[string]bool, len(its))
	for i := range its {
		if seen[its[i].v.Property] {
			return false
		}
		seen[its[i].v.Property] = true
	}
	return true
}
