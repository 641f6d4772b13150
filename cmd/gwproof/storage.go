package main

import (
	"fmt"
	"time"

	"gatewayd/cmd/gwproof/internal/measure"
)

// The buffer engineer's benchmarks this part runs (buffer/size_test.go,
// buffer/bench_test.go).
const (
	benchWeek  = "BenchmarkStorage"         // bytes per stored value after a generated week
	benchBytes = "BenchmarkBytesPerReading" // bytes written per reading, offline and online
)

func cmdBench(name string, times int) string {
	return fmt.Sprintf("go test ./buffer/ -run '^$' -bench '^%s$' -benchtime %dx", name, times)
}

// storage runs the buffer's own benchmarks: the size of the file after a
// generated week of three BME280s at 10 s (bytes per stored value), and the
// bytes written to storage per reading offline and online.
func (h *harness) storage() error {
	tStored := h.report.target("bytes per stored value in the bbolt file after a generated week of three BME280s at 10 s", 28, "B", cmdBench(benchWeek, 1))
	tOff := h.report.target("bytes written per reading while offline (the release before samples: 567 B)", 567, "B", cmdBench(benchBytes, h.sz.SDTimes))
	tOn := h.report.target("bytes written per reading while online", 0, "B", cmdBench(benchBytes, h.sz.SDTimes))
	var errs []error
	out, err := h.goTest(15*time.Minute, "-run", "^$", "-bench", "^"+benchWeek+"$", "-benchtime", "1x", "-count", "1", "./buffer/")
	if err != nil {
		tStored.Fail(err.Error())
		errs = append(errs, fmt.Errorf("%w\n%s", err, tail(out, 20)))
	} else if bs := parseBench(out); len(bs) == 0 {
		tStored.Fail("no result line")
		errs = append(errs, fmt.Errorf("no %s results:\n%s", benchWeek, tail(out, 20)))
	} else {
		m := bs[0].metrics
		tStored.Set(m["B/value"], fmt.Sprintf("%s: the bbolt file after a generated week of three BME280s at 10 s (folded every 5 min as while offline): "+
			"%.1f MiB for %.0f values; 30 days of it need %.0f%% of what the default 64 MiB max_size leaves before drops (the buffer's estimate)",
			benchWeek, m["file-MiB"], m["values"], 100*m["30d/usable-64MiB"]))
	}
	n := h.sz.SDTimes
	out, err = h.goTest(10*time.Minute, "-run", "^$", "-bench", "^"+benchBytes+"$", "-benchtime", fmt.Sprintf("%dx", n), "-count", "1", "./buffer/")
	if err != nil {
		tOff.Fail(err.Error())
		tOn.Fail(err.Error())
		errs = append(errs, fmt.Errorf("%w\n%s", err, tail(out, 20)))
	} else if bs := parseBench(out); len(bs) == 0 {
		tOff.Fail("no result line")
		tOn.Fail("no result line")
		errs = append(errs, fmt.Errorf("no %s results:\n%s", benchBytes, tail(out, 20)))
	} else {
		m := bs[0].metrics
		s := &section{
			title: "SD-card writes: bytes written to storage per reading",
			method: fmt.Sprintf("buffer's `%s`, run by this command with `-benchtime %dx`. Bytes are the process's /proc/self/io write_bytes "+
				"(what reached the block device, fsyncs included). Online = acknowledged as it goes; offline = kept, on top of a backlog. "+
				"The same run measures stock bbolt used naively (one transaction per reading) and this buffer with one transaction per reading.", benchBytes, n),
			head: []string{"storage", "offline (B/reading)", "online (B/reading)"},
		}
		s.row("stock bbolt, one transaction per reading", measure.Num(m["stock-bbolt-naive-offline-B/reading"]), measure.Num(m["stock-bbolt-naive-online-B/reading"]))
		s.row("gatewayd buffer, one transaction per reading", measure.Num(m["naive-offline-B/reading"]), measure.Num(m["naive-online-B/reading"]))
		s.row("gatewayd buffer, group commit 10 s (the default)", measure.Num(m["group10s-offline-B/reading"]), measure.Num(m["group10s-online-B/reading"]))
		h.report.add(s)
		tOff.Set(m["group10s-offline-B/reading"], fmt.Sprintf("group commit 10 s, offline on top of a 20,000-sample backlog, one-value samples at 1/s "+
			"(the scenario of today's 567 B); three BME280 values a second: %s B per value", measure.Num(m["group10s-offline-3perS-B/reading"])))
		tOn.Set(m["group10s-online-B/reading"], "group commit 10 s, every sample acknowledged within its window")
	}
	if len(errs) > 0 {
		return fmt.Errorf("%v", errs)
	}
	return nil
}
