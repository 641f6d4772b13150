package main

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Accept is one value the platform emulator accepted: one line iotsim
// printed. A reading is identified by its property (distinct per sensor and
// measurement) and the time it was taken, in ms; several values coalesced
// into one message are several lines, so the message format does not matter.
type Accept struct {
	Prop  string
	Taken time.Time // when the sensor took it (ms precision)
	At    time.Time // when the harness read the line (just after iotsim accepted it)
}

func (a Accept) key() key { return key{a.Prop, a.Taken.UnixMilli()} }

type key struct {
	prop string
	ms   int64
}

// acceptLine matches iotsim's per-value line: "<time> <device> <prop>=<value>
// taken=<time> ...". Only the property and the time taken are used; the
// rest may change.
var acceptLine = regexp.MustCompile(`^\S+ \S+ ([^\s=]+)=\S+ taken=(\S+)`)

// parseAccept reads one iotsim line printed in UTC (the harness starts iotsim
// with TZ=UTC). A time of day is placed on the day that puts it nearest to
// at: a run never spans 12 hours, so a run across midnight is placed right.
func parseAccept(line string, at time.Time) (Accept, bool) {
	m := acceptLine.FindStringSubmatch(line)
	if m == nil {
		return Accept{}, false
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.000Z07:00"} {
		if t, err := time.Parse(layout, m[2]); err == nil {
			return Accept{Prop: m[1], Taken: t, At: at}, true
		}
	}
	tod, err := time.Parse("15:04:05.000", m[2])
	if err != nil {
		return Accept{}, false
	}
	u := at.UTC()
	t := time.Date(u.Year(), u.Month(), u.Day(), tod.Hour(), tod.Minute(), tod.Second(), tod.Nanosecond(), time.UTC)
	switch d := t.Sub(u); {
	case d > 12*time.Hour:
		t = t.AddDate(0, 0, -1)
	case d < -12*time.Hour:
		t = t.AddDate(0, 0, 1)
	}
	return Accept{Prop: m[1], Taken: t, At: at}, true
}

// Scrape is one read of gatewayd's /metrics during a lifetime: Q when the
// request went out, R when the answer was in. The counters were read in
// between.
type Scrape struct {
	Q, R    time.Time
	Taken   map[string]float64 // gatewayd_readings_taken_total per sensor (samples)
	Pending float64            // gatewayd_buffer_pending: readings appended, not yet durable
	Commits float64            // gatewayd_buffer_commits_total: durable commits so far
	Depth   float64
	Conn    float64
	Collect float64         // gatewayd_metrics_collections_total: runs of the collector
	Has     map[string]bool // which of the gauges above were present
}

// Life is one run of gatewayd, from its start to the power cut that ended
// it (or, for the final run, to a graceful stop).
type Life struct {
	N        int
	Scenario string
	Start    time.Time
	Cut      time.Time // power lost: kill -9 (or LazyFS stopped by a torn write)
	End      time.Time // the process is gone (after Cut)
	Scrapes  []Scrape
	Event    bool   // the scenario's event happened before the cut (a fold seen, a torn write done, mid-drain)
	Note     string // what happened, for the detail log
	Final    bool   // the last run: stopped gracefully, not judged
	// AccLo, AccHi: the iotsim lines (by their index in the accepted list,
	// in the order printed) that came while this run was alive. After each
	// cut the harness waits for iotsim's output to go quiet, so lines
	// printed before the cut but read after it still count here.
	AccLo, AccHi int
	Failed       string // the daemon did not come up (a finding)
	SetAside     int    // buffer.db.corrupt-* files that appeared
}

// Cfg is what the accounting needs to know about the daemon's config.
type Cfg struct {
	Sensors  map[string][]string // sensor -> its properties
	Interval time.Duration       // sampling interval of every sensor
	Commit   time.Duration       // commit_interval
}

// slack bounds clock and scheduling noise when placing a reading's time in
// a lifetime or an ack before a cut.
const slack = 50 * time.Millisecond

// ackSlack: an acceptance printed by iotsim reaches gatewayd as a reply a
// little later; an ack is counted as journaled only when the commits that
// settle it began at least this long after iotsim printed the value.
const ackSlack = time.Second

// settled returns the index of the latest scrape whose counted readings
// were all durable before the cut: two more durable commits completed
// before the cut. Commits are serialised, so at most the first of them
// started before the scrape; the second took everything appended before
// it. (The pending gauge is no proof: the buffer marks a window's readings
// journaled before the write returns.) -1: none.
func (l *Life) settled() int {
	best := -1
	for i, s := range l.Scrapes {
		if s.R.After(l.Cut) {
			break
		}
		for _, t := range l.Scrapes[i+1:] {
			if t.R.After(l.Cut) {
				break
			}
			if s.Has["commits"] && t.Has["commits"] && t.Commits >= s.Commits+2 {
				best = i
				break
			}
		}
	}
	return best
}

