package queue

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	"go.etcd.io/bbolt"

	"github.com/caddy-capi/caddy-capi/capi/internal/boltcommit"
)

// The dedup index is written lazily. Its keys are random, so inserting them as events are logged
// would dirty nearly every leaf page of queue.dedup in every transaction. Instead Enqueue leaves
// the keys it logged in an exact in-memory set (key → expiry), and a flush writes the set to
// queue.dedup sorted, so each leaf page is written once per flush rather than once per transaction:
// when the set passes DedupFlushKeys, every DedupFlushInterval, and on Close.
//
// The write-ahead log is the set's durability. Beside the base (resident.go), queue.log holds the
// dedup checkpoint: every record up to it has its keys in queue.dedup. The log releases segments
// only below both checkpoints, and OpenBolt replays every record above the dedup checkpoint into
// the set, so a key is never lost inside its window.
//
// A key's life, and where Enqueue looks for it, in order: the ristretto cache (a hint: keys found in
// the index before, so that a repeated duplicate is not read from disk again), reserved (decided
// new, being logged), unflushed (logged, in the set), flushing (logged, in the set being written),
// the bbolt index behind its filter (dedupfilter.go). A key moves from one to the next only under
// resMu, and leaves flushing only after its flush committed, so a check under resMu followed by a
// read of the index never misses a key that is somewhere. Logged keys are not put in the cache:
// the exact sets hold them until they are flushed, and the cache's admission work for every event
// cost more than it saved.

// dedupFlushedKey, in logBucket, holds the dedup checkpoint: the LSN up to which every logged
// record's keys are in the dedup index. Files written before it existed kept the index current with
// every apply transaction, so there its absence means the base.
var dedupFlushedKey = []byte("dedup-flushed")

// defaultDedupFlushKeys is the set's size that starts a flush. A Go map of [16]byte → int64 takes
// about 40 bytes a key up to 229,376 keys (7/8 of 2^18 slots), then doubles: 200,000 keys, and the
// few thousand Enqueue adds before the flush takes them, stay below the doubling, about 8 MiB.
// At 20,000 events a second that is a flush every 10 s, holding up to ~200 MiB of log (1 KiB
// events) that cannot be released before it.
const defaultDedupFlushKeys = 200_000

// defaultDedupFlushInterval bounds how long a key waits in memory, and so how much log a slow
// trickle of events keeps on disk and replays at the next open.
const defaultDedupFlushInterval = 30 * time.Second

// dedupFlushChunk is how many keys of a flush share one bbolt write. Sorted, they dirty the index's
// pages in one key range per write; in chunks, a flush never holds bbolt's writer, which
// settlements and the visitor store share, for more than a few tens of milliseconds.
const dedupFlushChunk = 16_384

// maxUnflushedFactor bounds the set at that many times DedupFlushKeys while flushes fail or fall
// behind: past it Enqueue waits for a flush, so a failing disk shows as latency, not memory. With
// the default bound, memory for keys is then at most about 42 MiB: 16 MiB for the set (a map
// doubled past 229,376 keys), as much for a set of that size being flushed, and 10 MiB for its
// sorted copy. Normally it is about 16 MiB between flushes (the set filling, and the one the last
// flush emptied, kept for the next) and about 21 MiB at the peak of a flush: 8 MiB for the set
// being flushed, 5 MiB for its sorted copy and the new set filling meanwhile.
const maxUnflushedFactor = 2

// dedupEntry is one key of a flush.
type dedupEntry struct {
	key    [dedupKeySize]byte
	expiry int64
}

// heldUnflushed reports whether the set (or the part of it being flushed) holds key within its
// window. The caller holds resMu.
func (q *Bolt) heldUnflushed(key []byte, now int64) bool {
	k := [dedupKeySize]byte(key)
	if exp, ok := q.unflushed[k]; ok && exp > now {
		return true
	}
	exp, ok := q.flushing[k]
	return ok && exp > now
}

// addUnflushed puts the keys of the batch logged as record lsn into the set. The set's LSN moves
// only over records whose keys are all in: Enqueue calls return in any order, and a flush must not
// take the checkpoint past a record whose keys are still on their way. The caller holds resMu.
func (q *Bolt) addUnflushed(b loggedBatch, lsn uint64) {
	exp := b.enqueued + int64(DedupWindow)
	for _, k := range b.keys {
		q.unflushed[[dedupKeySize]byte(k)] = exp
	}
	if len(b.keys) > 0 {
		q.unflushedMin = min(q.unflushedMin, exp)
	}
	if lsn != q.unflushedLSN+1 {
		q.logged[lsn] = struct{}{}
		return
	}
	q.unflushedLSN = lsn
	for {
		if _, ok := q.logged[q.unflushedLSN+1]; !ok {
			return
		}
		delete(q.logged, q.unflushedLSN+1)
		q.unflushedLSN++
	}
}

