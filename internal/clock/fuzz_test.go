package clock

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"gatewayd/internal/reading"
)

// The anchor file is read back from the SD card after a power cut: whatever
// it holds, New and Check must not fail, and a reading can only be dated
// from an anchor of its own boot.
func FuzzAnchors(f *testing.F) {
	f.Add([]byte(`[{"boot_id":"boot-a","mono_ns":60000000000,"wall":"2026-11-25T12:00:00Z"}]`), "boot-a", int64(10e9))
	f.Add([]byte(`[{"boot_id":"boot-a","mono_ns":6`), "boot-a", int64(10e9))
	f.Add([]byte(`[{"boot_id":"","mono_ns":-1,"wall":"1970-01-01T00:00:00Z"}]`), "", int64(-1))
	f.Add([]byte(`{}`), "boot-b", int64(0))
	f.Fuzz(func(t *testing.T, file []byte, bootID string, mono int64) {
		state := t.TempDir()
		if err := os.WriteFile(filepath.Join(state, anchorFile), file, 0o644); err != nil {
			t.Fatal(err)
		}
		k := newKernel(t)
		c := New(Options{BootIDPath: bootIDFile(t, "this-boot"), TimesyncFlagPath: "-", StateDir: state,
			Now: k.now, Boottime: k.boottime, Adjtimex: k.adjtimex, Logger: quiet()})
		r := reading.Stamp{Time: time.Unix(5, 0), Mono: time.Duration(mono), BootID: bootID}
		v := c.Check(&r)
		_, known := c.anchors[bootID]
		switch {
		case bootID == "this-boot":
			// Depends on the file only through a same-boot anchor.
		case v == Trusted && (!known || bootID == ""):
			t.Errorf("reading of boot %q trusted without an anchor of that boot", bootID)
		case v == Wait:
			t.Errorf("reading of another boot %q told to wait", bootID)
		case v != Trusted && r != (reading.Stamp{Time: time.Unix(5, 0), Mono: time.Duration(mono), BootID: bootID}):
			t.Errorf("untrusted reading modified: %+v", r)
		}
	})
}
