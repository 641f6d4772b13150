package main

import (
	"fmt"
	"slices"
	"time"
)

// startup measures, per trial, the time from exec of gatewayd to iotsim
// accepting its first reading (accepted = answered 200 on post_reply).
func (h *harness) startup() error {
	s := &section{
		title: "Start-up: process start to the first acknowledged reading",
		method: fmt.Sprintf("%d trials, each a fresh buffer file: gatewayd (3 emulated BME280s, interval 1 s, aliyun over TLS) against iotsim; "+
			"from just before exec to the moment iotsim accepted the first value (it answers post_reply 200 at once). "+
			"The path includes the TLS login, the platform NTP exchange (this machine's clock reports itself unsynchronised, so "+
			"readings wait for the platform's time before they may be sent), the first sample, `max_delay` (default 1 s: a live sample waits "+
			"up to that long for the other samples of its round, so that one message carries the round) and the first post.", h.sz.StartTrials),
		head: []string{"trials", "min", "median", "max", "first reading taken after (median)"},
	}
	var firsts, taken []time.Duration
	for i := 0; i < h.sz.StartTrials; i++ {
		t, err := h.newSimTrial("startup", func(c *gwConfig) { c.Interval = time.Second })
		if err != nil {
			return err
		}
		err = func() error {
			defer t.abort()
			if err := t.start(); err != nil {
				return err
			}
			if !waitFor(30*time.Second, 5*time.Millisecond, func() bool { return len(t.sim.Accepted()) > 0 }) {
				return fmt.Errorf("no reading accepted within 30 s: %s", t.gw.Stderr())
			}
			a := t.sim.Accepted()[0]
			firsts = append(firsts, a.Received.Sub(t.gw.started))
			taken = append(taken, a.Time.Sub(t.gw.started))
			return nil
		}()
		if err != nil {
			return err
		}
	}
	slices.Sort(firsts)
	slices.Sort(taken)
	r := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	s.row(len(firsts), r(firsts[0]), r(firsts[len(firsts)/2]), r(firsts[len(firsts)-1]), r(taken[len(taken)/2]))
	h.report.add(s)
	return nil
}