// FlushDedup writes the logged dedup keys still in memory to the on-disk index, sorted, and moves
// the dedup checkpoint so the log can release what they were kept for. The queue runs it when the
// set passes Options.DedupFlushKeys, every Options.DedupFlushInterval and on Close; a key is exact
// for Enqueue whether or not it was flushed.
func (q *Bolt) FlushDedup(ctx context.Context) error {
	q.flushMu.Lock()
	defer q.flushMu.Unlock()
	q.resMu.Lock()
	if q.flushing == nil {
		// Otherwise a failed flush's keys are written first, and the set grows meanwhile.
		q.flushing, q.flushingLSN = q.unflushed, q.unflushedLSN
		// The set a flush emptied is filled again: a new map would grow to the same size,
		// doubling, with every key allocated for again (about 70 bytes an event).
		next := q.spareSet
		if next == nil {
			next = make(map[[dedupKeySize]byte]int64)
		}
		q.spareSet = nil
		q.unflushed, q.unflushedMin = next, math.MaxInt64
	}
	set, lsn := q.flushing, q.flushingLSN
	q.resMu.Unlock()
	q.logMu.Lock()
	nothing := len(set) == 0 && lsn <= q.flushed
	q.logMu.Unlock()
	if nothing {
		q.resMu.Lock()
		q.spareSet = set
		q.flushing = nil
		q.resMu.Unlock()
		return nil
	}
	// set is read without the lock: nothing writes a map once it is flushing.
	now := q.now().UnixNano()
	entries := make([]dedupEntry, 0, len(set))
	for k, exp := range set {
		if exp > now { // an expired key needs no entry
			entries = append(entries, dedupEntry{k, exp})
		}
	}
	slices.SortFunc(entries, func(a, b dedupEntry) int { return bytes.Compare(a.key[:], b.key[:]) })
	// Into the filter before the index, and so before they leave flushing: Enqueue, once it no
	// longer finds a key in memory, reads the index only if the filter says it may be there. In
	// chunks, so that Enqueue is not held up for the whole set.
	for start := 0; start < len(entries); start += filterChunk {
		q.resMu.Lock()
		for _, e := range entries[start:min(start+filterChunk, len(entries))] {
			q.filter.add(e.key[:])
		}
		q.resMu.Unlock()
	}
	for start := 0; ; start += dedupFlushChunk {
		part := entries[start:min(start+dedupFlushChunk, len(entries))]
		last := start+len(part) == len(entries)
		err := q.submit(ctx, boltcommit.Write{Apply: func(tx *bbolt.Tx) error {
			index := tx.Bucket(dedupBucket)
			var v [8]byte
			for _, e := range part {
				binary.BigEndian.PutUint64(v[:], uint64(e.expiry))
				if err := index.Put(e.key[:], v[:]); err != nil {
					return err
				}
			}
			if !last {
				return nil
			}
			return tx.Bucket(logBucket).Put(dedupFlushedKey, binary.BigEndian.AppendUint64(nil, lsn))
		}}, false)
		if err != nil {
			return fmt.Errorf("queue: flush %d dedup keys up to log record %d: %w", len(entries), lsn, err)
		}
		if last {
			break
		}
	}
	q.resMu.Lock()
	clear(set) // keeps its buckets for the next set
	q.spareSet = set
	q.flushing = nil
	full := q.filter.full()
	q.resMu.Unlock()
	q.logMu.Lock()
	q.flushed = max(q.flushed, lsn)
	q.logMu.Unlock()
	q.releaseLog()
	if full {
		// Sized for twice the index as it is now. Only a flush adds keys to the index, and this
		// one holds flushMu, so the new filter misses none.
		f, err := buildIndexFilter(q.db)
		if err != nil {
			return err // the old filter stays: still exact, only less selective
		}
		q.resMu.Lock()
		q.filter = f
		q.resMu.Unlock()
	}
	return nil
}

// filterChunk is how many keys a flush adds to the filter per hold of resMu.
const filterChunk = 4096

// releaseLog lets the log recycle the segments below both checkpoints. A failed release leaves
// segments on disk until the next one succeeds; nothing is lost.
func (q *Bolt) releaseLog() {
	q.logMu.Lock()
	lsn := min(q.base, q.flushed)
	q.logMu.Unlock()
	_ = q.log.Release(lsn)
}

// kickFlush asks the flush loop for a flush now.
func (q *Bolt) kickFlush() {
	select {
	case q.flushKick <- struct{}{}:
	default:
	}
}

// flushLoop flushes the dedup set when kicked and every interval until Close, retrying a failed
// flush after a growing pause. Each outcome replaces flushedCh, on which Enqueue waits while the set
// is full.
func (q *Bolt) flushLoop(every time.Duration) {
	defer close(q.flushDone)
	t := time.NewTicker(every)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-q.flushStop:
			return
		case <-t.C:
		case <-q.flushKick:
		}
		err := q.FlushDedup(context.Background())
		q.resMu.Lock()
		q.flushErr = err
		close(q.flushedCh)
		q.flushedCh = make(chan struct{})
		q.resMu.Unlock()
		if err == nil {
			failures = 0
			continue
		}
		failures++
		select {
		case <-time.After(min(time.Duration(failures)*100*time.Millisecond, 5*time.Second)):
		case <-q.flushStop:
			return
		}
	}
}

// sweepUnflushed deletes up to limit (all when limit ≤ 0) expired keys from the set and returns how
// many. Keys in a set being flushed are left to the flush, which skips expired ones. The set holds
// keys enqueued within the last flush interval, so it normally has none that expired and is not
// scanned.
func (q *Bolt) sweepUnflushed(now int64, limit int) int {
	q.resMu.Lock()
	defer q.resMu.Unlock()
	if q.unflushedMin > now {
		return 0
	}
	n, least := 0, int64(math.MaxInt64)
	for k, exp := range q.unflushed {
		if exp <= now && (limit <= 0 || n < limit) {
			delete(q.unflushed, k)
			n++
			continue
		}
		least = min(least, exp)
	}
	q.unflushedMin = least
	return n
}

// dedupFlushedLSN reads the dedup checkpoint; the base stands in for it in a file written before
// it existed (the applier of that time kept the index current with every transaction).
func dedupFlushedLSN(tx *bbolt.Tx, base uint64) (uint64, error) {
	v := tx.Bucket(logBucket).Get(dedupFlushedKey)
	switch len(v) {
	case 0:
		return base, nil
	case 8:
		return binary.BigEndian.Uint64(v), nil
	default:
		return 0, fmt.Errorf("%w: dedup checkpoint of %d bytes", errBadRecord, len(v))
	}
}
