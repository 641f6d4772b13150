package main

import (
	"testing"
	"time"

	"gatewayd/internal/iotsim"
)

// The reference client is measured as a client doing gatewayd's round, so
// it must be one: it signs in with the device triple, and every round the
// platform emulator accepts its nine values (three samples) under a new
// message id and a new stamp, and answers (run fails on a missing or wrong
// reply).
func TestFloorPostsWhatThePlatformAccepts(t *testing.T) {
	const pk, dn, secret = "a1floorPK01", "floor-1", "floor-secret"
	sim, err := iotsim.Start(iotsim.Options{TCPAddr: "127.0.0.1:0", Devices: []iotsim.Device{{ProductKey: pk, DeviceName: dn, DeviceSecret: secret}}})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	const rounds = 4
	done := make(chan error, 1)
	go func() { done <- run(sim.TCPAddr(), pk, dn, secret, 50*time.Millisecond, rounds) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("4 rounds at 50 ms did not end within 10 s")
	}
	ids, stamps := map[string]int{}, map[time.Time]int{}
	for _, a := range sim.Accepted() {
		ids[a.MsgID]++
		stamps[a.Time]++
	}
	if len(ids) != rounds || len(stamps) != rounds {
		t.Fatalf("accepted values under %d ids and %d stamps, want %d of each: %v", len(ids), len(stamps), rounds, ids)
	}
	for id, n := range ids {
		if n != 9 {
			t.Fatalf("message %s: %d values accepted, want 9", id, n)
		}
	}
	for _, m := range sim.Messages() {
		if m.Code != 200 || m.Values != 9 || m.QoS != 0 {
			t.Fatalf("message %+v: want code 200, 9 values, QoS 0 (as gatewayd posts)", m)
		}
	}
}
