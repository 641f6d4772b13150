// Package field is how a layer's Options say what is wrong with them: each
// error names the option by its key in the configuration file's words
// ("keepalive", "max_size", "interval"), so the config package can point at
// the file and line in one place, and the layer alone owns its defaults and
// bounds. Like internal/reading it is tiny and imports nothing of ours.
package field

import (
	"fmt"
	"strings"
)

// Error is one invalid option.
type Error struct {
	Key string // the option's key within its section, e.g. "keepalive"
	Msg string // what is allowed, e.g. "must be between 30s and 1200s ..."
}

func (e Error) Error() string { return e.Key + ": " + e.Msg }

// Errors lists every invalid option of one Options value.
type Errors []Error

// Add appends an error for key.
func (es *Errors) Add(key, format string, args ...any) {
	*es = append(*es, Error{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// Err returns es as an error, or nil when empty.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}
