// Package iotsim is a local stand-in for the Alibaba Cloud IoT Platform's
// MQTT side, built on mochi-mqtt: tests start it in-process on loopback
// ports, and cmd/iotsim wraps it for the demo.
//
// It checks what the real platform checks — the signed CONNECT (clientId
// format, username "dn&pk", HMAC password per signmethod, keepalive
// 30..1200 s), the Alink JSON of property, batch and history posts (numeric
// string ids, at most 200 properties, times within 24 h for posts, floats
// with a decimal point), the 256 KB packet limit (silently dropped) — and
// answers *_reply like the platform. Tests can inject reply codes, an
// outage, a per-device rate limit (429: a token bucket, or a sliding
// one-second window that counts everything a device publishes, at
// arrival), property sets, NTP and control messages. It counts messages,
// values and samples (Counts, Message.Values/Samples) and prints one line
// per accepted value, oldest first.
//
// It is a development tool: it must never be needed by the product, and it
// keeps everything in memory.
package iotsim
