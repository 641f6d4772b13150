package config

import (
	"regexp"
	"testing"
)

// The hand-written matchers do what the regexps they replaced did.
func TestParseErrorMatchersAsRegexps(t *testing.T) {
	lastKeyRe := regexp.MustCompile(`^line (\d+) \(last key "([^"]*)"\): `)
	quotedRe := regexp.MustCompile(`"[^"]*"|'[^']*'`)
	for _, msg := range []string{
		`line 12 (last key "device.device_secret"): expected value but found "hunter2" instead`,
		`line 3 (last key ""): bare keys cannot contain '!'`,
		`line 7 (last key "a.b"): x`,
		`line x (last key "a"): y`,
		`line 4 (last key "a)`,
		`line 4 (last key "a"):y`,
		`toml: line 4 (last key "a"): y`,
		`no quotes here`,
		`an "unclosed quote`,
		`mixed 'a "b' and "c 'd" then 'e`,
		`""''`,
		``,
	} {
		var wantLine int
		var wantKey, wantRest string
		wantOK := false
		if m := lastKeyRe.FindStringSubmatch(msg); m != nil {
			wantOK = true
			for _, c := range m[1] {
				wantLine = wantLine*10 + int(c-'0')
			}
			wantKey, wantRest = m[2], msg[len(m[0]):]
		}
		line, key, rest, ok := cutLastKey(msg)
		if ok != wantOK || line != wantLine || key != wantKey || rest != wantRest {
			t.Errorf("cutLastKey(%q) = %d %q %q %v, want %d %q %q %v", msg, line, key, rest, ok, wantLine, wantKey, wantRest, wantOK)
		}
		if msg == "" || msg[0] != 'e' {
			if got, want := redactValues(msg), quotedRe.ReplaceAllString(msg, "(text not shown)"); got != want {
				t.Errorf("redactValues(%q) = %q, want %q", msg, got, want)
			}
		}
	}
}
