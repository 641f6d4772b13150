package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var builds sync.Map // package path -> *buildResult

type buildResult struct {
	once sync.Once
	path string
	out  []byte
	err  error
}

// Build compiles a main package of this module (e.g. "./cmd/gatewayd") once
// per test process and returns the binary's path. Tests that need a real
// process (signals, SIGKILL, qemu) use it.
func Build(tb testing.TB, pkg string) string {
	tb.Helper()
	v, _ := builds.LoadOrStore(pkg, &buildResult{})
	br := v.(*buildResult)
	br.once.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			br.err = err
			return
		}
		dir, err := os.MkdirTemp("", "gatewayd-testbin-")
		if err != nil {
			br.err = err
			return
		}
		br.path = filepath.Join(dir, filepath.Base(pkg))
		cmd := exec.Command("go", "build", "-o", br.path, pkg)
		cmd.Dir = root
		br.out, br.err = cmd.CombinedOutput()
	})
	if br.err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, br.err, br.out)
	}
	return br.path
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}
