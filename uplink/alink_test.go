package uplink

import (
	"bytes"
	"encoding/json"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gatewayd/internal/reading"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(bytes.TrimSuffix(want, []byte("\n")), got) {
		t.Errorf("%s differs:\n got %s\nwant %s", name, got, want)
	}
	if !json.Valid(got) {
		t.Errorf("%s: not valid JSON", name)
	}
}

func goldenReadings() []reading.Reading {
	t0 := time.Date(2026, 11, 25, 18, 50, 0, 812_000_000, time.UTC)
	return []reading.Reading{
		{ID: 1, Sensor: "air", Measurement: "temperature", Property: "temperature", Value: 22.51, Time: t0},
		{ID: 2, Sensor: "air", Measurement: "humidity", Property: "humidity", Value: 48, Time: t0},
		{ID: 3, Sensor: "air", Measurement: "pressure", Property: "pressure", Value: 1013.25, Time: t0.Add(time.Millisecond)},
	}
}

func TestGoldenPropertyPost(t *testing.T) {
	golden(t, "property_post.json", encodeAlink(kindPost, "1234", "a1hQSwFledE", "greenhouse-7", goldenReadings()))
}

func TestGoldenBatchPost(t *testing.T) {
	rs := goldenReadings()
	more := rs[0]
	more.ID, more.Value, more.Time = 4, 22.0, more.Time.Add(10*time.Second)
	rs = append(rs, more)
	golden(t, "batch_post.json", encodeAlink(kindBatch, "1235", "a1hQSwFledE", "greenhouse-7", rs))
}

func TestGoldenHistoryPost(t *testing.T) {
	rs := goldenReadings()
	for i := range rs {
		rs[i].Time = rs[i].Time.Add(-48 * time.Hour)
	}
	golden(t, "history_post.json", encodeAlink(kindHistory, "1236", "a1hQSwFledE", "greenhouse-7", rs))
}

func TestGoldenMQTTPayload(t *testing.T) {
	rs := goldenReadings()[:2]
	rs[1].Unit, rs[1].Synced = "%RH", true
	golden(t, "mqtt_reading.json", encodeMQTT("greenhouse-7", rs[1:]))
	golden(t, "mqtt_readings.json", encodeMQTT("greenhouse-7", rs))
	r := rs[0]
	if got := expandTopic(DefaultTopic, "green/house", &r); got != "sensors/green_house/air" {
		t.Errorf("topic %q", got)
	}
}

func TestFloatsKeepADecimalPoint(t *testing.T) {
	for v, want := range map[float64]string{20: "20.0", -3: "-3.0", 0: "0.0", 22.51: "22.51", 1e21: "1000000000000000000000.0", 1.5e-7: "0.00000015"} {
		if got := string(appendFloat(nil, v)); got != want {
			t.Errorf("appendFloat(%v) = %s, want %s", v, got, want)
		}
	}
}

func TestClassifyCode(t *testing.T) {
	for code, want := range map[int]action{200: actAck, 429: actRetry, 500: actRetry, 460: actDeadLetter, 6106: actDeadLetter,
		6203: actDeadLetter, 26001: actDeadLetter, 26010: actDeadLetter, 26011: actRetry, 6100: actRetry, 6204: actRetry, 6313: actRetry, 0: actRetry} {
		if got := classifyCode(code); got != want {
			t.Errorf("classifyCode(%d) = %v, want %v", code, got, want)
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestAppendStringMatchesJSON(t *testing.T) {
	for _, s := range []string{"", "temperature", `a"b`, `back\slash`, "tab\t", "<html>&", "°C", "\u2028", "\x7f", "ä"} {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); string(got) != string(want) {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
	}
}
