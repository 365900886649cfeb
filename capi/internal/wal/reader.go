package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
)

// ErrReleased is wrapped by the error a Reader returns when the record it needs next is no longer
// in the log: its owner released the log past a position the reader had not read yet.
var ErrReleased = errors.New("wal: record released")

const (
	// readChunk is how much of a segment one read takes when a reader is behind: large enough that
	// a backlog costs one system call per few hundred records.
	readChunk = 256 << 10
	// minRead is the smallest read, used when a reader tails the writer and a few records are new.
	minRead = 4 << 10
)

// Reader reads the log's records in LSN order, from a given LSN up to the last durable one.
// A Reader is not safe for concurrent use; a Log may have many Readers.
//
// A reader holds one segment file open, and closes it when it moves to the next, so that its owner
// may release and recycle every segment before the reader's position. If the owner releases past
// the position, the reader fails with ErrReleased once it looks for a record in a released
// segment; until then it may still return records of the segment it has open, as they were
// written (the file is reused only for records of higher LSNs, which it never returns instead).
type Reader struct {
	log  *Log
	next uint64 // LSN the next successful Next returns

	// The segment being read. at is the LSN of the record that starts at off: below next only
	// while the reader skips the records before its start in the first segment it opens.
	file  *os.File
	path  string
	first uint64 // the segment's first LSN
	end   int64  // the file's size: the segment size, unless a read found the file shorter
	at    uint64
	off   int64

	// buf holds the segment's bytes from bufOff. A record is taken from it only if its LSN is at
	// most bufLast, LastLSN as loaded before the read: later records may have been incomplete
	// then, or not written at all.
	buf     []byte
	bufOff  int64
	bufLast uint64

	// Bytes and records consumed, whose ratio sizes the reads of a reader that tails the writer.
	bytes, records uint64
	chunk          int // readChunk; smaller in tests, to cut records at a read's end

	err error // sticky
}

// NewReader returns a reader whose first Next returns record from (from ≥ 1).
func (l *Log) NewReader(from uint64) *Reader {
	from = max(from, 1) // LSNs start at 1
	return &Reader{log: l, next: from, at: from, chunk: readChunk}
}

// Segments returns how many segment files the log holds (not counting spares): the owner's measure
// of how much log it keeps unreleased.
func (l *Log) Segments() int {
	l.segMu.Lock()
	defer l.segMu.Unlock()
	return len(l.segments)
}

// Pos returns the LSN the next successful Next returns.
func (r *Reader) Pos() uint64 { return r.next }

// Next returns the next record. It returns io.EOF while that record is not durable yet
// (its LSN is above LastLSN()); a later call may then succeed (the reader does not move on EOF).
// payload aliases the reader's buffer and is valid until the next call of Next or Close.
// An error other than io.EOF is sticky: the record was released (the owner released the log past
// a position a reader still needed: the error says which record and that it was released), or its
// bytes are damaged (a *CorruptError naming the file and offset), or a read failed.
func (r *Reader) Next() (lsn uint64, payload []byte, err error) {
	if r.err != nil {
		return 0, nil, r.err
	}
	// Loaded before any byte is read: every record up to last is complete on disk by then.
	last := r.log.LastLSN()
	if r.next > last {
		return 0, nil, io.EOF
	}
	for {
		if r.file == nil {
			if err := r.seek(r.at); err != nil {
				return 0, nil, r.fail(err)
			}
		}
		f, n, err := r.frame(last)
		if err == nil && f.lsn == r.at {
			r.off += int64(n)
			r.at++
			r.bytes += uint64(n)
			r.records++
			if f.lsn == r.next {
				r.next++
				return f.lsn, f.payload, nil
			}
			continue // a record before the reader's start
		}
		if err != nil && !errors.Is(err, errNoFrame) {
			return 0, nil, r.fail(err)
		}
		// Record at is durable but not at off: this segment ended before it, or the record is
		// damaged, or the segment was released and its file reused.
		var reason string
		if err != nil {
			reason = err.Error()
		} else {
			reason = fmt.Sprintf("holds record %d", f.lsn)
		}
		if err := r.moveOn(last, reason); err != nil {
			return 0, nil, r.fail(err)
		}
	}
}

// Close closes the file the reader holds open.
func (r *Reader) Close() error {
	r.buf = nil
	if r.err == nil {
		r.err = errors.New("wal: reader closed")
	}
	if r.file == nil {
		return nil
	}
	f := r.file
	r.file = nil
	if err := f.Close(); err != nil {
		return fmt.Errorf("wal: close reader of %s: %w", r.path, err)
	}
	return nil
}

// fail makes err sticky. It closes the file at once: after an error the reader reads no more, and
// the file may belong to a segment the log wants to reuse.
func (r *Reader) fail(err error) error {
	r.err = err
	if r.file != nil {
		r.file.Close() // read-only: nothing a failed close could lose
		r.file = nil
	}
	return err
}

// holding returns the first LSN of the segment that holds record lsn, or ok false when no segment
// does (it was released), and the first LSN of the oldest segment. segMu is held for the search
// only, never during I/O, so that readers do not hold up a rollover.
func (r *Reader) holding(lsn uint64) (first uint64, ok bool, oldest uint64) {
	l := r.log
	l.segMu.Lock()
	defer l.segMu.Unlock()
	i, found := slices.BinarySearch(l.segments, lsn)
	if !found {
		i-- // the segment before the first one starting above lsn
	}
	if len(l.segments) > 0 {
		oldest = l.segments[0]
	}
	if i < 0 {
		return 0, false, oldest
	}
	return l.segments[i], true, oldest
}

