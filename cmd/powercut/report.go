package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// scenario is one row of the table.
type scenario struct {
	name   string
	what   string // how the cut is placed
	trials int    // lifetimes planned for it
	cuts   int    // of them, cut with the scenario's event in place
	read   int
	deliv  int
	lost   int
	dups   int
	window int
	maxWin time.Duration // the oldest a within-window loss can be: cut - last settled scrape
	notes  []string
}

// scenarioOrder fixes the table's rows.
var scenarioOrder = []struct{ name, what string }{
	{"offline", "kill -9 + clear-cache at a random point, platform down, backlog growing"},
	{"drain", "kill -9 + clear-cache after a random number of backlog values were accepted"},
	{"fold", "kill -9 + clear-cache 0-40 ms after the bbolt file was synced (a fold: at open or every 30 windows)"},
	{"torn-journal", "LazyFS torn-op on the journal: a random append or reset half-written, then power lost"},
	{"torn-bbolt-op", "LazyFS torn-op on buffer.db: a random page write of a fold half-written, then power lost"},
	{"torn-bbolt-seq", "LazyFS torn-seq on buffer.db: some writes of a fold's sequence persisted, not the others"},
}

// Summary is the table plus the verdict.
type Summary struct {
	Rows        []*scenario
	Total       scenario
	Unexplained []Dup
	Losses      []PropResult
	Failed      []string
	Unassigned  int
	Unparsed    int // iotsim lines with a value that could not be read
	MustTotal   int
	MaxWinProp  int // the most readings of one property lost inside the window at one cut
	Unseen      int // estimated readings taken after a run's last collection and lost with its cut
	SetAside    int // buffer files gatewayd set aside as corrupt
}

// Summarise folds the accounting into one row per scenario.
func Summarise(lives []*Life, res Result) Summary {
	var sm Summary
	rows := map[string]*scenario{}
	for _, o := range scenarioOrder {
		rows[o.name] = &scenario{name: o.name, what: o.what}
		sm.Rows = append(sm.Rows, rows[o.name])
	}
	row := func(name string) *scenario {
		if r, ok := rows[name]; ok {
			return r
		}
		r := &scenario{name: name}
		rows[name] = r
		sm.Rows = append(sm.Rows, r)
		return r
	}
	for _, l := range lives {
		if l.Final {
			continue
		}
		r := row(l.Scenario)
		r.trials++
		if l.Event {
			r.cuts++
		}
		if l.Failed != "" {
			sm.Failed = append(sm.Failed, fmt.Sprintf("life %d (%s): %s", l.N, l.Scenario, l.Failed))
		}
		sm.SetAside += l.SetAside
		if l.SetAside > 0 {
			r.notes = append(r.notes, fmt.Sprintf("life %d: %d file(s) set aside as corrupt", l.N, l.SetAside))
		}
	}
	scen := map[int]string{}
	byN := map[int]*Life{}
	for _, l := range lives {
		scen[l.N] = l.Scenario
		byN[l.N] = l
	}
	for _, p := range res.Props {
		r := row(scen[p.Life])
		if l := byN[p.Life]; p.Window > 0 && l != nil {
			// Every reading lost inside the window was counted after
			// the last settled scrape (or, without one, after the start).
			from := l.Start
			if si := l.settled(); si >= 0 {
				from = l.Scrapes[si].R
			}
			r.maxWin = max(r.maxWin, l.Cut.Sub(from))
			sm.Total.maxWin = max(sm.Total.maxWin, r.maxWin)
		}
		r.read += p.Readings
		r.deliv += p.Delivered
		r.lost += p.Lost
		r.window += p.Window
		sm.MustTotal += p.Must
		sm.Unseen += p.Unseen
		sm.MaxWinProp = max(sm.MaxWinProp, p.Window)
		if p.Lost > 0 {
			sm.Losses = append(sm.Losses, p)
		}
	}
	for _, d := range res.Dups {
		name := d.Scenario
		if name == "" {
			name = "offline"
		}
		row(name).dups += len(d.At) - 1
		if !d.Explained {
			sm.Unexplained = append(sm.Unexplained, d)
		}
	}
	sm.Unassigned = len(res.Unassigned)
	for _, r := range sm.Rows {
		sm.Total.trials += r.trials
		sm.Total.cuts += r.cuts
		sm.Total.read += r.read
		sm.Total.deliv += r.deliv
		sm.Total.lost += r.lost
		sm.Total.dups += r.dups
		sm.Total.window += r.window
	}
	return sm
}

