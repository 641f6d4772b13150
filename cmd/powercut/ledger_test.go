package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// The accounting must catch what it is there to catch: these feed it
// fabricated iotsim output and scrapes, with and without a lost reading.

var t0 = time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

var testCfg = Cfg{Sensors: map[string][]string{"s0": {"s0_t", "s0_h"}}, Interval: 200 * time.Millisecond, Commit: 200 * time.Millisecond}

// simLog renders what iotsim prints for readings of s0 taken at the given
// ms offsets, both properties in one message (coalesced), accepted at
// acceptAt.
func simLog(taken []int, acceptAt int) []string {
	var lines []string
	for i, ms := range taken {
		tk := at(ms).Format("15:04:05.000")
		rc := at(acceptAt).Format("15:04:05")
		lines = append(lines,
			fmt.Sprintf("%s pc-1 s0_t=21.5 taken=%s id=%d", rc, tk, 100+i/4),
			fmt.Sprintf("%s pc-1 s0_h=40.25 taken=%s id=%d (batch, taken 2026-12-03)", rc, tk, 100+i/4))
	}
	return lines
}

func parseAll(t *testing.T, lines []string, acceptAt int) []Accept {
	t.Helper()
	var acc []Accept
	for _, l := range lines {
		a, ok := parseAccept(l, at(acceptAt))
		if !ok {
			t.Fatalf("line not parsed: %q", l)
		}
		acc = append(acc, a)
	}
	return acc
}

// oneLife: gatewayd ran from 0 to 3000 ms, sampling every 200 ms from
// 100 ms; the scrape at 2000 ms counted 10 samples (100..1900) and two
// commits followed (no later scrape is settled); the cut came at 3000 ms.
func oneLife() *Life {
	mk := func(q, taken, commits int, pending float64) Scrape {
		return Scrape{Q: at(q), R: at(q + 3), Taken: map[string]float64{"s0": float64(taken)}, Commits: float64(commits),
			Pending: pending, Has: map[string]bool{"taken": true, "commits": true, "pending": true}}
	}
	return &Life{N: 1, Scenario: "offline", Start: at(0), Cut: at(3000), End: at(3005), Event: true,
		Scrapes: []Scrape{mk(1000, 5, 4, 3), mk(2000, 10, 9, 3), mk(2300, 12, 10, 1), mk(2600, 13, 11, 2), mk(2990, 15, 11, 2)}}
}

func samples(from, to int, skip ...int) []int {
	var out []int
	for ms := from; ms <= to; ms += 200 {
		gone := false
		for _, s := range skip {
			gone = gone || s == ms
		}
		if !gone {
			out = append(out, ms)
		}
	}
	return out
}

func TestAccountAllDelivered(t *testing.T) {
	l := oneLife()
	// Everything up to 2500 delivered; 2700 and 2900 died in the window.
	acc := parseAll(t, simLog(samples(100, 2500), 5000), 5000)
	res := Account(testCfg, []*Life{l}, acc)
	sm := Summarise([]*Life{l}, res)
	if why := sm.OK(1); len(why) != 0 {
		t.Fatalf("verdict %v, want pass", why)
	}
	for _, p := range res.Props {
		if p.Must != 10 || p.Lost != 0 || p.Delivered != 13 || p.Readings != 15 || p.Window != 2 {
			t.Errorf("%s: %+v, want must 10, lost 0, delivered 13, readings 15, window 2", p.Prop, p)
		}
	}
}

func TestAccountCatchesALoss(t *testing.T) {
	l := oneLife()
	// The reading taken at 900 ms was settled (counted at 2000 ms, two
	// commits after), but iotsim never got it.
	acc := parseAll(t, simLog(samples(100, 2500, 900), 5000), 5000)
	res := Account(testCfg, []*Life{l}, acc)
	sm := Summarise([]*Life{l}, res)
	if sm.Total.lost != 2 { // both properties of that sample
		t.Fatalf("lost %d, want 2: %+v", sm.Total.lost, res.Props)
	}
	if why := sm.OK(1); len(why) == 0 || !strings.Contains(why[0], "lost beyond the commit window") {
		t.Fatalf("verdict %v, want a loss", why)
	}
	var b strings.Builder
	sm.Print(&b)
	if !strings.Contains(b.String(), "LOST life 1 s0_t") {
		t.Errorf("the table does not name the loss:\n%s", b.String())
	}
}

