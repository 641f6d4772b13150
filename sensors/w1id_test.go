package sensors

import (
	"regexp"
	"testing"
)

func TestIsW1IDAsRegexp(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{2}-[0-9a-f]{12}$`)
	for _, s := range []string{"28-0316a2795aff", "28-0316A2795aff", "28_0316a2795aff", "28-0316a2795af", "28-0316a2795affe",
		"2g-0316a2795aff", "-280316a2795aff", "", "28-", "ff-ffffffffffff", "00-000000000000", "28-0316a2795afg"} {
		if got, want := isW1ID(s), re.MatchString(s); got != want {
			t.Errorf("isW1ID(%q) = %v, want %v", s, got, want)
		}
	}
}