// seek opens the segment that holds record lsn and positions the reader at its first record.
func (r *Reader) seek(lsn uint64) error {
	first, ok, oldest := r.holding(lsn)
	if !ok {
		return r.released(lsn, oldest)
	}
	path := r.log.segmentPath(first)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		// Released between the lookup and the open.
		_, _, oldest = r.holding(lsn)
		return r.released(lsn, oldest)
	}
	if err != nil {
		return fmt.Errorf("wal: open %s to read record %d: %w", path, lsn, err)
	}
	r.file, r.path, r.first = f, path, first
	r.end = r.log.segSize
	r.at, r.off = first, 0
	r.buf, r.bufOff, r.bufLast = r.buf[:0], 0, 0
	return nil
}

func (r *Reader) released(lsn, oldest uint64) error {
	return fmt.Errorf("%w: record %d is no longer in %s, which now starts at record %d: "+
		"its owner released it while a reader still needed it", ErrReleased, lsn, r.log.dir, oldest)
}

// moveOn is called when durable record at is not at the reader's offset. If another segment holds
// it, the reader moves there and closes the file it leaves, which the log may recycle from then
// on. If this segment still holds it, the record is damaged.
func (r *Reader) moveOn(last uint64, reason string) error {
	first, ok, oldest := r.holding(r.at)
	switch {
	case !ok:
		return r.released(r.at, oldest)
	case first == r.first:
		// Listed after the read, so the file was not reused under it: these are its bytes.
		return &CorruptError{File: r.path, Offset: r.off, LSN: r.at,
			Reason: fmt.Sprintf("it was acknowledged, the log being durable to record %d, but %s", last, reason)}
	}
	old := r.file
	r.file = nil
	if err := old.Close(); err != nil {
		return fmt.Errorf("wal: close reader of %s: %w", r.path, err)
	}
	return r.seek(r.at)
}

// frame decodes the record at off, reading when the buffer does not hold all of it as it was
// once record at was durable. An error that does not wrap errNoFrame is a failed read.
func (r *Reader) frame(last uint64) (frame, int, error) {
	if r.at > r.bufLast || !r.buffered() {
		n := r.readSize(last)
		for {
			if err := r.fill(last, n); err != nil {
				return frame{}, 0, err
			}
			if r.buffered() {
				break
			}
			// The read ended inside the record: its header, once read, says how much to read.
			// Each round reads more, or reaches the end of the file, so this ends.
			n = headerSize
			if len(r.buf) >= headerSize {
				n = r.frameLen(r.buf)
			}
		}
	}
	return decodeFrame(r.buf[r.off-r.bufOff:])
}

// buffered reports whether buf holds the whole frame at off (padding included, so that off stays
// aligned), or everything the file has from off, or enough to tell that off holds no record.
func (r *Reader) buffered() bool {
	bufEnd := r.bufOff + int64(len(r.buf))
	if r.off < r.bufOff || r.off > bufEnd {
		return false
	}
	if bufEnd >= r.end {
		return true
	}
	b := r.buf[r.off-r.bufOff:]
	return len(b) >= headerSize && r.frameLen(b) <= len(b)
}

// frameLen returns the size of the frame whose header starts b (len(b) ≥ headerSize), or 0 when its
// length is more than a record may take: then b holds no record, however much more is read. The
// bytes after the last record of a segment are zeros or a recycled segment's, and may claim any
// length.
func (r *Reader) frameLen(b []byte) int {
	n := int64(binary.BigEndian.Uint32(b))
	if n > r.log.segSize/4 {
		return 0
	}
	return frameSize(int(n))
}

// readSize is how much to read at off: a chunk when the reader is behind, and about twice the
// bytes of the durable records it has not read when it tails the writer, so that each group the
// writer commits does not cost the copy of a whole chunk.
func (r *Reader) readSize(last uint64) int {
	if r.records == 0 {
		return r.chunk
	}
	avg := max(r.bytes/r.records, 1)
	gap := last - r.at + 1
	if gap >= uint64(r.chunk)/avg {
		return r.chunk
	}
	return min(max(int(gap*avg*2), minRead), r.chunk)
}

// fill reads up to n bytes at off into buf, stopping at the end of the file.
func (r *Reader) fill(last uint64, n int) error {
	n = int(min(int64(n), r.end-r.off))
	if cap(r.buf) < n {
		r.buf = make([]byte, max(n, int(min(int64(r.chunk), r.log.segSize))))
	}
	r.buf, r.bufOff, r.bufLast = r.buf[:n], r.off, last
	got, err := r.file.ReadAt(r.buf, r.off)
	r.buf = r.buf[:got]
	if errors.Is(err, io.EOF) {
		// A segment file is never shorter than the segment size unless something cut it; what
		// it holds is still read, and a record missing from it is reported as damage.
		r.end = r.off + int64(got)
		return nil
	}
	if err != nil {
		return fmt.Errorf("wal: read %s at offset %d: %w", r.path, r.off, err)
	}
	return nil
}