// A loss hidden at one scrape by the one extra reading it may see (stamped
// before the answer, appended after the counters were read) is found by an
// earlier settled scrape.
func TestAccountCatchesAMaskedLoss(t *testing.T) {
	l := oneLife()
	// Scrape at 2000 counted 10 (100..1900); 1999 was stamped just before
	// its answer. 900 is missing: 10 delivered by 2003, as many as counted,
	// but the scrape at 1000 counted 5 and only 4 were taken by then.
	taken := append(samples(100, 1900, 900), 1999)
	acc := parseAll(t, simLog(taken, 5000), 5000)
	res := Account(testCfg, []*Life{l}, acc)
	if sm := Summarise([]*Life{l}, res); sm.Total.lost != 2 {
		t.Fatalf("lost %d, want 2 (900 ms): %+v", sm.Total.lost, res.Props)
	}
}

// Nothing is settled without two commits after the scrape (or nothing
// pending): a reading lost then is inside the window, not a failure.
func TestAccountWindowIsNotALoss(t *testing.T) {
	l := oneLife()
	l.Scrapes = l.Scrapes[:1]
	l.Scrapes[0].Pending = 3
	acc := parseAll(t, simLog(samples(100, 500, 300), 5000), 5000)
	res := Account(testCfg, []*Life{l}, acc)
	sm := Summarise([]*Life{l}, res)
	if sm.Total.lost != 0 || sm.Total.window == 0 {
		t.Fatalf("lost %d window %d, want 0 and >0", sm.Total.lost, sm.Total.window)
	}
	if why := sm.OK(1); len(why) != 1 || !strings.Contains(why[0], "proves nothing") {
		t.Fatalf("verdict %v: a run with nothing settled must not pass", why)
	}
}

func TestAccountDuplicates(t *testing.T) {
	l1 := oneLife()
	l2 := &Life{N: 2, Scenario: "drain", Start: at(3200), Cut: at(9000), End: at(9001)}
	l3 := &Life{N: 3, Scenario: "final", Final: true, Start: at(9200), Cut: at(20000), End: at(20001), AccHi: 1 << 30}
	lives := []*Life{l1, l2, l3}
	var acc []Accept
	add := func(ms, acceptAt int) {
		acc = append(acc, parseAll(t, simLog([]int{ms}, acceptAt), acceptAt)...)
	}
	for _, ms := range samples(100, 2900) {
		add(ms, 4000) // the drain in life 2
	}
	l2.AccLo, l2.AccHi, l3.AccLo = 0, len(acc), len(acc)
	add(100, 9500) // again in life 3: life 2 had no settled scrape, so its ack was not journaled
	res := Account(testCfg, lives, acc)
	sm := Summarise(lives, res)
	if len(sm.Unexplained) != 0 || sm.Total.dups != 2 {
		t.Fatalf("dups %d unexplained %v, want 2 explained", sm.Total.dups, sm.Unexplained)
	}

	// The same, but life 2 settled its acks (two commits after 5000) long
	// before the cut: sending again is a defect.
	sc := func(q, commits int) Scrape {
		return Scrape{Q: at(q), R: at(q + 2), Taken: map[string]float64{"s0": 1}, Commits: float64(commits), Has: map[string]bool{"commits": true}}
	}
	l2.Scrapes = []Scrape{sc(6000, 1), sc(6500, 3)}
	res = Account(testCfg, lives, acc)
	sm = Summarise(lives, res)
	if len(sm.Unexplained) != 2 {
		t.Fatalf("unexplained %d, want 2 (both values of the sample acked at 4000, journaled by 6500, resent after the cut at 9000)", len(sm.Unexplained))
	}

	// Accepted twice in one run, no cut between: a defect, even if the
	// harness read the lines late (their read times say nothing).
	l2.Scrapes = nil
	add(300, 15000)
	add(300, 16000)
	res = Account(testCfg, lives, acc)
	if sm = Summarise(lives, res); len(sm.Unexplained) != 2 || !sm.Unexplained[0].Taken.Equal(at(300)) {
		t.Fatalf("unexplained %v, want both values of the reading taken at 300 ms", sm.Unexplained)
	}
}

