package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"gatewayd/sensors"
)

// platformMinInterval is the shortest sampling interval the platform (a
// property set or a control command) may set, whatever the chip: a typo in
// a cloud console must not turn a gateway into a busy loop that floods the
// buffer, the card and the user's message bill.
const platformMinInterval = time.Second

// platformMaxInterval matches the config file's upper bound.
const platformMaxInterval = 24 * time.Hour

// intervalsFile keeps the intervals set from the platform, beside the buffer
// (the service's StateDirectory), so they survive a restart.
const intervalsFile = "intervals.json"

// savedInterval is one sensor's interval as set from the platform, with the
// interval the config file had then: when the file's interval changes, the
// file wins again (the technician on site edited it after the platform did).
type savedInterval struct {
	Interval string `json:"interval"`
	Config   string `json:"config"`
}

// intervalStore persists platform-set intervals. Writes are rare (one per
// platform set), small, and atomic: temp file, fsync, rename, fsync dir.
type intervalStore struct {
	path string
	mu   sync.Mutex
	m    map[string]savedInterval
}

func loadIntervals(path string) (*intervalStore, error) {
	st := &intervalStore{path: path, m: map[string]savedInterval{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &st.m); err != nil {
		st.m = map[string]savedInterval{}
		return st, fmt.Errorf("%s is damaged (%v); the config file's intervals apply", path, err)
	}
	return st, nil
}

func (st *intervalStore) put(sensor string, d, config time.Duration) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.m[sensor] = savedInterval{Interval: d.String(), Config: config.String()}
	return st.saveLocked()
}

func (st *intervalStore) saveLocked() error {
	b, err := json.MarshalIndent(st.m, "", "  ")
	if err != nil {
		return err
	}
	tmp := st.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, st.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("save %s: %w", st.path, err)
	}
	if d, err := os.Open(filepath.Dir(st.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// apply sets every saved interval whose config interval still matches the
// running config (configured holds each sensor's interval from the file), and
// forgets the others: a sensor gone from the file, or one whose interval the
// file changed since the platform set it.
func (st *intervalStore) apply(set *sensors.Set, configured map[string]time.Duration, log *slog.Logger) {
	st.mu.Lock()
	defer st.mu.Unlock()
	changed := false
	for name, sv := range st.m {
		cfg, ok := configured[name]
		d, err := time.ParseDuration(sv.Interval)
		switch {
		case !ok:
			log.Info("dropping a platform-set interval: the sensor is no longer configured", "sensor", name)
		case sv.Config != cfg.String():
			log.Info("the config file changed this sensor's interval since the platform set it; the file's applies",
				"sensor", name, "platform_interval", sv.Interval, "config_interval", cfg)
		case err != nil || d < platformMinInterval || d > platformMaxInterval:
			log.Warn("ignoring a saved interval out of bounds", "sensor", name, "interval", sv.Interval)
		default:
			if err := set.SetInterval(name, d); err == nil {
				log.Info("sampling interval set by the platform kept across the restart", "sensor", name, "interval", d)
				continue
			}
		}
		delete(st.m, name)
		changed = true
	}
	if changed {
		if err := st.saveLocked(); err != nil {
			log.Warn("could not save the platform-set intervals", "err", err)
		}
	}
}
