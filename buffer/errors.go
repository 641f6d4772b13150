package buffer

import "errors"

// Sentinel errors. Callers test them with errors.Is.
var (
	// ErrLocked means another process (normally the running daemon) holds
	// the buffer file's lock.
	ErrLocked = errors.New("buffer file is locked by another process (is gatewayd already running?)")
	// ErrClosed is returned by methods called after Close.
	ErrClosed = errors.New("buffer is closed")
	// ErrBadRecord means a stored record could not be decoded.
	ErrBadRecord = errors.New("bad record")
	// ErrCorrupt means the buffer file failed its consistency check.
	ErrCorrupt = errors.New("buffer file is corrupt")
	// ErrUncommitted is returned by Close when readings could not be
	// committed before its deadline; they are lost.
	ErrUncommitted = errors.New("readings left uncommitted")
	// ErrBusy means Inspect found the file changing under every attempt
	// to read it.
	ErrBusy = errors.New("buffer file kept changing while being read; try again")
	// ErrBadSample means Append was given a sample it cannot store (too
	// many values, a measurement twice, a negative resolution).
	ErrBadSample = errors.New("bad sample")
	// ErrBadOptions means Options failed validation.
	ErrBadOptions = errors.New("invalid buffer options")
)
