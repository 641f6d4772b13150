package sensors

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// FormatResults prints ReadOnce's results for a person at the board, one
// line per reading (or per failed sensor), or as JSON with asJSON.
func FormatResults(w io.Writer, rs []Result, asJSON bool) error {
	if asJSON {
		type jr struct {
			Measurement string    `json:"measurement"`
			Property    string    `json:"property"`
			Value       float64   `json:"value"`
			Unit        string    `json:"unit"`
			Time        time.Time `json:"time"`
			Synced      bool      `json:"synced"`
		}
		type js struct {
			Sensor   string `json:"sensor"`
			OK       bool   `json:"ok"`
			Error    string `json:"error,omitempty"`
			Readings []jr   `json:"readings"`
		}
		out := make([]js, 0, len(rs))
		for _, r := range rs {
			s := js{Sensor: r.Sensor, OK: r.Err == nil, Readings: []jr{}}
			if r.Err != nil {
				s.Error = r.Err.Error()
			}
			for _, x := range r.Readings {
				s.Readings = append(s.Readings, jr{x.Measurement, x.Property, x.Value, x.Unit, x.Time, x.Synced})
			}
			out = append(out, s)
		}
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		if err := e.Encode(out); err != nil {
			return fmt.Errorf("write results: %w", err)
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SENSOR\tMEASUREMENT\tVALUE\tUNIT\tPROPERTY")
	for _, r := range rs {
		for _, x := range r.Readings {
			prec := 2
			if x.Unit == "ppm" {
				prec = 0
			}
			fmt.Fprintf(tw, "%s\t%s\t%.*f\t%s\t%s\n", r.Sensor, x.Measurement, prec, x.Value, x.Unit, x.Property)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	for _, r := range rs {
		if r.Err != nil {
			if _, err := fmt.Fprintf(w, "%s: ERROR: %v\n", r.Sensor, r.Err); err != nil {
				return fmt.Errorf("write results: %w", err)
			}
		}
	}
	return nil
}

// FormatFound prints Scan's findings as a table.
func FormatFound(w io.Writer, fs []Found) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tVIA\tCHIP\tDRIVER\tIDENTIFIED BY")
	if len(fs) == 0 {
		fmt.Fprintln(tw, "(none)\t\t\t\t")
	}
	for _, f := range fs {
		via := "-"
		if f.Mux != nil {
			via = fmt.Sprintf("mux %#02x ch %d", f.Mux.Address, f.Mux.Channel)
		}
		drv := f.Driver
		if drv == "" {
			drv = "-"
		}
		fmt.Fprintf(tw, "%#02x\t%s\t%s\t%s\t%s\n", f.Address, via, f.Chip, drv, f.Detail)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write scan: %w", err)
	}
	return nil
}
