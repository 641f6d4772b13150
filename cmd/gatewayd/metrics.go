package main

import (
	"time"

	"gatewayd/internal/health"
)

// collect writes the pipeline's metrics for /metrics.
func (p *pipeline) collect(w *health.MetricWriter) {
	w.Gauge("gatewayd_build_info", "Version of the running gatewayd.", 1, "version", version)
	if p.set != nil {
		for _, s := range p.set.Stats() {
			w.Counter("gatewayd_readings_taken_total", "Samples read, accepted and buffered, per sensor.", float64(s.Taken), "sensor", s.Name)
			w.Counter("gatewayd_readings_failed_total", "Failed sensor reads (bus error, absent chip, bad CRC), per sensor.", float64(s.Failed), "sensor", s.Name)
			w.Counter("gatewayd_readings_rejected_total", "Samples withheld as implausible or stuck, per sensor.", float64(s.Rejected), "sensor", s.Name)
			w.Gauge("gatewayd_sensor_stuck", "1 while the sensor's values have not changed for the stuck bound.", b2f(s.Stuck), "sensor", s.Name)
			w.Counter("gatewayd_sensor_reinits_total", "Chip re-initialisations after failures.", float64(s.Reinits), "sensor", s.Name)
		}
	}
	if p.buf != nil {
		st := p.buf.Stats()
		w.Gauge("gatewayd_buffer_depth", "Readings waiting for acknowledgement.", float64(st.Depth))
		w.Gauge("gatewayd_buffer_bytes", "Size of the buffer file on disk.", float64(st.Bytes))
		w.Gauge("gatewayd_buffer_pending", "Readings not yet committed to disk.", float64(st.Pending))
		age := 0.0
		if !st.OldestUnsent.IsZero() {
			age = time.Since(st.OldestUnsent).Seconds()
		}
		w.Gauge("gatewayd_buffer_oldest_age_seconds", "Age of the oldest unsent reading.", age)
		w.Gauge("gatewayd_buffer_dead_letters", "Readings set aside because the platform will never accept them.", float64(st.DeadLetters))
		for reason, n := range st.Drops {
			w.Counter("gatewayd_buffer_drops_total", "Readings dropped by the buffer's bounds, by reason.", float64(n), "reason", reason)
		}
		w.Counter("gatewayd_buffer_commits_total", "Durable commits: journal windows and folds into the buffer file.", float64(st.Commits))
		w.Counter("gatewayd_buffer_salvaged_total", "Readings salvaged from damaged buffer files set aside.", float64(st.Salvaged))
		w.Counter("gatewayd_buffer_unrecoverable_total", "Readings of damaged buffer files that could not be salvaged.", float64(st.Unrecoverable))
		w.Gauge("gatewayd_buffer_aside_bytes", "Damaged buffer files kept aside (counted in max_size).", float64(st.AsideBytes))
	}
	if p.up != nil {
		st := p.up.Stats()
		w.Gauge("gatewayd_connected", "1 while connected to the platform or broker.", b2f(st.Connected))
		w.Counter("gatewayd_messages_sent_total", "Messages published.", float64(st.Sent))
		w.Counter("gatewayd_readings_acked_total", "Readings acknowledged by the platform or broker.", float64(st.Acked))
		w.Counter("gatewayd_readings_dead_lettered_total", "Readings the platform refused for good.", float64(st.DeadLettered))
		w.Counter("gatewayd_throttled_total", "Throttling replies (429) from the platform.", float64(st.Throttled))
		w.Counter("gatewayd_connect_failures_total", "Failed connection attempts.", float64(st.ConnectFailures))
		last := 0.0
		if !st.LastAck.IsZero() {
			last = float64(st.LastAck.UnixNano()) / 1e9
		}
		w.Gauge("gatewayd_last_ack_timestamp_seconds", "When the platform last acknowledged a reading (Unix time).", last)
	}
	if p.clk != nil {
		w.Gauge("gatewayd_clock_synced", "1 when the wall clock is known to be right.", b2f(p.clk.Synced()))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
