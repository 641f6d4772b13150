package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// capacityConfig is three BME280s (the field case) at interval,
// with the given [buffer] lines.
func capacityConfig(t *testing.T, interval, bufferLines string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "[device]\nproduct_key = \"pk\"\ndevice_name = \"dn\"\ndevice_secret = \"s\"\n[uplink]\nendpoint = \"127.0.0.1:1\"\n[buffer]\n%s\n", bufferLines)
	for i, bus := range []string{"emulated", "emulated", "emulated:second"} {
		fmt.Fprintf(&b, "[[sensor]]\nname = \"s%d\"\ndriver = \"bme280\"\nbus = %q\naddress = %#x\ninterval = %q\n", i, bus, 0x76+i%2, interval)
	}
	p := filepath.Join(t.TempDir(), "gatewayd.toml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// gatewayd check warns, naming the line, when max_size cannot hold max_age
// of what the configured sensors take at their intervals, and says what
// would; the default 64MiB holds 30 days of three BME280s at 10 s (issue 11).
func TestCheckWarnsWhenMaxSizeCannotHoldMaxAge(t *testing.T) {
	for _, tc := range []struct {
		name, interval, buffer string
		want                   []string // in the warning; none: no warning
	}{
		{name: "defaults, three BME280s at 10s", interval: "10s"},
		{name: "16MiB", interval: "10s", buffer: `max_size = "16MiB"`,
			want: []string{":8: buffer.max_size: 16MiB holds about 9", "777600 samples in max_age 30d", "the oldest samples are dropped"}},
		{name: "every second", interval: "1s",
			want: []string{":7: buffer.max_size: 64MiB holds about 3", "7776000 samples in max_age 30d"}},
		{name: "every second, a day", interval: "1s", buffer: `max_age = "1d"`},
		{name: "drop-newest", interval: "1s", buffer: `when_full = "drop-newest"`, want: []string{"new samples are dropped"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if err := Run(context.Background(), []string{"check", "-q", "--config", capacityConfig(t, tc.interval, tc.buffer)}, &out, &errb); err != nil {
				t.Fatalf("check: %v\n%s", err, errb.String())
			}
			got := errb.String()
			if len(tc.want) == 0 && got != "" {
				t.Errorf("unexpected warning: %s", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("warning %q lacks %q", got, w)
				}
			}
			if len(tc.want) == 0 {
				return
			}
			// Either remedy it names makes the warning go away, and
			// neither is more than needed: a tenth less warns again.
			m := regexp.MustCompile(`set max_size to at least (\d+)MiB, or max_age to (\d+)d\n$`).FindStringSubmatch(got)
			if m == nil {
				t.Fatalf("no remedy in %q", got)
			}
			size, _ := strconv.Atoi(m[1])
			age, _ := strconv.Atoi(m[2])
			other := regexp.MustCompile(`max_size = "\w+"`).ReplaceAllString(tc.buffer, "")
			for _, fix := range []struct {
				lines string
				warn  bool
			}{
				{fmt.Sprintf("max_size = \"%dMiB\"\n%s", size, other), false},
				{fmt.Sprintf("max_size = \"%dMiB\"\n%s", size*9/10, other), true},
				{fmt.Sprintf("%s\nmax_age = \"%dd\"", tc.buffer, age), false},
				{fmt.Sprintf("%s\nmax_age = \"%dd\"", tc.buffer, age*12/10+1), true},
			} {
				errb.Reset()
				if err := Run(context.Background(), []string{"check", "-q", "--config", capacityConfig(t, tc.interval, fix.lines)}, &out, &errb); err != nil {
					t.Fatalf("check with %q: %v", fix.lines, err)
				}
				if warned := errb.Len() > 0; warned != fix.warn {
					t.Errorf("with %q: warned %v, want %v: %s", fix.lines, warned, fix.warn, errb.String())
				}
			}
		})
	}
}
