package queue

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/caddy-capi/caddy-capi/capi/internal/boltcommit"
)

// The write-ahead log in front of bbolt. Enqueue appends one log record per call (a loggedBatch)
// and returns once the log is fsync'd; the applier moves logged records into the bbolt buckets in
// large transactions, storing the last applied LSN in the same transaction, so OpenBolt knows where
// replay starts. Reading and writing in bbolt stay as before: only the request path changed.

// logBucket holds the LSN of the last log record applied to the buckets, under appliedKey.
var (
	logBucket  = []byte("queue.log")
	appliedKey = []byte("applied")
)

// maxApply bounds the logged bytes one applier transaction moves (about 2,000 events), so that it
// never holds bbolt's writer, which settlements and the visitor store share, for long, nor much
// memory in dirty pages.
const maxApply = 2 << 20

// loggedBatch is the new events of one Enqueue call, as logged:
//
//	version(1)=2 enqueued(8) platformLen(uvarint) platform count(uvarint) { key(16) recordLen(uvarint) record }
//
// where each record is the event as the ready bucket stores it (record.encode: a header with
// enqueued, no burial, no attempts and no reason, then the event's JSON), so that the applier puts
// a slice of the logged bytes into bbolt instead of copying each event into a new record. Version
// 1, which logs written before it hold, had the event's JSON in place of the record; both decode.
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

