package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"gatewayd/internal/reading"
	"gatewayd/sensors"
	"gatewayd/uplink"
)

// control lets the platform's downlink act on the sensor loops.
type control struct {
	set *sensors.Set
	// configured is each sensor's interval from the config file.
	configured map[string]time.Duration
	// saved persists platform-set intervals across restarts (nil: not kept).
	saved *intervalStore
	// sink and stamp echo an applied interval back as a reading of
	// "<sensor>_interval", so the platform's device shadow shows what runs.
	sink  reading.Sink
	stamp func() reading.Stamp
	log   *slog.Logger
}

// SetInterval applies an interval set from the platform (a property set or
// a control command). It is bounded per chip: never below the chip's
// conversion time, never below platformMinInterval.
func (c control) SetInterval(sensor string, d time.Duration) error {
	conv, ok := c.set.MinInterval(sensor)
	if !ok {
		return fmt.Errorf("no sensor %q", sensor)
	}
	low := max(conv, platformMinInterval)
	if d < low {
		return fmt.Errorf("interval %s for sensor %s is below %s (the shortest the platform may set for this chip)", d, sensor, low)
	}
	if d > platformMaxInterval {
		return fmt.Errorf("interval %s for sensor %s is above %s", d, sensor, platformMaxInterval)
	}
	if err := c.set.SetInterval(sensor, d); err != nil {
		return err
	}
	if c.saved != nil {
		if err := c.saved.put(sensor, d, c.configured[sensor]); err != nil && c.log != nil {
			c.log.Warn("platform-set interval applied but not saved; a restart returns to the config file's", "sensor", sensor, "err", err)
		}
	}
	c.echo(sensor, d)
	return nil
}

// echo posts the applied interval like any reading: buffered, so it reaches
// the platform's device shadow even if the link drops right now.
func (c control) echo(sensor string, d time.Duration) {
	if c.sink == nil || c.stamp == nil {
		return
	}
	r := reading.Reading{Sensor: sensor, Measurement: "interval", Property: sensor + uplink.IntervalSuffix, Value: d.Seconds(), Unit: "s"}
	r.SetStamp(c.stamp())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.sink.Append(ctx, []reading.Reading{r}); err != nil && c.log != nil {
		c.log.Warn("could not echo the applied interval to the platform", "sensor", sensor, "err", err)
	}
}

func (c control) Interval(sensor string) (time.Duration, bool) { return c.set.Interval(sensor) }

// ReadNow reads every sensor once; the readings are reported, not buffered.
func (c control) ReadNow(ctx context.Context) ([]reading.Reading, error) {
	var out []reading.Reading
	var failed []string
	for _, r := range c.set.ReadOnce(ctx) {
		if r.Err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", r.Sensor, r.Err))
			continue
		}
		out = append(out, r.Readings...)
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
