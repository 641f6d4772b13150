package buffer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// bbolt's on-disk layout (go.etcd.io/bbolt/internal/common, stable since
// boltdb): a page is a 16-byte header (id u64, flags u16, count u16,
// overflow u32) followed by 16-byte elements; the meta page holds the root
// bucket, the freelist page id, the high-water mark and a checksum. bbolt
// writes it in native byte order; every board we build for is little endian.
const (
	pageHeader = 16
	elemSize   = 16

	flagBranch   = 0x01
	flagLeaf     = 0x02
	flagMeta     = 0x04
	flagFreelist = 0x10
	bucketLeaf   = 0x01

	boltMagic   = 0xED0CDAED
	boltVersion = 2
	noFreelist  = ^uint64(0)
	maxDepth    = 64
)

var le = binary.LittleEndian

// rawMeta is the part of a bbolt meta page the walk needs.
type rawMeta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	hwm      uint64
	txid     uint64
}

// rawCheck proves, by reading the file itself, that every page bbolt can
// reach from its current meta page lies inside the file and that every key
// and value of every element lies inside its page. bbolt reads its file
// through a memory mapping and trusts those offsets: a damaged one makes it
// fault on memory outside the mapping, which no recover() can catch in
// bbolt's own checker goroutine. Only after this walk passes is it safe to
// let bbolt's consistency check loose on the file.
func rawCheck(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("raw check: %w", err)
	}
	// Errors wrapping ErrCorrupt prove the file damaged; any other error
	// (a read the disk failed) proves nothing and is retried by Open.
	w := &walker{f: f, size: fi.Size(), seen: map[uint64]bool{}}
	m, err := w.currentMeta()
	if err != nil {
		return err
	}
	w.ps = int64(m.pageSize)
	w.hwm = m.hwm
	if int64(m.hwm)*w.ps > w.size {
		return fmt.Errorf("%w: truncated: high-water mark %d pages of %d bytes, file %d bytes", ErrCorrupt, m.hwm, w.ps, w.size)
	}
	if m.freelist != noFreelist {
		if err := w.freelist(m.freelist); err != nil {
			return err
		}
	}
	_, err = w.tree(m.root, 0, nil, nil, "")
	return err
}

type walker struct {
	f    *os.File
	size int64
	ps   int64
	hwm  uint64
	seen map[uint64]bool
	// visit, if set, sees every key and value (not sub-buckets) of every
	// bucket, in key order, with the bucket's name.
	visit func(bucket string, k, v []byte)
}

func (w *walker) currentMeta() (rawMeta, error) {
	var best rawMeta
	found := false
	var ioErr error
	// meta0 is at offset 0; meta1 one page later, and the page size is in
	// the meta pages themselves, so try the sizes bbolt may have used.
	buf := make([]byte, pageHeader+64)
	tryAt := func(off int64) {
		if _, err := w.f.ReadAt(buf, off); err != nil {
			// Past the end: that meta page is missing (a truncated
			// file). Any other failure is the disk's, not the file's.
			if !isShortRead(err) && ioErr == nil {
				ioErr = fmt.Errorf("read meta page at %d: %w", off, err)
			}
			return
		}
		m, ok := parseMeta(buf)
		if ok && (off == 0 || int64(m.pageSize) == off) && (!found || m.txid > best.txid) {
			best, found = m, true
		}
	}
	tryAt(0)
	if found {
		tryAt(int64(best.pageSize))
	} else {
		// meta0 is damaged: meta1 sits one page in, at a page size
		// only meta1 itself could tell.
		for _, ps := range []int64{512, 1024, 2048, 4096, 8192, 16384, 32768, 65536} {
			tryAt(ps)
		}
	}
	// A meta page that could not be read may be the newest one: walking
	// the older tree would check pages bbolt then does not use.
	if ioErr != nil {
		return best, ioErr
	}
	if !found {
		return best, fmt.Errorf("%w: no valid meta page", ErrCorrupt)
	}
	return best, nil
}

