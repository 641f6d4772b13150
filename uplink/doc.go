// Package uplink sends buffered readings to the Alibaba Cloud IoT Platform
// (Alink thing model over MQTT 3.1.1) or to any plain MQTT broker, and
// deletes a reading from the buffer only once the far end acknowledged it.
//
// # Basics
//
// New validates an Options value; Run connects (capped exponential backoff
// with full jitter), drains a reading.Source until its context ends, and
// disconnects cleanly. One goroutine — the send loop inside Run — owns all
// sending state (the in-flight table, the token bucket, retry pauses); the
// paho callbacks only hand inbound messages to it over channels, so no
// buffer call ever runs on paho's router goroutine.
//
// On the platform a reading is acknowledged (reading.Source.Ack) only when
// the *_reply with the message's id says code 200; codes that can never
// succeed (460, 6106, script errors) dead-letter exactly the readings of that
// message; everything else (429, 500, timeouts, a lost connection) releases
// them to be sent again later. On a plain broker the PUBACK of a QoS 1
// publish is the acknowledgement.
//
// # Caveats
//
// A message whose reply was lost may be sent twice (the platform saw it, we
// did not hear back): duplicates are possible for readings in flight at a
// disconnect, never for acknowledged ones. Every message carries the reading
// times, so a duplicate is recognisable.
//
// This package must never import sensors/ or buffer/: it sees readings only
// through internal/reading, and downlink commands only through Control.
package uplink
