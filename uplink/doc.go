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
// the *_reply with the message's id says code 200. Codes that can never
// succeed (460, 6106, 6203, script errors 26001..26010) refuse a message,
// not a reading: such a message is halved and the halves resent until the
// refused readings stand alone, and only those are dead-lettered
// (reading.Source.DeadLetter, with the code and message as the reason).
// Everything else (429, 500, unknown codes, timeouts, a lost connection)
// releases the readings to be sent again after a backoff pause; a 429 also
// halves the sending rate, which then creeps back up on success. On a plain broker the PUBACK of a QoS 1
// publish is the acknowledgement.
//
// # Hostile input
//
// The dialed connection is wrapped by a guard that reads every inbound MQTT
// fixed header and drops the connection at the first packet announcing more
// than MaxInboundPacket, before paho allocates it. Downlink decoders refuse
// what they do not understand; NTP answers count only for the last request
// sent; the control topic never takes wildcards from the device name.
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