// ackBoundary is the latest time such that every ack gatewayd had taken by
// then was journaled before the cut: the request time of the latest scrape
// followed by two more durable commits. Zero time: none.
func (l *Life) ackBoundary() time.Time {
	var b time.Time
	for i, s := range l.Scrapes {
		if s.R.After(l.Cut) {
			break
		}
		for _, t := range l.Scrapes[i+1:] {
			if t.R.After(l.Cut) {
				break
			}
			if s.Has["commits"] && t.Has["commits"] && t.Commits >= s.Commits+2 {
				b = s.Q
				break
			}
		}
	}
	return b
}

// lastBefore is the last scrape answered before the cut, or -1.
func (l *Life) lastBefore() int {
	last := -1
	for i, s := range l.Scrapes {
		if !s.R.After(l.Cut) {
			last = i
		}
	}
	return last
}

// PropResult is the accounting of one property in one lifetime.
type PropResult struct {
	Life      int
	Sensor    string
	Prop      string
	Readings  int // known to have been taken in this lifetime
	Must      int // counted before the last settled scrape: must be delivered
	Delivered int // distinct readings of this lifetime iotsim accepted
	Lost      int // of Must, not delivered: lost beyond the commit window
	Window    int // taken, not delivered, not in Must: lost inside the commit window
	Unseen    int // estimate: taken after the last collection of counters, not delivered
	Why       string
}

// Dup is a reading iotsim accepted more than once.
type Dup struct {
	Prop      string
	Taken     time.Time
	At        []time.Time
	Explained bool
	Scenario  string // of the cut between the acceptances
	Why       string
}

// Result is the whole run's accounting.
type Result struct {
	Props      []PropResult
	Dups       []Dup
	Unassigned []Accept // accepted readings no lifetime produced: a broken ledger
}

// fresh keeps the scrapes whose counters were collected while the request
// was open. gatewayd serves one collection of its counters for up to a
// second (gatewayd_metrics_collections_total counts the runs); a copy served
// later carries counters read before the request went out. Without that
// counter every scrape is fresh.
func fresh(ss []Scrape) []Scrape {
	out := ss[:0:0]
	for i, s := range ss {
		if i == 0 || !s.Has["collect"] || !ss[i-1].Has["collect"] || s.Collect > ss[i-1].Collect {
			out = append(out, s)
		}
	}
	return out
}

// Account matches what iotsim accepted against what each lifetime took.
func Account(cfg Cfg, lives []*Life, acc []Accept) Result {
	var res Result
	for _, l := range lives {
		l.Scrapes = fresh(l.Scrapes)
	}
	sorted := append([]*Life(nil), lives...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Start.Before(sorted[j].Start) })
	// Readings by lifetime and property: distinct times taken.
	byLife := map[int]map[string]map[int64]bool{}
	lifeOf := func(t time.Time) *Life {
		for _, l := range sorted {
			end := l.End
			if end.IsZero() {
				end = l.Cut
			}
			if !t.Before(l.Start.Add(-slack)) && !t.After(end.Add(slack)) {
				return l
			}
		}
		return nil
	}
	times := map[key][]int{} // indexes into acc
	for i, a := range acc {
		l := lifeOf(a.Taken)
		if l == nil {
			res.Unassigned = append(res.Unassigned, a)
			continue
		}
		if byLife[l.N] == nil {
			byLife[l.N] = map[string]map[int64]bool{}
		}
		if byLife[l.N][a.Prop] == nil {
			byLife[l.N][a.Prop] = map[int64]bool{}
		}
		byLife[l.N][a.Prop][a.Taken.UnixMilli()] = true
		times[a.key()] = append(times[a.key()], i)
	}

	sensors := make([]string, 0, len(cfg.Sensors))
	for s := range cfg.Sensors {
		sensors = append(sensors, s)
	}
	sort.Strings(sensors)
	for _, l := range sorted {
		if l.Final || l.Failed != "" && len(l.Scrapes) == 0 {
			continue
		}
		si, li := l.settled(), l.lastBefore()
		for _, s := range sensors {
			for _, p := range cfg.Sensors[s] {
				res.Props = append(res.Props, accountProp(l, si, li, cfg.Interval, s, p, byLife[l.N][p]))
			}
		}
	}

	// Duplicates: every acceptance after the first must come from a later
	// run, and the run that accepted the previous one must have been cut
	// before that ack was journaled.
	runOf := func(i int) *Life {
		for _, l := range sorted {
			if i >= l.AccLo && i < l.AccHi {
				return l
			}
		}
		return nil
	}
	for k, idx := range times {
		if len(idx) < 2 {
			continue
		}
		sort.Ints(idx)
		d := Dup{Prop: k.prop, Taken: time.UnixMilli(k.ms), Explained: true}
		var whys []string
		for j, i := range idx {
			d.At = append(d.At, acc[i].At)
			if j == 0 {
				continue
			}
			prev, next := acc[idx[j-1]], acc[i]
			cut, again := runOf(idx[j-1]), runOf(i)
			switch {
			case cut == nil || again == nil || cut == again || cut.Final:
				d.Explained = false
				whys = append(whys, fmt.Sprintf("accepted at %s and again at %s with no power cut between", clock(prev.At), clock(next.At)))
			case !cut.ackBoundary().IsZero() && prev.At.Before(cut.ackBoundary().Add(-ackSlack)):
				d.Explained = false
				d.Scenario = cut.Scenario
				whys = append(whys, fmt.Sprintf("first accepted at %s, journaled before cut %d at %s (two commits after %s), yet sent again",
					clock(prev.At), cut.N, clock(cut.Cut), clock(cut.ackBoundary())))
			default:
				d.Scenario = cut.Scenario
				whys = append(whys, fmt.Sprintf("accepted at %s, cut %d at %s before its ack was journaled", clock(prev.At), cut.N, clock(cut.Cut)))
			}
		}
		d.Why = strings.Join(whys, "; ")
		res.Dups = append(res.Dups, d)
	}
	sort.Slice(res.Dups, func(i, j int) bool { return res.Dups[i].Taken.Before(res.Dups[j].Taken) })
	return res
}

