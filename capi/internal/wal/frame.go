package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// A frame is one record on disk, 8-byte aligned so that the search for records after a damaged one
// (scan) looks at an eighth of the offsets:
//
//	length(4) crc32c(4) lsn(8) group(8) payload padding
//
// The CRC-32C covers lsn, group and payload. group is the LSN of the first record of the write the
// record came in: records of one write are acknowledged together, after its fdatasync, so group
// tells a record damaged by a torn last write from one damaged after it was acknowledged.
const (
	headerSize = 24
	align      = 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frame is a decoded record. payload aliases the buffer it was decoded from.
type frame struct {
	lsn, group uint64
	payload    []byte
}

// frameSize is the bytes a record of n payload bytes takes on disk, padding included.
func frameSize(n int) int {
	return (headerSize + n + align - 1) &^ (align - 1)
}

// appendFrame appends the frame of one record to b.
func appendFrame(b []byte, lsn, group uint64, payload []byte) []byte {
	start := len(b)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	b = append(b, 0, 0, 0, 0) // CRC, set below
	b = binary.BigEndian.AppendUint64(b, lsn)
	b = binary.BigEndian.AppendUint64(b, group)
	b = append(b, payload...)
	crc := crc32.Checksum(b[start+8:], castagnoli)
	binary.BigEndian.PutUint32(b[start+4:], crc)
	for (len(b)-start)%align != 0 {
		b = append(b, 0)
	}
	return b
}

var errNoFrame = errors.New("wal: no intact record")

// decodeFrame decodes the record at the start of b. It returns errNoFrame (wrapped with why) when b
// does not start with an intact record: too short, a length past the end, or a CRC mismatch. It
// never looks past len(b) and never panics, whatever b holds: b is a file read after a crash.
func decodeFrame(b []byte) (frame, int, error) {
	if len(b) < headerSize {
		return frame{}, 0, fmt.Errorf("%w: %d bytes left", errNoFrame, len(b))
	}
	n := uint64(binary.BigEndian.Uint32(b))
	if n > uint64(len(b)-headerSize) {
		return frame{}, 0, fmt.Errorf("%w: length %d past the end", errNoFrame, n)
	}
	body := b[8 : headerSize+int(n)]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[4:]) {
		return frame{}, 0, fmt.Errorf("%w: checksum mismatch", errNoFrame)
	}
	f := frame{
		lsn:     binary.BigEndian.Uint64(b[8:]),
		group:   binary.BigEndian.Uint64(b[16:]),
		payload: b[headerSize : headerSize+int(n)],
	}
	return f, min(frameSize(int(n)), len(b)), nil
}

// CorruptError reports a damaged record that a crash cannot explain: records written after it
// exist, so it was acknowledged. The log refuses to open rather than skip acknowledged events.
type CorruptError struct {
	// File is the segment's path, Offset where the damaged record starts, LSN the record expected
	// there.
	File   string
	Offset int64
	LSN    uint64
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("wal: %s at offset %d: record %d is damaged (%s) and later records exist, so it was acknowledged: "+
		"refusing to drop it; restore the file, or move the log directory aside to start without the events it holds",
		e.File, e.Offset, e.LSN, e.Reason)
}

// scanResult is what scan found in one segment.
type scanResult struct {
	frames []frame
	// end is where the intact records end: where the next write goes.
	end int
	// remnantEnd, above end, is the end of the last intact record of a torn write found after
	// end. Those bytes must be zeroed before the space is reused, or a later scan could take a
	// remnant for a record written after the reuse.
	remnantEnd int
}

// scan reads the records of one segment whose first record is LSN first. With until > 0 the
// segment is not the last one and must hold every record up to until, since the next segment was
// only started after the writes of this one were acknowledged. Otherwise records run until the
// first spot that does not hold the next LSN intact, and that spot is a torn write unless an intact
// record of a later write follows it. file names the segment in errors.
func scan(data []byte, file string, first, until uint64) (scanResult, error) {
	var r scanResult
	next := first
	for off := 0; ; {
		if until > 0 && next > until {
			r.end = off
			return r, nil
		}
		f, n, err := decodeFrame(data[off:])
		if err == nil && f.lsn == next {
			r.frames = append(r.frames, f)
			off += n
			next++
			continue
		}
		reason := "not an intact record"
		if err != nil {
			reason = err.Error()
		} else if f.lsn != next {
			reason = fmt.Sprintf("holds record %d", f.lsn)
		}
		if until > 0 {
			return r, &CorruptError{File: file, Offset: int64(off), LSN: next, Reason: "a later segment exists, but " + reason}
		}
		r.end = off
		// Look for intact records of this LSN or later past the damage. One from a later write
		// means this spot was acknowledged; ones from the same write are the torn write itself.
		for o := off + align; o+headerSize <= len(data); o += align {
			if lsn := binary.BigEndian.Uint64(data[o+8:]); lsn < next || lsn-next > uint64(len(data)/headerSize) {
				continue
			}
			g, gn, err := decodeFrame(data[o:])
			if err != nil {
				continue
			}
			if g.group > next {
				return r, &CorruptError{File: file, Offset: int64(off), LSN: next, Reason: reason}
			}
			r.remnantEnd = o + gn
		}
		return r, nil
	}
}
