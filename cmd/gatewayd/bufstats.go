package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"gatewayd/buffer"
)

const bufferUsage = "usage: gatewayd buffer stats|export|requeue [--json] [--dead] [--reason TEXT] [--config FILE | --path FILE]"

// cmdBuffer is `gatewayd buffer`: stats (no lock, works while the daemon
// runs), export [--dead] and requeue [--reason TEXT] (both need the file to
// themselves: stop the daemon first).
func cmdBuffer(_ context.Context, a *app, args []string) error {
	if len(args) == 0 || (args[0] != "stats" && args[0] != "export" && args[0] != "requeue") {
		fmt.Fprintln(a.stderr, bufferUsage)
		return &exitError{2, errReported}
	}
	sub := args[0]
	fs := newFlags(a, "buffer "+sub)
	path := fs.String("config", "", "config file (its [buffer] path is used)")
	file := fs.String("path", "", "buffer file (instead of --config)")
	asJSON := fs.Bool("json", false, "print JSON")
	dead := fs.Bool("dead", false, "export: only the dead letters")
	reason := fs.String("reason", "", "requeue: only dead letters whose reason contains this text")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *file == "" {
		cfg, err := loadConfig(a, *path)
		if err != nil {
			return err
		}
		*file = cfg.Path(cfg.Buffer.Path)
	}
	switch sub {
	case "export":
		if *dead {
			return buffer.ExportDead(*file, a.stdout, *asJSON)
		}
		return buffer.Export(*file, a.stdout, *asJSON)
	case "requeue":
		n, left, err := buffer.Requeue(*file, *reason, nil)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(a.stdout).Encode(map[string]int{"requeued": n, "dead_letters_left": left})
		}
		fmt.Fprintf(a.stdout, "requeued %d dead letters (%d left); they are sent oldest first when the daemon starts\n", n, left)
		return nil
	}
	st, err := buffer.Inspect(*file)
	if err != nil {
		return err
	}
	return writeBufferStats(a.stdout, *file, st, *asJSON)
}

func writeBufferStats(w io.Writer, path string, st buffer.Stats, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "file\t%s\n", path)
	fmt.Fprintf(tw, "readings waiting\t%d samples, %d values\n", st.Depth, st.Values)
	fmt.Fprintf(tw, "size on disk\t%d bytes\n", st.Bytes)
	if !st.OldestUnsent.IsZero() {
		fmt.Fprintf(tw, "oldest unsent\t%s (%s ago)\n", st.OldestUnsent.UTC().Format(time.RFC3339), time.Since(st.OldestUnsent).Round(time.Second))
	} else {
		fmt.Fprintf(tw, "oldest unsent\t-\n")
	}
	fmt.Fprintf(tw, "dead letters\t%d\n", st.DeadLetters)
	if st.AckedReadings > 0 {
		fmt.Fprintf(tw, "messages per reading\t%.3f (%d messages acked %d readings, %d values)\n",
			st.MessagesPerReading, st.AckedMessages, st.AckedReadings, st.AckedValues)
	} else {
		fmt.Fprintf(tw, "messages per reading\t- (nothing acked yet)\n")
	}
	if st.AsideFiles > 0 || st.Salvaged > 0 || st.Unrecoverable > 0 {
		fmt.Fprintf(tw, "set-aside damaged files\t%d (%d bytes, counted in max_size)\n", st.AsideFiles, st.AsideBytes)
		fmt.Fprintf(tw, "salvaged from them\t%d samples (%d unrecoverable)\n", st.Salvaged, st.Unrecoverable)
	}
	reasons := make([]string, 0, len(st.Drops))
	for r := range st.Drops {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		fmt.Fprintf(tw, "dropped (%s)\t%d\n", r, st.Drops[r])
	}
	return tw.Flush()
}
