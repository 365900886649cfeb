package queue

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"

	"go.etcd.io/bbolt"
)

// The write-ahead log beside bbolt. Enqueue appends one log record per call (a loggedBatch) and
// returns once the log is fsync'd; the events wait for delivery in it (resident.go).

// logBucket holds the base (resident.go) under appliedKey, and the dedup checkpoint (dedup.go).
var (
	logBucket  = []byte("queue.log")
	appliedKey = []byte("applied")
)

// loggedBatch is the new events of one Enqueue call, as logged:
//
//	version(1)=2 enqueued(8) platformLen(uvarint) platform count(uvarint) { key(16) recordLen(uvarint) record }
//
// where each record is the event as the ready bucket stores it (record.encode: a header with
// enqueued, no burial, no attempts and no reason, then the event's JSON). Version 1, which logs
// written before it hold, had the event's JSON in place of the record; both decode.
//
// keys, events (the JSON) and stored (the records, nil for version 1) alias the buffer it was
// decoded from.
type loggedBatch struct {
	platform string
	enqueued int64
	keys     [][]byte
	events   [][]byte
	stored   [][]byte
}

const (
	loggedVersionJSON    = 1
	loggedVersionRecords = 2
)

// dedupKeySize is the length of dedupKey's result.
const dedupKeySize = 16

func (b loggedBatch) encode() []byte { return b.appendTo(nil) }

// appendTo appends the encoded batch to out.
func (b loggedBatch) appendTo(out []byte) []byte {
	n := 1 + 8 + 2*binary.MaxVarintLen64 + len(b.platform)
	for _, e := range b.events {
		n += dedupKeySize + binary.MaxVarintLen64 + recordHeaderSize + len(e)
	}
	out = slices.Grow(out, n)
	out = append(out, loggedVersionRecords)
	out = binary.BigEndian.AppendUint64(out, uint64(b.enqueued))
	out = binary.AppendUvarint(out, uint64(len(b.platform)))
	out = append(out, b.platform...)
	out = binary.AppendUvarint(out, uint64(len(b.events)))
	for i, e := range b.events {
		out = append(out, b.keys[i]...)
		out = binary.AppendUvarint(out, uint64(recordHeaderSize+len(e)))
		out = appendRecordHeader(out, b.enqueued)
		out = append(out, e...)
	}
	return out
}

// decodeLogged parses a logged batch. The log's checksum already vouches for the bytes, so an error
// here means a record this version cannot read, which OpenBolt refuses rather than skips.
func decodeLogged(p []byte) (loggedBatch, error) {
	var b loggedBatch
	if len(p) < 9 || (p[0] != loggedVersionJSON && p[0] != loggedVersionRecords) {
		return b, fmt.Errorf("%w: logged batch of %d bytes, version %d", errBadRecord, len(p), firstByte(p))
	}
	records := p[0] == loggedVersionRecords
	b.enqueued = int64(binary.BigEndian.Uint64(p[1:]))
	rest := p[9:]
	field := func(what string) ([]byte, error) {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return nil, fmt.Errorf("%w: logged batch: bad length of %s", errBadRecord, what)
		}
		f := rest[k : k+int(n)]
		rest = rest[k+int(n):]
		return f, nil
	}
	platform, err := field("platform")
	if err != nil {
		return b, err
	}
	b.platform = string(platform)
	count, k := binary.Uvarint(rest)
	// Each event takes at least a key and a length byte: a count beyond that is damage, and
	// must not size an allocation.
	if k <= 0 || count > uint64(len(rest)-k)/(dedupKeySize+1) {
		return b, fmt.Errorf("%w: logged batch: bad event count", errBadRecord)
	}
	rest = rest[k:]
	b.keys = make([][]byte, 0, count)
	b.events = make([][]byte, 0, count)
	var header [recordHeaderSize]byte
	if records {
		b.stored = make([][]byte, 0, count)
		appendRecordHeader(header[:0], b.enqueued)
	}
	for range count {
		if len(rest) < dedupKeySize {
			return b, fmt.Errorf("%w: logged batch: truncated key", errBadRecord)
		}
		key := rest[:dedupKeySize]
		rest = rest[dedupKeySize:]
		ev, err := field("event")
		if err != nil {
			return b, err
		}
		if records {
			// Exactly the header encode writes: anything else would go into bbolt as it is.
			if len(ev) < recordHeaderSize || !bytes.Equal(ev[:recordHeaderSize], header[:]) {
				return b, fmt.Errorf("%w: logged batch: bad record header", errBadRecord)
			}
			b.stored = append(b.stored, ev)
			ev = ev[recordHeaderSize:]
		}
		b.keys = append(b.keys, key)
		b.events = append(b.events, ev)
	}
	if len(rest) != 0 {
		return b, fmt.Errorf("%w: logged batch: %d bytes after the last event", errBadRecord, len(rest))
	}
	return b, nil
}

func firstByte(p []byte) int {
	if len(p) == 0 {
		return -1
	}
	return int(p[0])
}

// appliedLSN reads the base: in files written before events waited in the log, the last log
// record the applier had moved into the buckets, which means the same.
func baseLSN(tx *bbolt.Tx) (uint64, error) {
	v := tx.Bucket(logBucket).Get(appliedKey)
	switch len(v) {
	case 0:
		return 0, nil
	case 8:
		return binary.BigEndian.Uint64(v), nil
	default:
		return 0, fmt.Errorf("%w: log base of %d bytes", errBadRecord, len(v))
	}
}
