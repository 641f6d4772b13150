// Package buffer is gatewayd's store-and-forward queue: the one place a
// sample (one sensor read: a stamp and its values) waits between the sensor
// loops (reading.Sink) and the uplink (reading.Source). It keeps samples in
// a bbolt file so that nothing committed is lost while the network is down,
// the board reboots or the power is cut.
//
// # Basics
//
// Open a Buffer with Options, Append samples (one ID per sample is assigned
// and written back into the slice), Take whole samples for sending (up to a
// number of values), then Ack what the platform accepted, Release what
// failed to send, or DeadLetter what it will never accept. Acks and dead
// letters take Refs: a whole sample, or one value of it (sample ID,
// measurement), so a platform that refuses a single property costs only
// that value. A sample leaves when it has no values left. The uplink calls
// Ack once per acknowledged message; Stats counts messages per reading.
// Close(ctx) commits what is pending and closes the file.
//
// Writes are group-committed: appends, acks and dead letters collect in
// memory and become durable together every CommitInterval, or sooner when
// CommitSize changes are pending, as one append to a small preallocated
// journal beside the bbolt file (one 4 KiB page of the card); every few
// minutes the journal is folded into bbolt in one transaction. A power cut
// loses at most that window. Take hands samples out at once, committed or
// not, and a value acked before its commit is never written at all, so
// while the link is up the SD card sees no writes.
//
// # The ledger
//
// The buffer's bookkeeping is one in-memory ledger (ledger.go): one entry
// per sample it holds in memory, with a mask per copy of which values are
// live (not acked or dead-lettered), durable (what a restart would bring
// back) and filed (what the bbolt record holds), plus in flight and busy
// (carried by the running commit). A journal window and a fold are diffs
// between a copy and what is live; a batch records the masks it wrote, and
// a failed commit has nothing to undo. Stats derives its depth from the
// ledger and the file's counts; Take reads bbolt only when the file holds
// samples the ledger does not (a backlog).
//
// # Storage
//
// One record per sample (record v2, record.go): names (sensor, boot id,
// measurement schema with property, unit and resolution) are indices into a
// dictionary kept in the file; the time is coded as its drift from the
// boot's clock; values are varints in steps of their Resolution (full
// float64 when it is 0). About 17 bytes per stored value for BME280s, so 30
// days of three sensors at 10 s fit the default 64 MiB. Files written by the
// release before samples (record v1) are read and drained; DecodeRecord
// decodes any stored record for tools that read damaged files.
//
// Delivery is at least once. A value leaves only by Ack or DeadLetter; a
// sample's ID is unique, increases in append order, goes out with the sample
// and is never reused, also not after a restart, a clock jump or a corrupt
// file. After a crash the samples that were in flight, and values acked
// within the last window, are handed out again under the same ID.
//
// The file is bounded by MaxSize (bbolt's own cap keeps the file under it;
// the WhenFull policy drops before that) and MaxAge. Every drop is counted
// in Stats.Drops by reason and logged, rate-limited. An I/O error at open
// (EIO from the card, ...) is retried with backoff, never taken for damage.
// A file proven corrupt or truncated is renamed aside with a timestamp, a
// fresh one started, and the samples on its intact pages salvaged into it
// (records of either version, through the damaged file's dictionary);
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
// panic; write to the card for a value that was acked in time; hand out a
// sample twice while it is in flight; let a read-only tool block or delay
// the daemon.
//
// Values are stored at their Resolution: Append rounds them, and Take hands
// out the rounded value (the same before and after a restart).
//
// Only samples whose clock was synchronised (Stamp.Synced) age out by
// MaxAge: an unsynced Time may be 1970, and age by it would drop everything.
// Those samples are bounded by MaxSize alone.
//
// Values stored by bbolt are only valid inside their transaction; every
// decoder here copies what it keeps.
package buffer
