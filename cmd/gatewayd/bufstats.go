package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"gatewayd/buffer"
)

func writeBufferStats(w io.Writer, path string, st buffer.Stats, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "file\t%s\n", path)
	fmt.Fprintf(tw, "readings waiting\t%d\n", st.Depth)
	fmt.Fprintf(tw, "size on disk\t%d bytes\n", st.Bytes)
	if !st.OldestUnsent.IsZero() {
		fmt.Fprintf(tw, "oldest unsent\t%s (%s ago)\n", st.OldestUnsent.UTC().Format(time.RFC3339), time.Since(st.OldestUnsent).Round(time.Second))
	} else {
		fmt.Fprintf(tw, "oldest unsent\t-\n")
	}
	fmt.Fprintf(tw, "dead letters\t%d\n", st.DeadLetters)
	if st.AsideFiles > 0 || st.Salvaged > 0 || st.Unrecoverable > 0 {
		fmt.Fprintf(tw, "set-aside damaged files\t%d (%d bytes, counted in max_size)\n", st.AsideFiles, st.AsideBytes)
		fmt.Fprintf(tw, "salvaged from them\t%d readings (%d unrecoverable)\n", st.Salvaged, st.Unrecoverable)
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
