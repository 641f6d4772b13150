// Package health tells systemd and people whether the gatewayd pipeline is
// alive.
//
// # Basics
//
// Each long-running loop (sensor sampling, uplink) calls Beat with its name
// at least once per bound, including while it has nothing to do: a loop that
// waits on a channel must also wake on a ticker to beat. The pipeline is
// alive only while every registered loop has beaten within its bound.
//
// Run talks to systemd's notify socket: READY=1 once, WATCHDOG=1 at half the
// WatchdogSec interval but only while the pipeline is alive, STATUS= with the
// reason when it is not, and STOPPING=1 when its context ends. So a wedged
// uplink loop stops the watchdog being fed and systemd restarts the daemon.
//
// Serve answers /healthz (200, or 503 with the reason) and /metrics in the
// Prometheus text exposition format, written by hand: the daemon passes a
// Collector that writes its counters and gauges through a MetricWriter.
//
// # Caveats
//
// This package must never decide the pipeline is healthy by itself: no
// registered loop means nothing is checked, so cmd/gatewayd must Register
// every loop it starts. The HTTP server must stay on loopback unless the
// operator says otherwise; it exposes no secrets and accepts no input.
package health
