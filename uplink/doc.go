// Package uplink sends buffered samples to the Alibaba Cloud IoT Platform
// (Alink thing model over MQTT 3.1.1) or to any plain MQTT broker, and
// deletes a value from the buffer only once the far end acknowledged it.
//
// # Basics
//
// New validates an Options value; Run connects (capped exponential backoff
// with full jitter), drains a reading.Source until its context ends, and
// disconnects cleanly. One goroutine — the send loop inside Run — owns all
// sending state (the samples it took, the messages in flight, retry
// pauses) and makes every Source call; the paho callbacks only hand inbound
// messages to it over channels, so no buffer call ever runs on paho's
// router goroutine. FixTime, the packer and the platform only return
// verdicts.
//
// A sample (one sensor read) is taken whole; its values travel as items
// addressed by (sample ID, measurement). Live samples wait up to
// Options.MaxDelay for the rest of their sampling round, then go out in as
// few messages as the platform allows: a property post when every property
// appears once, a batch post otherwise (history post when older than
// HistoryAge), at most 200 values and MaxMessageBytes per message. Values
// are written at their resolution (reading.Format).
//
// Everything that differs between the platform and a plain broker (topics,
// encoding, ack by reply or by PUBACK, reply classification, NTP) sits
// behind the internal platform interface, implemented by alink and
// plainMQTT.
//
// On the platform a message is acknowledged (one reading.Source.Ack call
// per message) only when the *_reply with the message's id says code 200.
// Codes that can never succeed (460, 6106, 6203, script errors
// 26001..26010) refuse a message, not a value: such a message is halved and
// the halves resent until the refused values stand alone, and only those
// values are dead-lettered (reading.Source.DeadLetter, with the code and
// message as the reason). Everything else (429, 500, unknown codes,
// timeouts, a lost connection) releases the samples to be sent again after
// a backoff pause, once no other message carries them; a 429 also halves
// the sending rate, which then creeps back up on success. Posts go at QoS 0
// by default (Options.PostQoS): the reply is the acknowledgement, a PUBACK
// would be one more packet and wake-up per message. On a plain broker the
// PUBACK of a QoS 1 publish is the acknowledgement.
//
// MaxMessagesPerSecond is at most N messages in any sliding window (1 s
// plus a 100 ms guard for delays on the way), evenly paced (no two closer
// than the window/N), counting everything the device publishes: posts, NTP
// requests and downlink replies.
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
// did not hear back): duplicates are possible for values in flight at a
// disconnect, never for acknowledged ones. Every message carries the sample
// times, so a duplicate is recognisable.
//
// This package must never import sensors/ or buffer/: it sees samples only
// through internal/reading, and downlink commands only through Control.
package uplink
