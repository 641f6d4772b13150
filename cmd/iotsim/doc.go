// Command iotsim is a local stand-in for the Alibaba Cloud IoT Platform,
// for the demo and for trying a gateway without a cloud account: it
// verifies signed device logins, accepts Alink property, batch and history
// posts, answers them like the platform, and prints each accepted value as
// one line:
//
//	iotsim --tls 127.0.0.1:8883 --tcp 127.0.0.1:1883 --certs DIR --device PK:DN:SECRET
//	18:50:01 greenhouse-7 temperature=22.51 taken=18:50:00.812 id=67801234
//
// --certs DIR holds a throwaway CA and server certificate (generated there
// if absent); point the gateway's ca_file at DIR/iotsim-ca.pem. Ctrl-C or
// SIGTERM stops it cleanly. It must never be part of a deployment: it keeps
// everything in memory and trusts whoever holds a device triple it was
// given. --rate-window N answers 429 to posts beyond N messages in any
// sliding second (counting everything the device publishes), like a
// platform instance with that limit. The emulator itself lives in
// internal/iotsim.
package main
