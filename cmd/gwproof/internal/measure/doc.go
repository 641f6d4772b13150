// Package measure holds gwproof's measuring instruments, apart from anything
// they measure so they can be tested on their own: CPU time and memory of a
// running process from /proc, syscall counts from `strace -c -f`, samples and
// messages counted from what a platform emulator received, the busiest
// sliding second of a message stream, and the report of a figure against its
// target (met / not met / not measured).
//
// It imports nothing from gatewayd: it reads /proc and runs strace, and
// otherwise works on plain values the harness hands it.
package measure
