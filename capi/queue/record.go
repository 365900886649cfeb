package queue

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// record is how a waiting event or a dead letter is stored: a fixed header the settlement path can
// rewrite without decoding the event, then the reason, then the event as JSON.
//
//	version(1) enqueued(8) buried(8) attempts(4) reasonLen(4) reason eventJSON
type record struct {
	enqueued int64 // unix nanoseconds
	buried   int64 // unix nanoseconds, 0 while waiting
	attempts uint32
	reason   string
	event    []byte // JSON of event.Event
}

const (
	recordVersion    = 1
	recordHeaderSize = 1 + 8 + 8 + 4 + 4
)

var errBadRecord = errors.New("queue: stored record is malformed")

// appendRecordHeader appends the header of a waiting event's record: enqueued, never buried, no
// attempts, no reason.
func appendRecordHeader(b []byte, enqueued int64) []byte {
	b = append(b, recordVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(enqueued))
	return append(b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
}

func (r record) encode() []byte {
	b := make([]byte, recordHeaderSize, recordHeaderSize+len(r.reason)+len(r.event))
	b[0] = recordVersion
	binary.BigEndian.PutUint64(b[1:], uint64(r.enqueued))
	binary.BigEndian.PutUint64(b[9:], uint64(r.buried))
	binary.BigEndian.PutUint32(b[17:], r.attempts)
	binary.BigEndian.PutUint32(b[21:], uint32(len(r.reason)))
	b = append(b, r.reason...)
	return append(b, r.event...)
}

// decodeRecord parses a stored record. The event slice aliases b: callers inside a bbolt
// transaction copy it (encode does) before the transaction ends.
func decodeRecord(b []byte) (record, error) {
	if len(b) < recordHeaderSize {
		return record{}, fmt.Errorf("%w: %d bytes", errBadRecord, len(b))
	}
	if b[0] != recordVersion {
		return record{}, fmt.Errorf("%w: version %d", errBadRecord, b[0])
	}
	r := record{
		enqueued: int64(binary.BigEndian.Uint64(b[1:])),
		buried:   int64(binary.BigEndian.Uint64(b[9:])),
		attempts: binary.BigEndian.Uint32(b[17:]),
	}
	n := binary.BigEndian.Uint32(b[21:])
	rest := b[recordHeaderSize:]
	if uint64(n) > uint64(len(rest)) {
		return record{}, fmt.Errorf("%w: reason of %d bytes in %d", errBadRecord, n, len(rest))
	}
	r.reason = string(rest[:n])
	r.event = rest[n:]
	return r, nil
}

// readyKey orders a partition by (not-before, sequence): due events first, FIFO among equals.
func readyKey(notBefore int64, seq uint64) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, uint64(notBefore))
	binary.BigEndian.PutUint64(k[8:], seq)
	return k
}

func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, seq)
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// dedupKey identifies (platform, event name, event ID) in 16 bytes: a truncated SHA-256 of the
// length-prefixed triple, so no choice of name and ID collides with another, and the on-disk index
// stays small (its inserts land on random pages, so its size is what each commit writes). A
// collision needs about 2^64 keys within one window.
func dedupKey(platformName, name, id string) string {
	var stack [256]byte // names and IDs are short: the triple is hashed without allocating
	buf := stack[:0]
	for _, s := range [...]string{platformName, name, id} {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	sum := sha256.Sum256(buf)
	return string(sum[:16])
}
