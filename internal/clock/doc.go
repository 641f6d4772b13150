// Package clock dates readings so that their times can be trusted, on boards
// that have no real-time clock and boot with a wrong one.
//
// # Basics
//
// Every reading gets a Stamp: the wall time (UTC), the time since boot
// (CLOCK_BOOTTIME, which keeps counting whatever happens to the wall clock),
// the kernel's boot id and whether the wall clock was synchronised. "Synced"
// comes from adjtimex(2) read-only (modes = 0): the kernel clears STA_UNSYNC
// only once an NTP client (systemd-timesyncd, chrony, ntpd) has disciplined
// the clock, and we also require its maximum error to be small.
//
// When the system has no time service, the uplink can teach the clock the
// true time from the IoT platform's NTP-over-MQTT exchange through
// ObserveServerTime. The clock then keeps that time anchored to CLOCK_BOOTTIME
// and dates readings with it; it never sets the system clock (the daemon
// runs without CAP_SYS_TIME).
//
// # Correcting readings
//
// A reading taken before the clock was synchronised is re-dated once it is:
// the true time now minus how long ago (in CLOCK_BOOTTIME) the reading was
// taken. That only works within one boot, because CLOCK_BOOTTIME restarts at
// every boot. Check tells the uplink what to do with each reading:
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
// id, CLOCK_BOOTTIME, true wall time) in Options.StateDir. A reading taken
// unsynchronised in that boot can then still be corrected after a reboot,
// e.g. when the power failed before the backlog was sent.
//
// # Caveats
//
// This package must never set or step the system clock, and never block: it
// is called for every reading.
package clock