// isShortRead reports whether a read failed only because the file ended
// before the bytes asked for: the file's shape, not the disk.
func isShortRead(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// readFailed classifies a failed page read: past the end of the file is
// damage (ErrCorrupt); anything else (EIO from the card, ...) is an I/O error
// that says nothing about the file and is returned as it is.
func readFailed(id uint64, err error) error {
	if isShortRead(err) {
		return fmt.Errorf("%w: page %d: %v", ErrCorrupt, id, err)
	}
	return fmt.Errorf("read page %d: %w", id, err)
}

func parseMeta(b []byte) (rawMeta, bool) {
	if le.Uint16(b[8:]) != flagMeta {
		return rawMeta{}, false
	}
	m := b[pageHeader:]
	if le.Uint32(m[0:]) != boltMagic || le.Uint32(m[4:]) != boltVersion {
		return rawMeta{}, false
	}
	h := fnv.New64a()
	_, _ = h.Write(m[:56])
	if h.Sum64() != le.Uint64(m[56:]) {
		return rawMeta{}, false
	}
	ps := le.Uint32(m[8:])
	if ps < 512 || ps > 1<<20 || ps&(ps-1) != 0 {
		return rawMeta{}, false
	}
	return rawMeta{pageSize: ps, root: le.Uint64(m[16:]), freelist: le.Uint64(m[32:]), hwm: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, true
}

// page reads page id with its overflow pages after checking its bounds.
func (w *walker) page(id uint64) ([]byte, error) {
	if id < 2 || id >= w.hwm {
		return nil, fmt.Errorf("%w: page %d outside [2, %d)", ErrCorrupt, id, w.hwm)
	}
	hdr := make([]byte, pageHeader)
	if _, err := w.f.ReadAt(hdr, int64(id)*w.ps); err != nil {
		return nil, readFailed(id, err)
	}
	if le.Uint64(hdr) != id {
		return nil, fmt.Errorf("%w: page %d claims id %d", ErrCorrupt, id, le.Uint64(hdr))
	}
	span := uint64(le.Uint32(hdr[12:])) + 1
	if id+span > w.hwm {
		return nil, fmt.Errorf("%w: page %d overflows the high-water mark", ErrCorrupt, id)
	}
	for i := id; i < id+span; i++ {
		if w.seen[i] {
			return nil, fmt.Errorf("%w: page %d reachable twice", ErrCorrupt, i)
		}
		w.seen[i] = true
	}
	b := make([]byte, int64(span)*w.ps)
	if _, err := w.f.ReadAt(b, int64(id)*w.ps); err != nil {
		return nil, readFailed(id, err)
	}
	return b, nil
}

func (w *walker) freelist(id uint64) error {
	p, err := w.page(id)
	if err != nil {
		return err
	}
	if le.Uint16(p[8:]) != flagFreelist {
		return fmt.Errorf("%w: freelist page %d has flags %#x", ErrCorrupt, id, le.Uint16(p[8:]))
	}
	n, start := uint64(le.Uint16(p[10:])), uint64(pageHeader)
	if n == 0xFFFF {
		n, start = le.Uint64(p[pageHeader:]), pageHeader+8
	}
	if n > uint64(len(p)) || start+n*8 > uint64(len(p)) {
		return fmt.Errorf("%w: freelist page %d holds %d ids past its end", ErrCorrupt, id, n)
	}
	for i := uint64(0); i < n; i++ {
		if fid := le.Uint64(p[start+i*8:]); fid < 2 || fid >= w.hwm {
			return fmt.Errorf("%w: free page id %d outside the file", ErrCorrupt, fid)
		}
	}
	return nil
}

// tree walks the bucket B+tree rooted at page id. Like bbolt's checker it
// requires keys to increase within a page and to lie in [lo, hi) set by the
// parent branch; it returns the subtree's largest key. bbolt rebuilds its
// freelist at open with that checker and panics on the first violation.
func (w *walker) tree(id uint64, depth int, lo, hi []byte, bucket string) ([]byte, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: tree deeper than %d", ErrCorrupt, maxDepth)
	}
	p, err := w.page(id)
	if err != nil {
		return nil, err
	}
	return w.node(p, depth, fmt.Sprintf("page %d", id), lo, hi, bucket)
}

// node checks one branch or leaf page (a whole page or an inline bucket's).
func (w *walker) node(p []byte, depth int, where string, lo, hi []byte, bucket string) ([]byte, error) {
	if len(p) < pageHeader {
		return nil, fmt.Errorf("%w: %s: short page", ErrCorrupt, where)
	}
	flags, count := le.Uint16(p[8:]), int(le.Uint16(p[10:]))
	if flags != flagBranch && flags != flagLeaf {
		return nil, fmt.Errorf("%w: %s: unexpected page flags %#x", ErrCorrupt, where, flags)
	}
	if pageHeader+count*elemSize > len(p) {
		return nil, fmt.Errorf("%w: %s: %d elements past the page end", ErrCorrupt, where, count)
	}
	key := func(i int) ([]byte, error) {
		e := pageHeader + i*elemSize
		off := 4 // leaf: flags, pos, ksize, vsize; branch: pos, ksize, pgid
		if flags == flagBranch {
			off = 0
		}
		pos, ksize := uint64(le.Uint32(p[e+off:])), uint64(le.Uint32(p[e+off+4:]))
		vsize := uint64(0)
		if flags == flagLeaf {
			vsize = uint64(le.Uint32(p[e+12:]))
		}
		if uint64(e)+pos+ksize+vsize > uint64(len(p)) {
			return nil, fmt.Errorf("%w: %s: element %d past the page end", ErrCorrupt, where, i)
		}
		return p[uint64(e)+pos : uint64(e)+pos+ksize], nil
	}
	var last []byte
	min := lo
	for i := 0; i < count; i++ {
		k, err := key(i)
		if err != nil {
			return nil, err
		}
		if (i == 0 && min != nil && bytes.Compare(min, k) > 0) || (i > 0 && bytes.Compare(min, k) >= 0) ||
			(hi != nil && bytes.Compare(k, hi) >= 0) {
			return nil, fmt.Errorf("%w: %s: key %d out of order", ErrCorrupt, where, i)
		}
		e := pageHeader + i*elemSize
		if flags == flagBranch {
			next := hi
			if i < count-1 {
				if next, err = key(i + 1); err != nil {
					return nil, err
				}
			}
			if last, err = w.tree(le.Uint64(p[e+8:]), depth+1, k, next, bucket); err != nil {
				return nil, err
			}
			min = last
			continue
		}
		min, last = k, k
		vsize := uint64(le.Uint32(p[e+12:]))
		vstart := uint64(e) + uint64(le.Uint32(p[e+4:])) + uint64(len(k))
		v := p[vstart : vstart+vsize]
		if le.Uint32(p[e:])&bucketLeaf == 0 {
			if w.visit != nil {
				w.visit(bucket, k, v)
			}
			continue
		}
		if len(v) < 16 {
			return nil, fmt.Errorf("%w: %s: short bucket header", ErrCorrupt, where)
		}
		if root := le.Uint64(v); root != 0 {
			if _, err := w.tree(root, depth+1, nil, nil, string(k)); err != nil {
				return nil, err
			}
		} else if _, err := w.node(v[16:], depth+1, where+" inline bucket", nil, nil, string(k)); err != nil {
			return nil, err
		}
	}
	return last, nil
}
