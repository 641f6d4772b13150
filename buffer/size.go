package buffer

// Storage cost of record v2, measured by TestBytesPerStoredValue and
// BenchmarkStorage (README.md): a week of three BME280s (three values at
// 0.01 each) every 10 s, folded every 5 minutes as the commit loop does.
const (
	// estSampleBytes is one sample's cost besides its values: bbolt's
	// 16-byte element header and 8-byte key, and the record's version,
	// sensor, boot, Mono (8 bytes after three days of uptime) and time
	// drift.
	estSampleBytes = 40
	// estValueBytes is one value at a resolution: its schema index and a
	// 1 to 3 byte varint (a full float64 value takes 9).
	estValueBytes = 4
	// estFill is how full bbolt's leaves are (they are packed at 95%, and
	// branch pages add a little).
	estFillPct = 93
	// estBaseBytes is a near-empty file: meta pages, bucket roots, the
	// dictionary.
	estBaseBytes = 32 << 10
)

// EstimateFileBytes is about how large the bbolt file grows holding samples
// of valuesPerSample values each, stored at a resolution (values kept at full
// float64 precision cost 5 bytes more each). It leaves out the journal
// (JournalBytes) and the step the file grows by.
func EstimateFileBytes(samples, valuesPerSample int) int64 {
	per := int64(estSampleBytes + valuesPerSample*estValueBytes)
	return estBaseBytes + int64(samples)*per*100/estFillPct
}

// UsableBytes is how much of maxSize the bbolt file may fill before the
// WhenFull policy drops samples: maxSize minus the journal, less a fifth of
// headroom and one growth step. 0 means unbounded.
func UsableBytes(maxSize int64) int64 {
	if maxSize <= 0 {
		return 0
	}
	o := Options{MaxSize: maxSize, CommitInterval: 1}
	limit := maxSize - journalSizeFor(o)
	step := min(max(limit/64/65536*65536, 65536), 1<<20)
	return limit*8/10 - step
}