func TestAccountUnplacedReading(t *testing.T) {
	l := oneLife()
	acc := parseAll(t, simLog(append(samples(100, 2500), 60000), 70000), 70000)
	sm := Summarise([]*Life{l}, Account(testCfg, []*Life{l}, acc))
	if sm.Unassigned != 2 || len(sm.OK(1)) == 0 {
		t.Fatalf("unassigned %d, verdict %v: a reading no run took must fail the run", sm.Unassigned, sm.OK(1))
	}
}

func TestParseAccept(t *testing.T) {
	near := time.Date(2026, 12, 4, 0, 0, 1, 0, time.UTC)
	a, ok := parseAccept("00:00:01 pc-1 s2_pressure=1013.25 taken=23:59:59.875 id=7 (history, taken 2026-12-03)", near)
	if !ok || a.Prop != "s2_pressure" || !a.Taken.Equal(time.Date(2026, 12, 3, 23, 59, 59, 875e6, time.UTC)) {
		t.Fatalf("across midnight: %+v %v", a, ok)
	}
	a, ok = parseAccept("14:00:00 pc-1 s0_t=1 taken=2026-12-03T13:59:59.5Z sample=9", near)
	if !ok || a.Taken.UnixMilli() != time.Date(2026, 12, 3, 13, 59, 59, 5e8, time.UTC).UnixMilli() {
		t.Fatalf("RFC 3339 time: %+v %v", a, ok)
	}
	if _, ok := parseAccept("14:00:00 pc-1 post id=3 refused: code 460 invalid", near); ok {
		t.Fatal("a refusal parsed as an accepted value")
	}
}

// gatewayd serves one collection of its counters for up to a second: a
// copy served to a later scrape is not evidence about that later moment.
func TestAccountIgnoresCachedScrapes(t *testing.T) {
	mk := func(q, taken, commits, collect int) Scrape {
		return Scrape{Q: at(q), R: at(q + 3), Taken: map[string]float64{"s0": float64(taken)}, Commits: float64(commits),
			Collect: float64(collect), Has: map[string]bool{"taken": true, "commits": true, "collect": true}}
	}
	// Fresh at 1000 (5 taken, 4 commits) and 2900 (14, 6); the page
	// collected at 1000 served again at 2600: were it read as of 2600,
	// two commits after it would "settle" it and its window would end
	// there.
	l := &Life{N: 1, Scenario: "offline", Start: at(0), Cut: at(3000), End: at(3005),
		Scrapes: []Scrape{mk(1000, 5, 4, 1), mk(2600, 5, 4, 1), mk(2900, 14, 6, 2)}}
	acc := parseAll(t, simLog(samples(100, 2500), 5000), 5000)
	res := Account(testCfg, []*Life{l}, acc)
	if len(l.Scrapes) != 2 {
		t.Fatalf("%d scrapes kept, want the 2 fresh ones", len(l.Scrapes))
	}
	sm := Summarise([]*Life{l}, res)
	if sm.Total.lost != 0 || sm.Total.maxWin != 2*time.Second-3*time.Millisecond {
		t.Fatalf("lost %d, window bound %v: want 0 and 1.997s (from the fresh scrape at 1000)", sm.Total.lost, sm.Total.maxWin)
	}
}

func TestParseMetrics(t *testing.T) {
	s := parseMetrics(`# HELP x
gatewayd_readings_taken_total{sensor="s0"} 12
gatewayd_readings_taken_total{sensor="s1"} 11
gatewayd_buffer_pending 0
gatewayd_buffer_commits_total 7
gatewayd_buffer_depth 30
gatewayd_connected 1
`, t0, t0)
	if s.Taken["s0"] != 12 || s.Taken["s1"] != 11 || !s.Has["pending"] || s.Pending != 0 || s.Commits != 7 || s.Depth != 30 || s.Conn != 1 {
		t.Fatalf("%+v", s)
	}
}
