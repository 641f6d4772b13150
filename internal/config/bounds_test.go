package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"gatewayd/sensors"
)

// bound is one key's edges: values at each edge that must be accepted, and
// values just past them that must be refused at the key's own line.
type bound struct{ ok, bad []string }

// bounds is the one table of every key's bounds, as the layers own them
// (uplink.Options.Validate, buffer.Options.Validate, sensors.Check) and the
// config package reports them.
var bounds = map[string]bound{
	"uplink.platform":                {ok: []string{`"aliyun"`}, bad: []string{`"amqp"`}},
	"uplink.endpoint":                {ok: []string{`"h.example:8883"`, `"127.0.0.1:1"`}, bad: []string{`"no-port"`, `"h:port"`}},
	"uplink.tls":                     {ok: []string{"true"}, bad: []string{"false", `"yes"`}}, // false needs allow_plaintext = true
	"uplink.sign_method":             {ok: []string{`"hmacsha256"`, `"hmacsha1"`, `"hmacmd5"`}, bad: []string{`"sha1"`, `"hmacsha512"`}},
	"uplink.keepalive":               {ok: []string{`"30s"`, `"1200s"`}, bad: []string{`"29s"`, `"1201s"`}},
	"uplink.max_messages_per_second": {ok: []string{"0.01", "1000"}, bad: []string{"-1", "0.001", "1001"}},
	"uplink.max_delay":               {ok: []string{`"0s"`, `"30s"`}, bad: []string{`"-1s"`, `"31s"`}},
	"buffer.max_size":                {ok: []string{`"256KiB"`, `"8GiB"`}, bad: []string{`"255KiB"`}},
	"buffer.max_age":                 {ok: []string{`"1m"`, `"365d"`}, bad: []string{`"59s"`}},
	"buffer.when_full":               {ok: []string{`"drop-oldest"`, `"drop-newest"`}, bad: []string{`"drop"`}},
	"buffer.commit_interval":         {ok: []string{`"0s"`, `"10m"`}, bad: []string{`"-1s"`, `"11m"`}},
	"sensor[0].driver":               {ok: []string{`"bme280"`}, bad: []string{`"bme281"`, `"BME280"`}},
	"sensor[0].address":              {ok: []string{"0x76", "0x77"}, bad: []string{"0x75", "0x80"}},
	"sensor[0].interval":             {ok: []string{`"100ms"`, `"24h"`}, bad: []string{`"99ms"`, `"25h"`, `"-1s"`}},
	"log.level":                      {ok: []string{`"debug"`, `"info"`, `"warn"`, `"error"`}, bad: []string{`"verbose"`}},
}

// free are the example's keys without bounds of their own, and why.
var free = map[string]string{
	"device.product_key":               "any text from the console",
	"device.device_name":               "any text from the console",
	"device.device_secret_file":        "a path (checked to be readable and private elsewhere)",
	"buffer.path":                      "a path",
	"sensor[0].name":                   "any unique text (uniqueness: TestBrokenConfigs)",
	"sensor[0].bus":                    "a device path or emulated",
	"sensor[0].properties.temperature": "a thing-model identifier",
	"sensor[0].properties.humidity":    "a thing-model identifier",
	"sensor[0].properties.pressure":    "a thing-model identifier",
	"health.listen":                    "host:port or empty",
}

// Every key of the annotated example config has its bounds checked, from
// one table: each edge accepted, just past it refused at that key's line.
// A key added to the example without an entry here fails the test.
func TestExampleConfigBounds(t *testing.T) {
	src, err := os.ReadFile("../../configs/gatewayd.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gatewayd.secret"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "gatewayd.toml")
	parse := func(text string) (*Config, error) { return Parse(path, []byte(text)) }
	if _, err := parse(string(src)); err != nil {
		t.Fatalf("the example itself: %v", err)
	}

	var raw map[string]any
	md, err := toml.Decode(string(src), &raw)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, k := range md.Keys() {
		if t := md.Type(k...); t == "Hash" || t == "ArrayHash" {
			continue
		}
		key := strings.Join(k, ".")
		key = strings.Replace(key, "sensor.", "sensor[0].", 1) // the example has one [[sensor]]
		keys = append(keys, key)
	}
	sort.Strings(keys)
	lines := strings.Split(string(src), "\n")
	for _, key := range keys {
		b, has := bounds[key]
		if _, ok := free[key]; ok {
			continue
		}
		if !has {
			t.Errorf("%s is in the example config but not in the bounds table", key)
			continue
		}
		c, _ := parse(string(src))
		line := c.Line(key)
		if line == 0 {
			t.Fatalf("%s: no line", key)
		}
		leaf := key[strings.LastIndex(key, ".")+1:]
		re := regexp.MustCompile(`^(\s*` + regexp.QuoteMeta(leaf) + `\s*=\s*)("[^"]*"|[^\s#]+)(.*)$`)
		if !re.MatchString(lines[line-1]) {
			t.Fatalf("%s: line %d %q is not key = value", key, line, lines[line-1])
		}
		with := func(v string) string {
			l := append([]string(nil), lines...)
			l[line-1] = re.ReplaceAllString(l[line-1], "${1}"+strings.ReplaceAll(v, "$", "$$")+"${3}")
			return strings.Join(l, "\n")
		}
		for _, v := range b.ok {
			if _, err := parse(with(v)); err != nil {
				t.Errorf("%s = %s refused: %v", key, v, err)
			}
		}
		for _, v := range b.bad {
			_, err := parse(with(v))
			var es Errors
			if !errors.As(err, &es) {
				t.Errorf("%s = %s accepted", key, v)
				continue
			}
			found := false
			for _, e := range es {
				found = found || (e.Key == key && e.Line == line)
			}
			if !found {
				t.Errorf("%s = %s: refused, but not at %s line %d: %v", key, v, key, line, err)
			}
		}
	}
	for key := range bounds {
		if !slicesContains(keys, key) {
			t.Errorf("bounds table has %s, which the example config does not set", key)
		}
	}
	// The driver list in messages is the driver table's.
	_, err = parse(strings.Replace(string(src), `driver   = "bme280"`, `driver   = ""`, 1))
	if err == nil || !strings.Contains(err.Error(), strings.Join(sensors.DriverNames(), ", ")) {
		t.Errorf("an empty driver does not list the driver table: %v", err)
	}
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// The dead-letter bounds reach the buffer, and the buffer's bounds reach
// the file's lines.
func TestDeadLetterKeys(t *testing.T) {
	src := strings.Replace(good, "[[sensor]]", "[buffer]\ndead_letter_max_count = 5\ndead_letter_max_bytes = \"1MiB\"\ndead_letter_max_age = \"2d\"\n\n[[sensor]]", 1)
	c, err := Parse("x.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if o := c.BufferOptions(); o.DeadLetterMaxCount != 5 || o.DeadLetterMaxBytes != 1<<20 || o.DeadLetterMaxAge != 48*time.Hour {
		t.Errorf("buffer options %+v", o)
	}
	_, err = Parse("x.toml", []byte(strings.Replace(src, `dead_letter_max_age = "2d"`, `dead_letter_max_age = "1m"`, 1)))
	var es Errors
	if !errors.As(err, &es) || es[0].Key != "buffer.dead_letter_max_age" || es[0].Line == 0 {
		t.Errorf("a 1m dead-letter age: %v", err)
	}
}
