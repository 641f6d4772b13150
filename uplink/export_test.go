package uplink

// SetBuiltinRootsForTest replaces the built-in trust anchors of platform
// "aliyun" (test binaries only) and returns a function that restores them.
// Tests that use it must not run in parallel with other uplink tests.
func SetBuiltinRootsForTest(pems ...[]byte) (restore func()) {
	old := builtinRootPEMs
	builtinRootPEMs = pems
	return func() { builtinRootPEMs = old }
}

// AliyunRootFile is the embedded ali_iot_ca.crt exactly as shipped.
func AliyunRootFile() []byte { return append([]byte(nil), aliyunIoTRootPEM...) }

// GlobalSignR1File is the embedded GlobalSign Root CA (R1).
func GlobalSignR1File() []byte { return append([]byte(nil), globalSignR1PEM...) }
