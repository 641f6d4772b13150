package main

import (
	"context"
	"fmt"
	"time"

	"gatewayd/internal/reading"
	"gatewayd/sensors"
)

// control lets the platform's downlink act on the sensor loops.
type control struct{ set *sensors.Set }

func (c control) SetInterval(sensor string, d time.Duration) error {
	return c.set.SetInterval(sensor, d)
}

func (c control) Interval(sensor string) (time.Duration, bool) { return c.set.Interval(sensor) }

// ReadNow reads every sensor once; the samples are reported, not buffered.
func (c control) ReadNow(ctx context.Context) ([]reading.Sample, error) {
	var out []reading.Sample
	var failed []string
	for _, r := range c.set.ReadOnce(ctx) {
		if r.Err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", r.Sensor, r.Err))
			continue
		}
		out = append(out, r.Sample)
	}
	if len(failed) > 0 {
		return out, fmt.Errorf("%d sensors failed: %v", len(failed), failed)
	}
	return out, nil
}

func (c control) Status() map[string]any {
	st := map[string]any{}
	for _, s := range c.set.Stats() {
		st[s.Name] = map[string]any{
			"driver": s.Driver, "taken": s.Taken, "failed": s.Failed, "rejected": s.Rejected,
			"stuck": s.Stuck, "last_error": s.LastErr, "last_ok": s.LastOK,
		}
	}
	return st
}
