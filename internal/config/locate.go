package config

import (
	"fmt"
	"strings"
)

// locator maps keys to the line they were written on, so that a value that
// parses but is wrong (out of range, unknown) can still be reported as
// file:line:key. The TOML decoder keeps positions to itself, so this reads
// the file's structure again: table headers, array-of-table headers and
// "key = value" lines. Keys are recorded both with array indexes
// ("sensor[1].interval") and without ("sensor.interval", first occurrence),
// the form the decoder uses for unknown keys.
type locator struct {
	lines map[string]int
}

func newLocator(src string) *locator {
	l := &locator{lines: map[string]int{}}
	arrays := map[string]int{} // array-of-tables name -> count so far
	var table, plain string    // current table, with and without indexes
	inMulti := ""
	for i, raw := range strings.Split(src, "\n") {
		n := i + 1
		line := strings.TrimSpace(raw)
		if inMulti != "" {
			if strings.Contains(line, inMulti) {
				inMulti = ""
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		if strings.HasPrefix(line, "[[") {
			name := cleanKey(strings.TrimSuffix(stripComment(line[2:]), "]]"))
			idx := arrays[name]
			arrays[name] = idx + 1
			table, plain = fmt.Sprintf("%s[%d]", name, idx), name
			l.set(table, plain, n)
			continue
		}
		if line[0] == '[' {
			name := cleanKey(strings.TrimSuffix(stripComment(line[1:]), "]"))
			table, plain = name, name
			// [sensor.properties] belongs to the last [[sensor]].
			for arr, cnt := range arrays {
				if strings.HasPrefix(name, arr+".") {
					table = fmt.Sprintf("%s[%d]%s", arr, cnt-1, name[len(arr):])
				}
			}
			l.set(table, plain, n)
			continue
		}
		eq := strings.IndexByte(line, '=')
		if eq <= 0 {
			continue
		}
		key := cleanKey(line[:eq])
		full, fullPlain := join(table, key), join(plain, key)
		l.set(full, fullPlain, n)
		val := strings.TrimSpace(line[eq+1:])
		for _, q := range []string{`"""`, `'''`} {
			if strings.HasPrefix(val, q) && !strings.Contains(val[3:], q) {
				inMulti = q
			}
		}
		if strings.HasPrefix(val, "{") { // inline table: record its keys too
			for _, part := range strings.Split(strings.Trim(stripComment(val), "{} "), ",") {
				if e := strings.IndexByte(part, '='); e > 0 {
					k := cleanKey(part[:e])
					l.set(join(full, k), join(fullPlain, k), n)
				}
			}
		}
	}
	return l
}

func (l *locator) set(key, plain string, n int) {
	if _, ok := l.lines[key]; !ok {
		l.lines[key] = n
	}
	if _, ok := l.lines[plain]; !ok {
		l.lines[plain] = n
	}
}

// has reports whether key itself was written in the file.
func (l *locator) has(key string) bool {
	if l == nil {
		return false
	}
	_, ok := l.lines[key]
	return ok
}

// line returns the line of key, falling back to its table's line.
func (l *locator) line(key string) int {
	if l == nil {
		return 0
	}
	for k := key; k != ""; {
		if n, ok := l.lines[k]; ok {
			return n
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}

func join(table, key string) string {
	if table == "" {
		return key
	}
	return table + "." + key
}

func cleanKey(k string) string {
	parts := strings.Split(strings.TrimSpace(k), ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}

func stripComment(s string) string {
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}
