// Command powercut cuts the power under the real gatewayd, again and again,
// and accounts for every reading by identity. `make powercut` runs it (see
// deploy/powercut.mk and deploy/README.md).
//
// gatewayd runs as built, with emulated BME280s and its buffer on LazyFS, a
// FUSE file system that keeps every write not yet fsynced in its own cache:
// kill -9 followed by LazyFS's clear-cache leaves the files as a power cut
// would. iotsim, the platform emulator, runs on 127.0.0.1 and prints one line
// per value it accepts. Cuts fall at seeded random points: with the platform
// down, during a backlog drain, just after a fold synced the bbolt file, and
// as torn writes (LazyFS torn-op and torn-seq on the journal and the bbolt
// file, which persist part of a write and stop the file system).
//
// The accounting reads only what outlives a change of the buffer's format or
// of the uplink's payload: iotsim's per-value lines (property and time taken:
// a reading's identity, whatever message carried it) and gatewayd's /metrics
// (readings taken per sensor, durable commits), scraped during each run. The
// readings a scrape counted are durable once two more commits completed
// (commits are serialised, so the second began after the scrape); those must
// be delivered by the end. A value accepted twice must have been acked in a
// run that was cut before the ack could be journaled.
//
// What it must never do: contact anything outside 127.0.0.0/8, leave a
// process or a mount behind (the wrapper's trap finishes the job if this
// program dies), or pass a run in which nothing was settled before a cut.
package main
