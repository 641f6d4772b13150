// Package buffer is gatewayd's store-and-forward queue: the one place a
// reading waits between the sensor loops (reading.Sink) and the uplink
// (reading.Source). It keeps readings in a bbolt file so that nothing
// committed is lost while the network is down, the board reboots or the
// power is cut.
//
// # Basics
//
// Open a Buffer with Options, Append readings (IDs are assigned and written
// back into the slice), Take batches for sending, then Ack what the platform
// accepted, Release what failed to send, or DeadLetter what it will never
// accept. Close(ctx) commits what is pending and closes the file.
//
// Writes are group-committed: appends, acks and dead letters collect in
// memory and become durable together every CommitInterval, or sooner when
// CommitSize changes are pending, as one append to a small preallocated
// journal beside the bbolt file (one 4 KiB page of the card); every few
// minutes the journal is folded into bbolt in one transaction. A power cut
// loses at most that window. Take hands readings out at once, committed or
// not, and a reading acked before its commit is never written at all, so
// while the link is up the SD card sees almost no writes.
//
// Delivery is at least once. A reading leaves only by Ack or DeadLetter; its
// ID is unique, increases in append order, goes out with the reading and is
// never reused, also not after a restart, a clock jump or a corrupt file.
// After a crash the readings that were in flight, and those acked within the
// last window, are handed out again under the same ID.
//
// The file is bounded by MaxSize (bbolt's own cap keeps the file under it;
// the WhenFull policy drops before that) and MaxAge. Every drop is counted
// in Stats.Drops by reason and logged, rate-limited. An I/O error at open
// (EIO from the card, ...) is retried with backoff, never taken for damage.
// A file proven corrupt or truncated is renamed aside with a timestamp, a
// fresh one started, and the readings on its intact pages salvaged into it;
// set-aside files count against MaxSize. A full disk drops by policy and
// recovers when space returns.
//
// Inspect and Export read a file without writing it, for the CLI. Inspect
// takes no lock and works while the daemon runs; Export needs the file to
// itself and fails at once with ErrLocked while the daemon runs.
//
// # Caveats
//
// The package must never: import sensors/ or uplink/; exit the process or
// panic; write to the card for a reading that was acked in time; hand out a
// reading twice while it is in flight; let a read-only tool block or delay
// the daemon.
//
// Only readings whose clock was synchronised (Reading.Synced) age out by
// MaxAge: an unsynced Time may be 1970, and age by it would drop everything.
// Those readings are bounded by MaxSize alone.
//
// Values stored by bbolt are only valid inside their transaction; every
// decoder here copies what it keeps.
package buffer
