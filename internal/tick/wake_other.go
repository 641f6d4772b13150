//go:build !linux

package tick

func newSource() source { return newTimerSource() }
