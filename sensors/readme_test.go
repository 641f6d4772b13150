package sensors

import (
	"os"
	"strings"
	"testing"
)

// The README's chip table is what technicians configure from: every driver
// and every option it accepts must be in it.
func TestREADMEListsDriversAndOptions(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, name := range DriverNames() {
		if !strings.Contains(readme, "| `"+name+"` |") {
			t.Errorf("README lacks driver %s", name)
		}
		if _, res, ok := strings.Cut(readme, "## Resolution"); !ok || !strings.Contains(res, "| `"+name+"` | ") || !strings.Contains(res, "<measurement>_resolution") {
			t.Errorf("README's Resolution section lacks %s or the resolution option", name)
		}
		for opt := range drivers[name].options {
			if !strings.Contains(readme, "`"+opt+"`") {
				t.Errorf("README lacks option %s of %s", opt, name)
			}
		}
	}
}
