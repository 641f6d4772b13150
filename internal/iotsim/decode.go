package iotsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// DecodePost checks an upstream post of kind "post", "batch" or "history"
// the way the platform does and returns its values with the reply code
// (200, or 460 / 6106 with a message). It is fuzzed: device input is
// untrusted even in an emulator.
func DecodePost(b []byte, kind string, dev Device, now time.Time) (Post, int, string) {
	p := Post{ProductKey: dev.ProductKey, DeviceName: dev.DeviceName, Kind: kind}
	var m struct {
		ID     json.RawMessage `json:"id"`
		Params json.RawMessage `json:"params"`
		Method string          `json:"method"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return p, 460, "request parameter error: " + err.Error()
	}
	var id string
	if err := json.Unmarshal(m.ID, &id); err != nil {
		return p, 460, "id must be a numeric string"
	}
	if n, err := strconv.ParseUint(id, 10, 32); err != nil || strconv.FormatUint(n, 10) != id {
		return p, 460, fmt.Sprintf("id %q: want a numeric string 0..4294967295", id)
	}
	p.MsgID = id
	if m.Method != methodFor(kind) {
		return p, 460, fmt.Sprintf("method %q does not match the topic (want %s)", m.Method, methodFor(kind))
	}
	var err error
	switch kind {
	case "post":
		var params map[string]json.RawMessage
		if err = json.Unmarshal(m.Params, &params); err != nil {
			break
		}
		for name, raw := range params {
			var v Value
			if v, err = decodeValue(name, raw, now, true, true); err != nil {
				break
			}
			p.Values = append(p.Values, v)
		}
	case "batch":
		var params struct {
			Properties map[string][]json.RawMessage `json:"properties"`
		}
		if err = json.Unmarshal(m.Params, &params); err != nil {
			break
		}
		for name, list := range params.Properties {
			for _, raw := range list {
				var v Value
				if v, err = decodeValue(name, raw, now, false, true); err != nil {
					break
				}
				p.Values = append(p.Values, v)
			}
			if err != nil {
				break
			}
		}
	case "history":
		var params []struct {
			Identity struct {
				ProductKey string `json:"productKey"`
				DeviceName string `json:"deviceName"`
			} `json:"identity"`
			Properties []map[string]json.RawMessage `json:"properties"`
		}
		if err = json.Unmarshal(m.Params, &params); err != nil {
			break
		}
	hist:
		for _, e := range params {
			if e.Identity.ProductKey != dev.ProductKey || e.Identity.DeviceName != dev.DeviceName {
				return p, 460, "a directly connected device posts only its own history"
			}
			for _, props := range e.Properties {
				for name, raw := range props {
					var v Value
					if v, err = decodeValue(name, raw, now, false, false); err != nil {
						break hist
					}
					p.Values = append(p.Values, v)
				}
			}
		}
	default:
		return p, 6203, "topic parse error"
	}
	if err != nil {
		return p, 460, "request parameter error: " + err.Error()
	}
	if len(p.Values) == 0 {
		return p, 460, "request parameter error: no properties"
	}
	if len(p.Values) > 200 {
		return p, 6106, fmt.Sprintf("%d properties: at most 200 in one message", len(p.Values))
	}
	return p, 200, ""
}

// decodeValue reads {"value":v,"time":ms} (or a bare value in a property
// post, meaning "now"). Values must be JSON numbers written as floats;
// within24h refuses times older than a day (posts and batch posts).
func decodeValue(name string, raw json.RawMessage, now time.Time, post, within24h bool) (Value, error) {
	v := Value{Property: name, Time: now}
	if name == "" || len(name) > 128 {
		return v, fmt.Errorf("property name %q", name)
	}
	raw = bytes.TrimSpace(raw)
	val := raw
	if len(raw) > 0 && raw[0] == '{' {
		var o struct {
			Value json.RawMessage `json:"value"`
			Time  *int64          `json:"time"`
		}
		if err := json.Unmarshal(raw, &o); err != nil {
			return v, fmt.Errorf("property %s: %w", name, err)
		}
		val = bytes.TrimSpace(o.Value)
		if o.Time != nil {
			v.Time = time.UnixMilli(*o.Time)
		} else if !post {
			return v, fmt.Errorf("property %s: no time", name)
		}
	}
	f, err := strconv.ParseFloat(string(val), 64)
	if err != nil {
		return v, fmt.Errorf("property %s: value %q is not a number", name, val)
	}
	if !bytes.ContainsAny(val, ".eE") {
		return v, fmt.Errorf("property %s: float value %s written without a decimal point", name, val)
	}
	v.Value, v.Raw = f, string(val)
	if within24h && now.Sub(v.Time) > 24*time.Hour {
		return v, fmt.Errorf("property %s: time %s is more than 24h old: use a history post", name, v.Time.UTC().Format(time.RFC3339))
	}
	return v, nil
}