// OK is the verdict: nothing lost beyond the window, no duplicate without a
// cut before its ack was journaled, every restart came up, every accepted
// reading placed, and the run was not vacuous.
func (sm Summary) OK(minMust int) []string {
	var why []string
	if sm.Total.lost > 0 {
		why = append(why, fmt.Sprintf("%d readings lost beyond the commit window", sm.Total.lost))
	}
	if len(sm.Unexplained) > 0 {
		why = append(why, fmt.Sprintf("%d readings duplicated without a cut before their ack was journaled", len(sm.Unexplained)))
	}
	if len(sm.Failed) > 0 {
		why = append(why, fmt.Sprintf("%d restarts failed", len(sm.Failed)))
	}
	if sm.Unassigned > 0 {
		why = append(why, fmt.Sprintf("%d accepted readings belong to no run of gatewayd (the ledger is broken)", sm.Unassigned))
	}
	if sm.Unparsed > 0 {
		why = append(why, fmt.Sprintf("%d iotsim lines with a value could not be read (its output format changed?)", sm.Unparsed))
	}
	if sm.MustTotal < minMust {
		why = append(why, fmt.Sprintf("only %d readings were settled before a cut (at least %d needed): the run proves nothing", sm.MustTotal, minMust))
	}
	return why
}

// Print writes the table and the details of anything that failed.
func (sm Summary) Print(w io.Writer) {
	fmt.Fprintln(w, "| scenario | trials | cuts | readings | delivered | lost beyond window | duplicates | lost within window (explained) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range sm.Rows {
		if r.trials == 0 {
			continue
		}
		fmt.Fprintf(w, "| %s | %d | %d | %d | %d | %d | %d | %d |\n", r.name, r.trials, r.cuts, r.read, r.deliv, r.lost, r.dups, r.window)
	}
	t := sm.Total
	fmt.Fprintf(w, "| **total** | %d | %d | %d | %d | **%d** | %d | %d |\n", t.trials, t.cuts, t.read, t.deliv, t.lost, t.dups, t.window)
	fmt.Fprintln(w)
	for _, r := range sm.Rows {
		if r.trials > 0 {
			fmt.Fprintf(w, "  %-15s %s\n", r.name+":", r.what)
		}
	}
	fmt.Fprintf(w, "  readings settled before a cut (must survive): %d; buffer files set aside as corrupt: %d\n", sm.MustTotal, sm.SetAside)
	fmt.Fprintln(w, "  duplicates: each from an ack not yet journaled at a cut, unless listed below")
	if sm.Total.window > 0 {
		fmt.Fprintf(w, "  lost within the window: taken after the last scrape that two durable commits settled before the cut (at most %v before it); at most %d per property per cut\n",
			sm.Total.maxWin.Round(time.Millisecond), sm.MaxWinProp)
	}
	fmt.Fprintln(w, "  readings: counted by gatewayd at the last fresh collection of its counters before each cut (exact), plus those delivered taken after it;")
	fmt.Fprintf(w, "    about %d more were taken after that collection and lost with their cut (estimated from the sampling cadence; inside the window by definition)\n", sm.Unseen)
	for _, r := range sm.Rows {
		for _, n := range r.notes {
			fmt.Fprintf(w, "  note %s: %s\n", r.name, n)
		}
	}
	sort.Slice(sm.Losses, func(i, j int) bool { return sm.Losses[i].Life < sm.Losses[j].Life })
	for _, p := range sm.Losses {
		fmt.Fprintf(w, "  LOST life %d %s: %d of %d (%s)\n", p.Life, p.Prop, p.Lost, p.Must, p.Why)
	}
	for _, d := range sm.Unexplained {
		fmt.Fprintf(w, "  UNEXPLAINED DUPLICATE %s taken %s, accepted %d times: %s\n", d.Prop, clock(d.Taken), len(d.At), d.Why)
	}
	for _, f := range sm.Failed {
		fmt.Fprintf(w, "  FAILED RESTART %s\n", strings.TrimSpace(f))
	}
	if sm.Unassigned > 0 {
		fmt.Fprintf(w, "  UNPLACED %d accepted readings taken outside every run of gatewayd\n", sm.Unassigned)
	}
}
