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

// bme280 is one BME280 sample at its chip resolutions, with the
// full-precision floats the driver computes.
func bme280(id reading.ID, sensor, prefix string, at time.Time, t, h, p float64) reading.Sample {
	return reading.Sample{ID: id, Sensor: sensor, Stamp: reading.Stamp{Time: at, Synced: true}, Values: []reading.Value{
		{Measurement: "temperature", Property: prefix + "temperature", Unit: "°C", Value: t, Resolution: 0.01},
		{Measurement: "humidity", Property: prefix + "humidity", Unit: "%RH", Value: h, Resolution: 0.01},
		{Measurement: "pressure", Property: prefix + "pressure", Unit: "hPa", Value: p, Resolution: 0.01},
	}}
}

var t0 = time.Date(2026, 11, 25, 18, 50, 0, 812_000_000, time.UTC)

// goldenSamples: two sensors read in one round, with distinct properties.
func goldenSamples() []reading.Sample {
	return []reading.Sample{
		bme280(1, "air", "", t0, 22.514999, 48.0001, 1009.2492578125),
		{ID: 2, Sensor: "soil", Stamp: reading.Stamp{Time: t0.Add(time.Millisecond), Synced: true}, Values: []reading.Value{
			{Measurement: "temperature", Property: "soil_temperature", Unit: "°C", Value: 12.0625, Resolution: 0.0625}}},
	}
}

// threeBME280s: three sensors sharing property names, read in one round.
func threeBME280s(at time.Time) []reading.Sample {
	return []reading.Sample{
		bme280(1, "air1", "", at, 21.004, 40.123, 1009.2492578125),
		bme280(2, "air2", "", at.Add(2*time.Millisecond), 22.25, 41.0, 1010.0),
		bme280(3, "air3", "", at.Add(4*time.Millisecond), -3.006, 99.999, 1011.5),
	}
}

func TestGoldenPropertyPost(t *testing.T) {
	golden(t, "property_post.json", encodeAlink(kindPost, "1234", "a1hQSwFledE", "greenhouse-7", itemsOf(goldenSamples())))
}

func TestGoldenBatchPost(t *testing.T) {
	golden(t, "batch_post.json", encodeAlink(kindBatch, "1235", "a1hQSwFledE", "greenhouse-7", itemsOf(threeBME280s(t0))))
}

func TestGoldenHistoryPost(t *testing.T) {
	ss := goldenSamples()
	for i := range ss {
		ss[i].Time = ss[i].Time.Add(-48 * time.Hour)
	}
	golden(t, "history_post.json", encodeAlink(kindHistory, "1236", "a1hQSwFledE", "greenhouse-7", itemsOf(ss)))
}

func TestGoldenMQTTPayload(t *testing.T) {
	its := itemsOf(goldenSamples())
	golden(t, "mqtt_reading.json", encodeMQTT("greenhouse-7", its[1:2]))
	golden(t, "mqtt_readings.json", encodeMQTT("greenhouse-7", its))
	if got := expandTopic(DefaultTopic, "green/house", &its[0]); got != "sensors/green_house/air" {
		t.Errorf("topic %q", got)
	}
}

// Values go out at their resolution (reading.Format), never at the
// driver's full float precision, and always with a decimal point.
func TestValuesAtResolution(t *testing.T) {
	b := encodeAlink(kindPost, "1", "pk", "dn", itemsOf(goldenSamples()))
	for _, want := range []string{`"pressure":{"value":1009.25,`, `"temperature":{"value":22.51,`, `"humidity":{"value":48.0,`, `"soil_temperature":{"value":12.0625,`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
	if bytes.Contains(b, []byte("1009.249")) {
		t.Errorf("full precision leaked: %s", b)
	}
	for _, c := range []struct {
		v, res float64
		want   string
	}{{20, 0, "20.0"}, {-3, 0.1, "-3.0"}, {0, 0.01, "0.0"}, {1e21, 0, "1000000000000000000000.0"}, {1.5e-7, 0, "0.00000015"}, {415.4, 1, "415.0"}} {
		if got := string(appendNumber(nil, reading.Value{Value: c.v, Resolution: c.res})); got != c.want {
			t.Errorf("appendNumber(%v, %v) = %s, want %s", c.v, c.res, got, c.want)
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
