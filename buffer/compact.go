package buffer

// compactSuffix names the copy a compaction writes before renaming it over
// the buffer file.
const compactSuffix = ".compact"

// maybeCompact is called by the commit loop after each commit.
func (b *Buffer) maybeCompact() {}
