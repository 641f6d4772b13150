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
