// Package clock dates samples so that their times can be trusted, on boards
// that have no real-time clock and boot with a wrong one.
//
// # Basics
//
// Every sample gets one Stamp, shared by all its values: the wall time (UTC), the time since boot
// (CLOCK_BOOTTIME, which keeps counting whatever happens to the wall clock),
// the kernel's boot id and whether the wall clock was synchronised. "Synced"
// comes from adjtimex(2) read-only (modes = 0): the kernel clears STA_UNSYNC
// only once an NTP client (systemd-timesyncd, chrony, ntpd) has disciplined
// the clock, and we also require its maximum error to be small. That state is
// read at most once per SyncStateTTL (1 s) of CLOCK_BOOTTIME and reused, so
// stamping a sample costs no adjtimex (TestSyncStateCachedForASecond counts
// the calls); a sample stamped unsynced in the second after sync is re-dated
// like any other.
//
// When the system has no time service, the uplink can teach the clock the
// true time from the IoT platform's NTP-over-MQTT exchange through
// ObserveServerTime. The clock then keeps that time anchored to CLOCK_BOOTTIME
// and dates samples with it; it never sets the system clock (the daemon
// runs without CAP_SYS_TIME).
//
// # Correcting samples
//
// A sample taken before the clock was synchronised is re-dated once it is:
// the true time now minus how long ago (in CLOCK_BOOTTIME) the sample was
// taken. That only works within one boot, because CLOCK_BOOTTIME restarts at
// every boot. Check (on the sample's Stamp) tells the uplink what to do
// with each sample:
//
//   - Trusted: its Time is right (it was synced, or has just been corrected).
//   - Wait: taken in this boot before the clock was synchronised, and the
//     clock still is not; keep it buffered, it will be corrected later.
//   - Unknown: taken unsynchronised in an earlier boot that never learnt the
//     true time (or learnt it but left no anchor). Its time can never be
//     known. It must never be sent as if its time were right: dead-letter it
//     with a reason so it stays visible on the device but off the platform.
//
// When the clock becomes synchronised in a boot, it records an anchor (boot
// id, CLOCK_BOOTTIME, true wall time) in Options.StateDir. A sample taken
// unsynchronised in that boot can then still be corrected after a reboot,
// e.g. when the power failed before the backlog was sent.
//
// # Caveats
//
// This package must never set or step the system clock, and never block: it
// is called for every reading.
package clock