func (b loggedBatch) encode() []byte {
	n := 1 + 8 + 2*binary.MaxVarintLen64 + len(b.platform)
	for _, e := range b.events {
		n += dedupKeySize + binary.MaxVarintLen64 + recordHeaderSize + len(e)
	}
	out := make([]byte, 0, n)
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

// loggedRecord is a log record waiting for the applier.
type loggedRecord struct {
	lsn     uint64
	payload []byte
}

// applyLogged writes decoded batches into the buckets and records lsn as applied, in tx. Dedup was
// decided when the batches were logged (a key is reserved until it is applied), so every event is
// new here. Their dedup keys are not written here: the caller keeps them for a sorted flush
// (dedup.go).
func applyLogged(tx *bbolt.Tx, batches []loggedBatch, lsn uint64) error {
	var ready *bbolt.Bucket
	var readyFor string
	for _, b := range batches {
		if ready == nil || b.platform != readyFor {
			var err error
			if ready, err = tx.CreateBucketIfNotExists([]byte(readyPrefix + b.platform)); err != nil {
				return err
			}
			// The partition grows at its end (time-ordered keys): packing its pages full halves
			// the pages each commit writes.
			ready.FillPercent = 1
			readyFor = b.platform
		}
		for i := range b.keys {
			seq, err := ready.NextSequence()
			if err != nil {
				return err
			}
			// The logged record itself: bbolt copies it into its pages at commit, and the log
			// record it is a slice of stays in memory until the applier's commit is done.
			var stored []byte
			if b.stored != nil {
				stored = b.stored[i]
			} else {
				stored = record{enqueued: b.enqueued, event: b.events[i]}.encode()
			}
			if err := ready.Put(readyKey(b.enqueued, seq), stored); err != nil {
				return err
			}
		}
	}
	return tx.Bucket(logBucket).Put(appliedKey, binary.BigEndian.AppendUint64(nil, lsn))
}

// appliedLSN reads the last applied LSN.
func appliedLSN(tx *bbolt.Tx) (uint64, error) {
	v := tx.Bucket(logBucket).Get(appliedKey)
	switch len(v) {
	case 0:
		return 0, nil
	case 8:
		return binary.BigEndian.Uint64(v), nil
	default:
		return 0, fmt.Errorf("%w: applied LSN of %d bytes", errBadRecord, len(v))
	}
}

// logged is the log's Durable hook: it hands records just made durable to the applier, in LSN
// order, before their appenders return.
func (q *Bolt) logged(first uint64, payloads [][]byte) {
	q.applyMu.Lock()
	for i, p := range payloads {
		q.pending = append(q.pending, loggedRecord{lsn: first + uint64(i), payload: p})
		q.pendingBytes.Add(int64(len(p)))
	}
	q.applyMu.Unlock()
	select {
	case q.applyWake <- struct{}{}:
	default:
	}
}

// applyGather is how long the applier lets logged records accumulate before it applies fewer than
// applyEnough of them, unless a Lease is waiting for them. Nobody waits on the applier otherwise, and
// a bbolt transaction's cost is mostly per commit: a few hundred events per commit instead of a few
// dozen halves the applier's CPU per event.
const (
	applyGather = 20 * time.Millisecond
	applyEnough = 2048
)

// applyLoop moves logged records into bbolt until Close, then applies what is left and returns.
func (q *Bolt) applyLoop() {
	defer close(q.applyDone)
	stopping := false
	failures := 0
	gather := time.NewTimer(0)
	<-gather.C
	for {
		q.applyMu.Lock()
		n := len(q.pending)
		q.applyMu.Unlock()
		if n == 0 || (q.holdApply.Load() && !stopping) {
			if stopping {
				return
			}
			select {
			case <-q.applyWake:
			case <-q.applyUrgent:
			case <-q.applyStop:
				stopping = true
				if q.abandoned.Load() {
					return
				}
			}
			continue
		}
		if !stopping && !q.waitDedupRoom() {
			stopping = true
			if q.abandoned.Load() {
				return
			}
		}
		if n < applyEnough && !stopping {
			gather.Reset(applyGather)
			select {
			case <-gather.C:
			case <-q.applyUrgent:
				gather.Stop()
			case <-q.applyStop:
				gather.Stop()
				stopping = true
				if q.abandoned.Load() {
					return
				}
			}
		}
		q.applyMu.Lock()
		k, size := 0, 0
		for k < len(q.pending) && (k == 0 || size+len(q.pending[k].payload) <= maxApply) {
			size += len(q.pending[k].payload)
			k++
		}
		batch := q.pending[:k]
		q.applyMu.Unlock()
		if err := q.apply(batch); err != nil {
			failures++
			if stopping && failures >= 3 {
				return // the records stay in the log; Close reports the error
			}
			select {
			case <-time.After(min(time.Duration(failures)*100*time.Millisecond, 5*time.Second)):
			case <-q.applyStop:
				stopping = true
			}
			continue
		}
		failures = 0
	}
}

// apply moves one batch of logged records into bbolt through the shared committer, then lets the
// log recycle what is applied.
func (q *Bolt) apply(recs []loggedRecord) error {
	batches := make([]loggedBatch, len(recs))
	for i, r := range recs {
		b, err := decodeLogged(r.payload)
		if err != nil {
			// Enqueue encoded it moments ago: only a bug gets here.
			return q.applyFailed(fmt.Errorf("log record %d: %w", r.lsn, err))
		}
		batches[i] = b
	}
	last := recs[len(recs)-1].lsn
	err := <-q.committer.Submit(boltcommit.Write{
		Apply: func(tx *bbolt.Tx) error { return applyLogged(tx, batches, last) },
		Committed: func() {
			// The keys move from reserved to the unflushed set in one step under resMu, so that
			// a concurrent Enqueue finds each of them in one place or the other.
			q.resMu.Lock()
			for i, b := range batches {
				exp := b.enqueued + int64(DedupWindow)
				for _, k := range b.keys {
					// A later call may hold the key anew once this entry expired.
					if r := q.reserved[string(k)]; r != nil && r.expiry == exp {
						delete(q.reserved, string(k))
					}
				}
				q.addUnflushed(b, recs[i].lsn)
			}
			full := len(q.unflushed) >= q.flushKeys
			q.resMu.Unlock()
			if full {
				q.kickFlush()
			}
			q.applyMu.Lock()
			for _, r := range recs {
				q.pendingBytes.Add(-int64(len(r.payload)))
			}
			clear(q.pending[:len(recs)]) // let the payloads go
			q.pending = q.pending[len(recs):]
			q.applied, q.applyErr = last, nil
			close(q.appliedCh)
			q.appliedCh = make(chan struct{})
			q.applyMu.Unlock()
		},
	})
	if err != nil {
		return q.applyFailed(fmt.Errorf("apply log records up to %d: %w", last, err))
	}
	q.releaseLog()
	return nil
}

func (q *Bolt) applyFailed(err error) error {
	q.applyMu.Lock()
	q.applyErr = err
	close(q.appliedCh)
	q.appliedCh = make(chan struct{})
	q.applyMu.Unlock()
	return err
}

// waitApplied waits until every record logged before the call is in bbolt, so that an event whose
// Enqueue returned is visible to Lease.
func (q *Bolt) waitApplied(ctx context.Context) error {
	target := q.log.LastLSN()
	for urged := false; ; {
		q.applyMu.Lock()
		applied, changed, err := q.applied, q.appliedCh, q.applyErr
		q.applyMu.Unlock()
		if applied >= target {
			return nil
		}
		if err != nil {
			return err
		}
		if !urged {
			select {
			case q.applyUrgent <- struct{}{}:
			default:
			}
			urged = true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-q.applyDone:
			return ErrClosed
		}
	}
}

// maxUnapplied bounds the bytes of logged events waiting for the applier, which are held in
// memory: past it Enqueue waits for the applier, so a stalled or slow bbolt shows up as enqueue
// latency instead of memory growth. At 20,000 events a second it is 0.4 s of events, twenty times
// what the applier lets gather.
const maxUnapplied = 8 << 20

// waitRoom waits while the applier is more than maxUnapplied behind.
func (q *Bolt) waitRoom(ctx context.Context) error {
	if q.pendingBytes.Load() < maxUnapplied {
		return nil // the usual case, without applyMu
	}
	for {
		q.applyMu.Lock() // pendingBytes and appliedCh change together under it
		behind, changed, err := q.pendingBytes.Load(), q.appliedCh, q.applyErr
		q.applyMu.Unlock()
		if behind < maxUnapplied {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case q.applyUrgent <- struct{}{}:
		default:
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-q.applyDone:
			return ErrClosed
		}
	}
}

// reservation holds dedup keys from the moment an Enqueue decides they are new until the applier
// has put them in the on-disk index, so that two calls with the same key never both log it.
type reservation struct {
	done   chan struct{} // closed once logged is final
	logged bool
	expiry int64 // when the key may be enqueued again, unix ns
}
