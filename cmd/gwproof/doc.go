// Command gwproof is the proof harness of issue 7: one command that measures
// gatewayd against the alternatives (the seed's Node.js client, plain
// synchronous QoS 1 publishing, a fixed 1 s reconnect) and under faults, and
// prints the tables (also written as markdown, stamped with the machine).
//
//	go run ./cmd/gwproof -size full -out bench/results.md   # make proof
//	go run ./cmd/gwproof -size small                        # make proof-ci, < 3 min
//
// It drives real processes: the built gatewayd (bus = "emulated", the real
// periph drivers against emulated chips), mosquitto, node with the npm
// package mqtt@2.18.8 installed into a throwaway directory; iotsim runs in
// this process (the same internal/iotsim code cmd/iotsim wraps) so faults
// can be switched on and off. Where a fault cannot be injected into a real
// process without changing the machine (clock jumps, a sensor vanishing from
// the emulated bus), the pipeline's own packages are wired in this process
// exactly as cmd/gatewayd wires them, and the table says so.
//
// Every figure printed comes from a measurement made by this run: /proc of
// the measured processes, a subscriber counting what reached the broker,
// iotsim's record of accepted values, the buffer file, a TCP proxy counting
// connection attempts, or the output of the packages' own Go benchmarks and
// tests, which it runs. Every loop is bounded in count and time, every
// process it starts is stopped, and nothing but 127.0.0.1 is contacted
// (except npm's registry, once, to install the seed's client).
package main
