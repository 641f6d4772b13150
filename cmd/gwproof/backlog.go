package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"time"

	"gatewayd/buffer"
	"gatewayd/cmd/gwproof/internal/measure"
	"gatewayd/internal/iotsim"
	"gatewayd/internal/reading"
)

// backlogBootID is the boot the generated backlog was sampled in.
const backlogBootID = "5f0c6a2e-8f41-4b9e-a7d3-0c2b9e61d4aa"

// bmeValues are one BME280 sample's values at the chip's resolution
// (0.01 °C, 0.01 %RH, 0.01 hPa), drifting slowly as real air does.
func bmeValues(sensor int, temp, hum, press float64) []reading.Value {
	p := sensorProps(sensor)
	return []reading.Value{
		{Measurement: "temperature", Property: p[0], Unit: "°C", Value: reading.Round(temp, 0.01), Resolution: 0.01},
		{Measurement: "humidity", Property: p[1], Unit: "%RH", Value: reading.Round(hum, 0.01), Resolution: 0.01},
		{Measurement: "pressure", Property: p[2], Unit: "hPa", Value: reading.Round(press, 0.01), Resolution: 0.01},
	}
}

// genBacklog writes days of three BME280s sampled every 10 s, ending at
// end, into a fresh buffer file at path, through the buffer's own Append
// (the way the sensor loops fill it during an outage), and returns the
// identity (property, time in ms) of every value written.
func genBacklog(ctx context.Context, path string, days int, end time.Time) (map[key]bool, error) {
	b, err := buffer.Open(buffer.Options{Path: path, CommitInterval: 10 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	rounds := days * 24 * 360
	start := end.Add(-time.Duration(rounds) * roundInterval)
	rng := rand.New(rand.NewPCG(11, uint64(days)))
	keys := make(map[key]bool, rounds*costSensors*readingsPerSample)
	temp, hum, press := []float64{21.5, 19.2, 23.8}, []float64{45, 52, 38}, []float64{1009.5, 1009.4, 1009.6}
	batch := make([]reading.Sample, 0, 360*costSensors)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := b.Append(ctx, batch); err != nil {
			return fmt.Errorf("append: %w", err)
		}
		batch = batch[:0]
		return nil
	}
	for r := 0; r < rounds; r++ {
		at := start.Add(time.Duration(r) * roundInterval)
		day := 2 * math.Pi * float64(r%8640) / 8640
		for s := 0; s < costSensors; s++ {
			temp[s] += rng.NormFloat64()*0.01 + 0.002*math.Sin(day)
			hum[s] = min(100, max(0, hum[s]+rng.NormFloat64()*0.02-0.004*math.Sin(day)))
			press[s] += rng.NormFloat64() * 0.01
			vs := bmeValues(s, temp[s], hum[s], press[s])
			for _, v := range vs {
				keys[key{v.Property, at.UnixMilli()}] = true
			}
			batch = append(batch, reading.Sample{Sensor: fmt.Sprintf("s%d", s), Values: vs,
				Stamp: reading.Stamp{Time: at.UTC(), Mono: time.Duration(r) * roundInterval, BootID: backlogBootID, Synced: true}})
		}
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				b.Close(ctx)
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		b.Close(ctx)
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := b.Close(cctx); err != nil {
		return nil, fmt.Errorf("close: %w", err)
	}
	return keys, nil
}

const cmdBacklog = "go run ./cmd/gwproof -only backlog"

// backlog starts gatewayd on a generated backlog (the week: three
// BME280s at 10 s, 544,320 values) against an iotsim that allows N+1
// messages in any sliding second, N the default max_messages_per_second
// (20): how long until every value of the backlog is accepted, and how many
// 429s on the way.
func (h *harness) backlog() error {
	bz := h.sz.Cost
	n := 20 // uplink's default max_messages_per_second
	days := bz.BacklogDays
	values := days * 24 * 360 * costSensors * readingsPerSample
	tDrain := h.report.target("a week's backlog (544,320 values) drained at the default 20 messages/s", (5 * time.Minute).Seconds(), "s", cmdBacklog)
	t429 := h.report.target(fmt.Sprintf("429 answers over the backlog's drain (iotsim allows %d per sliding second, default `max_messages_per_second = %d`)", n+1, n), 0, "", cmdBacklog)
	s := &section{
		title: fmt.Sprintf("A backlog drained at the platform's pace: %d day(s) of three BME280s at 10 s (%d values)", days, values),
		method: fmt.Sprintf("The backlog is generated into a fresh buffer file through the buffer's own Append (stamps from %d day(s) ago up to the start, "+
			"synced, values at the BME280's 0.01 resolution drifting like room air). Then gatewayd starts on it (3 emulated BME280s at 10 s, aliyun over TLS, "+
			"every setting at its default: `max_messages_per_second` = %d) against iotsim set to answer 429 to posts beyond %d messages in any sliding "+
			"second, counting everything the device publishes. Drain time = from exec of gatewayd to iotsim accepting the backlog's last value; "+
			"every generated value is looked up by its identity (property, time) among the accepted ones.", days, n, n+1),
		head: []string{"backlog", "values", "drain time", "values accepted", "missing", "duplicates", "posts", "values per post", "429 answers", "busiest sliding second"},
	}
	h.report.add(s)
	if days != 7 {
		s.notes = append(s.notes, fmt.Sprintf("small run: %d day(s) instead of a week; the week's drain time is this drain time × %s (the drain is paced by messages, "+
			"so it scales with the backlog) and is compared with the issue's 5 min", days, measure.Num(7/float64(days))))
	}
	t, err := h.newSimTrialOpts("backlog", func(o *iotsim.Options) { o.RateWindow = n + 1 }, func(c *gwConfig) {
		c.Device, c.Interval, c.Commit = "gw-backlog", roundInterval, 0
	})
	if err != nil {
		tDrain.Fail(err.Error())
		return err
	}
	defer t.abort()
	genStart := time.Now()
	keys, err := genBacklog(h.ctx, t.conf.Buffer, days, genStart)
	if err != nil {
		tDrain.Fail(err.Error())
		return fmt.Errorf("generate the backlog: %w", err)
	}
	fi, err := os.Stat(t.conf.Buffer)
	if err != nil {
		return fmt.Errorf("backlog file: %w", err)
	}
	h.log.Info("backlog generated", "values", len(keys), "bytes", fi.Size(), "took", time.Since(genStart).Round(time.Second))
	if err := t.start(); err != nil {
		tDrain.Fail(err.Error())
		return err
	}
	// Drained when the oldest unsent sample is live again; then the exact
	// end is read from iotsim: the arrival of the backlog's last value.
	_, ok := t.drained(bz.DrainBound)
	msgs := t.sim.Messages()
	acc := t.sim.Accepted()
	counts := t.sim.Counts()
	got := map[key]int{}
	var last time.Time
	for _, a := range acc {
		k := key{a.Property, a.Time.UnixMilli()}
		if !keys[k] {
			continue // a live value
		}
		got[k]++
		if a.Received.After(last) {
			last = a.Received
		}
	}
	dups := 0
	for _, c := range got {
		dups += c - 1
	}
	missing := len(keys) - len(got)
	posts, throttled := 0, 0
	var times []time.Time
	for _, m := range msgs {
		times = append(times, m.Received)
		if m.Kind == "history" || m.Kind == "batch" || m.Kind == "post" {
			posts++
		}
		if m.Code == 429 {
			throttled++
		}
	}
	busiest, from := measure.BusiestSecond(times, time.Second)
	took := last.Sub(t.gw.started)
	drain := took.Round(100 * time.Millisecond).String()
	if missing > 0 || !ok {
		drain = fmt.Sprintf("**not drained** within %v (%d values missing)", bz.DrainBound, missing)
		tDrain.Fail(drain)
	} else {
		week := took.Seconds() * 7 / float64(days)
		tDrain.Set(week, fmt.Sprintf("%d values (%d day(s)) drained in %v from exec, %d posts, %s values per post", len(keys), days,
			took.Round(100*time.Millisecond), posts, measure.Num(float64(len(got))/float64(max(posts, 1)))))
	}
	detail := fmt.Sprintf("%d posts; busiest sliding second at iotsim %d publishes (%d posts); %d publishes beyond the window",
		posts, counts.PeakWindow, busiest, counts.OverWindow)
	if busiest > n {
		// How the window filled: an even spread, or a burst after a stall
		// somewhere between the device's pacing and iotsim's arrival stamp.
		detail += "; arrivals in the busiest second (ms after the first): " + measure.Millis(measure.Within(times, from, time.Second))
	}
	t429.Set(float64(throttled), detail)
	s.row(fmt.Sprintf("%d day(s)", days), len(keys), drain, len(got), missing, dups, posts, measure.Num(float64(len(got))/float64(max(posts, 1))), throttled,
		fmt.Sprintf("%d publishes (%d posts)", counts.PeakWindow, busiest))
	return t.close()
}
