package measure

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Target is one figure the issue asks for, what it must be, and what a run
// measured.
type Target struct {
	What  string  // "syscalls per reading at 10 readings/s"
	Limit float64 // the bound
	// AtLeast: the figure must be >= Limit; else it must be <= Limit.
	AtLeast bool
	Unit    string // printed after figures ("B", "MiB", "s", "" for a ratio)
	// Value is the measured figure; valid only when Measured.
	Value    float64
	Measured bool
	// Detail says how the figure came about (what was divided by what).
	Detail string
	// Why it was not measured (when !Measured).
	Missing string
	// How is the command that reproduces the figure.
	How string
}

// Set records a measured value with its detail.
func (t *Target) Set(v float64, detail string) {
	t.Value, t.Measured, t.Detail = v, true, detail
}

// Fail records why the figure could not be measured.
func (t *Target) Fail(why string) {
	t.Measured, t.Missing = false, why
}

// Met reports whether the measured figure keeps the bound; a figure not
// measured (or not a number) never meets it.
func (t Target) Met() bool {
	if !t.Measured || math.IsNaN(t.Value) || math.IsInf(t.Value, 0) {
		return false
	}
	if t.AtLeast {
		return t.Value >= t.Limit
	}
	return t.Value <= t.Limit
}

// Verdict is "met", "**not met**" or "**not measured**".
func (t Target) Verdict() string {
	switch {
	case !t.Measured:
		return "**not measured**"
	case t.Met():
		return "met"
	}
	return "**not met**"
}

// Bound prints the target, e.g. "≤ 12" or "≤ 10 MiB".
func (t Target) Bound() string {
	op := "≤"
	if t.AtLeast {
		op = "≥"
	}
	return strings.TrimSpace(op + " " + Num(t.Limit) + " " + t.Unit)
}

// Figure prints the measured value with its unit, or why there is none.
func (t Target) Figure() string {
	if !t.Measured {
		return "— (" + t.Missing + ")"
	}
	return strings.TrimSpace(Num(t.Value) + " " + t.Unit)
}

// Num prints a figure with as many significant digits as it deserves: at
// least 2, never a long float tail.
func Num(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return fmt.Sprint(v)
	case a == 0:
		return "0"
	case a >= 100:
		return strconv.FormatFloat(math.Round(v), 'f', -1, 64)
	case a >= 10:
		return trimZeros(strconv.FormatFloat(v, 'f', 1, 64))
	case a >= 0.1:
		return trimZeros(strconv.FormatFloat(v, 'f', 2, 64))
	}
	return strconv.FormatFloat(v, 'g', 2, 64)
}

func trimZeros(s string) string {
	if !strings.Contains(s, ".") {
		return s
	}
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// Ratio is a/b, or NaN when b is 0 (a ratio that cannot be formed must not
// pass a target).
func Ratio(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}
