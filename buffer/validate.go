package buffer

import (
	"time"

	"gatewayd/internal/field"
)

// The bounds and defaults of a configured buffer. Open itself accepts any
// non-negative values it can run with (tests use hour-long windows); these
// are what a gateway's configuration may ask for, and Validate checks them.
const (
	DefaultPath           = "/var/lib/gatewayd/buffer.db"
	DefaultMaxSize        = 64 << 20
	MinMaxSize            = minMaxSize
	DefaultMaxAge         = 30 * 24 * time.Hour
	MinMaxAge             = time.Minute
	DefaultCommitInterval = 10 * time.Second
	// MaxCommitInterval bounds what a power cut may lose.
	MaxCommitInterval = 10 * time.Minute
)

// Validate reports every option a configuration must not set, keyed as the
// config file's [buffer] section names them. Zero values mean the defaults
// above (CommitInterval 0 means "commit every sample": the config package
// passes DefaultCommitInterval when the key is absent).
func (o Options) Validate() field.Errors {
	var errs field.Errors
	if o.Path == "" {
		errs.Add("path", "required")
	}
	if o.MaxSize != 0 && o.MaxSize < MinMaxSize {
		errs.Add("max_size", "must be at least %dKiB (the journal and the file's pages need it), not %d bytes", MinMaxSize>>10, o.MaxSize)
	}
	if o.MaxAge != 0 && o.MaxAge < MinMaxAge {
		errs.Add("max_age", "must be at least %s, not %s", MinMaxAge, o.MaxAge)
	}
	switch o.WhenFull {
	case "", DropOldest, DropNewest:
	default:
		errs.Add("when_full", "must be %q or %q, not %q", DropOldest, DropNewest, o.WhenFull)
	}
	if ci := o.CommitInterval; ci < 0 || ci > MaxCommitInterval {
		errs.Add("commit_interval", "must be between 0s (commit every sample) and %s, not %s", MaxCommitInterval, ci)
	}
	if o.DeadLetterMaxAge > 0 && o.DeadLetterMaxAge < time.Hour {
		errs.Add("dead_letter_max_age", "must be at least 1h (or negative: unbounded), not %s", o.DeadLetterMaxAge)
	}
	if o.DeadLetterMaxBytes > 0 && o.DeadLetterMaxBytes < 64<<10 {
		errs.Add("dead_letter_max_bytes", "must be at least 64KiB (or negative: unbounded), not %d bytes", o.DeadLetterMaxBytes)
	}
	return errs
}
