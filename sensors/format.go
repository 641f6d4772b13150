package sensors

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"gatewayd/internal/reading"
)

// FormatResults prints ReadOnce's results for a person at the board, one
// line per value (or per failed sensor), or as JSON with asJSON. Values are
// printed at their resolution (1009.25 hPa, not 1009.2492578125).
func FormatResults(w io.Writer, rs []Result, asJSON bool) error {
	if asJSON {
		type jr struct {
			Measurement string      `json:"measurement"`
			Property    string      `json:"property"`
			Value       json.Number `json:"value"`
			Unit        string      `json:"unit"`
			Resolution  float64     `json:"resolution"`
			Time        time.Time   `json:"time"`
			Synced      bool        `json:"synced"`
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
			for _, x := range r.Sample.Values {
				s.Readings = append(s.Readings, jr{x.Measurement, x.Property, json.Number(reading.Format(nil, x.Value, x.Resolution)),
					x.Unit, x.Resolution, r.Sample.Time, r.Sample.Synced})
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
		for _, x := range r.Sample.Values {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Sensor, x.Measurement, fixed(x.Value, x.Resolution), x.Unit, x.Property)
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

// fixed prints v rounded to res with as many decimals as res has, so a
// column of values lines up (20.50, not 20.5); full precision when res is 0.
func fixed(v, res float64) string {
	if res <= 0 {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(reading.Round(v, res), 'f', reading.Digits(res), 64)
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
