package uplink

// decodeReplyFast decodes the reply every post draws, in the one shape the
// platform (and iotsim) sends it:
//
//	{"code":200,"data":{},"id":"123","message":"success","method":"...","version":"1.0"}
//
// without encoding/json: a reply per round went through its reflection,
// its validity scan and a dozen allocations, ~5 % of the daemon's CPU at the
// seed's rate (perf, three BME280s at 5 s). It accepts only what it is sure
// DecodeReply's encoding/json path would decode to the same Reply: keys
// spelled exactly and each once, strings of printable ASCII without
// escapes, a code of plain digits, an id of digits (quoted or not), data
// empty or null, nothing after the object. Anything else, including every
// malformed input, makes it decline (ok false), and DecodeReply decodes it
// the general way; FuzzDecodeReplyFast holds the two paths to the same
// answers.
func decodeReplyFast(b []byte) (r Reply, ok bool) {
	p := replyScan{b: b}
	if !p.byte('{') {
		return Reply{}, false
	}
	var seen uint8
	var code, id []byte
	for first := true; ; first = false {
		if p.byte('}') {
			break
		}
		if !first && !p.byte(',') {
			return Reply{}, false
		}
		key, ok := p.str()
		if !ok || !p.byte(':') {
			return Reply{}, false
		}
		var bit uint8
		switch string(key) {
		case "code":
			bit = 1
			code, ok = p.digits()
		case "id":
			bit = 2
			if id, ok = p.str(); !ok {
				id, ok = p.digits()
			}
		case "message":
			bit = 4
			var s []byte
			s, ok = p.str()
			r.Message = string(s)
		case "method":
			bit = 8
			var s []byte
			s, ok = p.str()
			r.Method = string(s)
		case "version":
			bit = 16
			_, ok = p.str()
		case "data":
			bit = 32
			ok = p.lit("null") || (p.byte('{') && p.byte('}'))
		default:
			return Reply{}, false
		}
		if !ok || seen&bit != 0 {
			return Reply{}, false
		}
		seen |= bit
	}
	p.space()
	if p.i != len(b) || code == nil || len(id) == 0 || len(id) > 20 || len(code) > 9 {
		return Reply{}, false
	}
	for _, c := range id {
		if c < '0' || c > '9' {
			return Reply{}, false
		}
	}
	n := 0
	for _, c := range code {
		n = n*10 + int(c-'0')
	}
	r.ID, r.Code = string(id), n
	return r, true
}

// replyScan reads JSON tokens from b at i, skipping whitespace before each.
type replyScan struct {
	b []byte
	i int
}

func (p *replyScan) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// byte consumes c if it is next.
func (p *replyScan) byte(c byte) bool {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// lit consumes the literal s if it is next.
func (p *replyScan) lit(s string) bool {
	p.space()
	if len(p.b)-p.i >= len(s) && string(p.b[p.i:p.i+len(s)]) == s {
		p.i += len(s)
		return true
	}
	return false
}

// str consumes a string of printable ASCII without escapes and returns its
// contents (aliasing b).
func (p *replyScan) str() ([]byte, bool) {
	p.space()
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return nil, false
	}
	for j := p.i + 1; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			s := p.b[p.i+1 : j]
			p.i = j + 1
			return s, true
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return nil, false
		}
	}
	return nil, false
}

// digits consumes a number of plain decimal digits (no sign, fraction or
// exponent; no leading zero unless it is 0 itself) and returns them.
func (p *replyScan) digits() ([]byte, bool) {
	p.space()
	j := p.i
	for j < len(p.b) && p.b[j] >= '0' && p.b[j] <= '9' {
		j++
	}
	if j == p.i || (p.b[p.i] == '0' && j-p.i > 1) {
		return nil, false
	}
	if j < len(p.b) {
		switch p.b[j] {
		case '.', 'e', 'E':
			return nil, false
		}
	}
	d := p.b[p.i:j]
	p.i = j
	return d, true
}