// accountProp: n readings of a sensor counted at a settled scrape are its
// first n readings, so all must be delivered. Of the delivered readings
// taken by the scrape's answer, the first n are those, plus at most one more
// (stamped before the answer, appended after the counters were read).
// Fewer than n: that many were lost. Every scrape up to the latest settled
// one is settled too, and each gives such a bound; the largest is taken. A
// loss escapes only if every settled scrape after it caught the next
// reading between its stamp and its append (microseconds, unless the
// process stalls), which a later scrape of the same run then reveals.
func accountProp(l *Life, si, li int, interval time.Duration, sensor, prop string, got map[int64]bool) PropResult {
	r := PropResult{Life: l.N, Sensor: sensor, Prop: prop, Delivered: len(got)}
	ms := make([]int64, 0, len(got))
	for t := range got {
		ms = append(ms, t)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i] < ms[j] })
	upTo := func(t time.Time) int {
		return sort.Search(len(ms), func(i int) bool { return ms[i] > t.UnixMilli() })
	}
	for i := 0; i <= si; i++ {
		s := l.Scrapes[i]
		n, c := int(s.Taken[sensor]), upTo(s.R)
		r.Must = max(r.Must, n)
		if n-c > r.Lost {
			r.Lost = n - c
			r.Why = fmt.Sprintf("%d counted by %s, settled by two commits before the cut; %d delivered taken by then", n, clock(s.R), c)
		}
	}
	// Known taken: what the last scrape counted plus what was delivered
	// taken after it.
	r.Readings = len(ms)
	if li >= 0 {
		s := l.Scrapes[li]
		before := upTo(s.R)
		r.Readings = max(int(s.Taken[sensor]), before) + len(ms) - before
	}
	r.Readings = max(r.Readings, r.Must)
	// Readings taken after the last collection and not delivered are in no
	// count: estimate them from the sampling cadence.
	last := l.Start
	if li >= 0 {
		last = l.Scrapes[li].R
	}
	if interval > 0 && l.Cut.After(last) {
		r.Unseen = max(0, int(l.Cut.Sub(last)/interval)-(len(ms)-upTo(last)))
	}
	r.Window = max(0, r.Readings-r.Delivered-r.Lost)
	return r
}

func clock(t time.Time) string { return t.UTC().Format("15:04:05.000") }

// parseMetrics reads the Prometheus text gatewayd serves.
func parseMetrics(body string, q, r time.Time) Scrape {
	s := Scrape{Q: q, R: r, Taken: map[string]float64{}, Has: map[string]bool{}}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil || math.IsNaN(v) {
			continue
		}
		name, labels := line[:sp], ""
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name, labels = name[:i], name[i:]
		}
		switch name {
		case "gatewayd_readings_taken_total":
			if m := sensorLabel.FindStringSubmatch(labels); m != nil {
				s.Taken[m[1]] = v
				s.Has["taken"] = true
			}
		case "gatewayd_buffer_pending":
			s.Pending, s.Has["pending"] = v, true
		case "gatewayd_buffer_commits_total":
			s.Commits, s.Has["commits"] = v, true
		case "gatewayd_buffer_depth":
			s.Depth, s.Has["depth"] = v, true
		case "gatewayd_connected":
			s.Conn, s.Has["conn"] = v, true
		case "gatewayd_metrics_collections_total":
			s.Collect, s.Has["collect"] = v, true
		}
	}
	return s
}

var sensorLabel = regexp.MustCompile(`sensor="([^"]*)"`)
