package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// benchLine is one result line of `go test -bench`: the name (without the
// -GOMAXPROCS suffix), N, and each metric by unit.
type benchLine struct {
	name    string
	n       int
	metrics map[string]float64
}

var benchName = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?$`)

func parseBench(out string) []benchLine {
	var res []benchLine
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		m := benchName.FindStringSubmatch(f[0])
		n, err := strconv.Atoi(f[1])
		if m == nil || err != nil {
			continue
		}
		b := benchLine{name: m[1], n: n, metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				b.metrics[f[i+1]] = v
			}
		}
		res = append(res, b)
	}
	return res
}

// uplinkDrainValues is the backlog size of uplink's BenchmarkBacklogDrain
// (its benchReadings constant: 9,999 values, 3,333 BME280 samples); each
// benchmark iteration drains one.
const uplinkDrainValues = 9999

// drain runs uplink's own backlog drain benchmark: a running client drains
// a backlog until every reading is acknowledged, next to synchronous
// one-reading-per-message QoS 1 publishes, in the same run.
func (h *harness) drain() error {
	n := h.sz.DrainTimes
	out, err := h.goTest(10*time.Minute, "-run", "^$", "-bench", "^BenchmarkBacklogDrain$",
		"-benchtime", fmt.Sprintf("%dx", n), "-count", "1", "./uplink/")
	if err != nil {
		return fmt.Errorf("%w\n%s", err, tail(out, 20))
	}
	s := &section{
		title: "Drain: a backlog drained with acknowledgements vs synchronous one-value-per-message QoS 1",
		method: fmt.Sprintf("uplink's `BenchmarkBacklogDrain`, run by this command with `-benchtime %dx`: %d backlogs of %d values (BME280 samples) "+
			"two hours old (%d values in all) drained by a running client until every one was acknowledged (post_reply 200 from iotsim over TLS / "+
			"PUBACK from mosquitto over TLS), and as many plain one-value-per-message QoS 1 publishes, each waiting for its PUBACK, "+
			"in the same run. The benchmark's backlog size is a constant in uplink/bench_test.go.", n, n, uplinkDrainValues, n*uplinkDrainValues),
		head: []string{"far end", "values drained", "drain (values/s, acknowledged)", "synchronous (values/s)", "ratio", "target ≥ 5×"},
	}
	h.report.add(s)
	found := 0
	for _, b := range parseBench(out) {
		far := strings.TrimPrefix(b.name, "BenchmarkBacklogDrain/")
		rate, sync := b.metrics["values/s"], b.metrics["sync-values/s"]
		if rate == 0 {
			continue
		}
		found++
		if sync == 0 {
			// The benchmark runs no baseline at the platform's default
			// pace: a one-value-per-message sender held to 20
			// messages/s manages 20 values/s.
			s.row(far, b.n*uplinkDrainValues, fmt.Sprintf("%.0f", rate), "20 (held to the same 20 messages/s; not run)", ratio(rate, 20), met(rate >= 5*20))
			continue
		}
		s.row(far, b.n*uplinkDrainValues, fmt.Sprintf("%.0f", rate), fmt.Sprintf("%.0f", sync), ratio(rate, sync), met(rate >= 5*sync))
	}
	if found == 0 {
		return fmt.Errorf("no drain results in the benchmark output:\n%s", tail(out, 20))
	}
	return nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
