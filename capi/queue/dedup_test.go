package queue_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/caddy-capi/caddy-capi/capi/queue"
	"github.com/caddy-capi/caddy-capi/capi/queue/queuetest"
)

// indexed counts the entries of the on-disk dedup index.
func indexed(t *testing.T, db *bbolt.DB) int {
	t.Helper()
	n := 0
	err := db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket([]byte("queue.dedup")); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func enqueueEach(t *testing.T, q *queue.Bolt, ids ...string) int {
	t.Helper()
	return enqueueEachOn(t, q, "meta", ids...)
}

// enqueueEachOn enqueues one event per ID for the platform, one call each, and returns how many
// were new.
func enqueueEachOn(t *testing.T, q *queue.Bolt, platformName string, ids ...string) int {
	t.Helper()
	added := 0
	for _, id := range ids {
		n, err := q.Enqueue(context.Background(), platformName, queuetest.Event(id))
		if err != nil {
			t.Fatalf("Enqueue %s: %v", id, err)
		}
		added += n
	}
	return added
}

func idRange(prefix string, from, to int) []string {
	ids := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		ids = append(ids, fmt.Sprintf("%s-%04d", prefix, i))
	}
	return ids
}

// TestDedupHoldsAcrossRestartWithKeysLoggedButNotFlushed: events whose dedup keys were only in
// memory when the process died are still refused after the restart (the log kept
// them), and a clean Close writes them to the index and lets the log go.
func TestDedupHoldsAcrossRestartWithKeysLoggedButNotFlushed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capi.db")
	q, db, err := openAt(t, path, queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n := enqueueEach(t, q, "a", "b"); n != 2 {
		t.Fatalf("stored %d of a, b", n)
	}
	if n := indexed(t, db); n != 0 {
		t.Fatalf("the index holds %d keys before any flush: keys are not written lazily", n)
	}
	q.Abandon()
	db.Close()

	q, db, err = openAt(t, path, queue.Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if n := enqueueEach(t, q, "a", "b", "c"); n != 1 {
		t.Fatalf("after a crash with a and b logged but not flushed, Enqueue a, b, c stored %d, want only c", n)
	}
	if got := leaseAll(t, q, "meta"); len(got) != 3 {
		t.Fatalf("leased %v, want a, b, c once each", got)
	}
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := indexed(t, db); n != 3 {
		t.Fatalf("after Close the index holds %d keys, want 3: Close did not flush", n)
	}
	db.Close()

	// Flushed, the keys hold from the index alone: the log has nothing left to replay.
	q, db, err = openAt(t, path, queue.Options{})
	if err != nil {
		t.Fatalf("second reopen: %v", err)
	}
	defer db.Close()
	defer q.Close()
	if n := enqueueEach(t, q, "a", "b", "c"); n != 0 {
		t.Fatalf("after a clean Close, Enqueue a, b, c stored %d again", n)
	}
}

// TestDedupFlushesWhenTheSetPassesItsBound: below the bound (and before the interval) keys stay
// in memory; once the logged keys pass it they are flushed without Close, and the log segments
// that held them are released once their events are delivered.
func TestDedupFlushesWhenTheSetPassesItsBound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capi.db")
	const bound = 100
	opts := queue.Options{DedupFlushKeys: bound, DedupFlushInterval: time.Hour, LogSegmentSize: 16 << 10}
	q, db, err := openAt(t, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	defer q.Close()
	enqueueEach(t, q, idRange("ev", 0, bound/2)...)
	if n := indexed(t, db); n != 0 {
		t.Fatalf("the index holds %d keys with %d logged, below the bound of %d", n, bound/2, bound)
	}
	enqueueEach(t, q, idRange("ev", bound/2, 3*bound)...)
	// The events are delivered: only the dedup keys may hold the log now.
	ackAll(t, q, "meta")
	// The flush runs in the background once the set passes the bound.
	deadline := time.Now().Add(10 * time.Second)
	for indexed(t, db) < 2*bound && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := indexed(t, db); n < 2*bound {
		t.Fatalf("the index holds %d of %d logged keys with a bound of %d: the bound does not flush", n, 3*bound, bound)
	}
	if err := q.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	// About 16 events a segment: 300 events are ~19 segments, of which only those holding keys
	// not yet flushed (fewer than the bound) may stay.
	if n := q.Segments(); n > bound/16+3 {
		t.Fatalf("%d log segments kept with at most %d keys unflushed", n, bound)
	}
	if n := enqueueEach(t, q, idRange("ev", 0, 3*bound)...); n != 0 {
		t.Fatalf("re-enqueueing every flushed and unflushed key stored %d", n)
	}
}

// Keys that only the on-disk index holds (flushed, and gone from the small ristretto cache) are
// refused as duplicates in the same process: the index filter learns them before they leave
// memory. Past the filter's capacity a flush rebuilds it larger, and it still knows every key.
func TestDedupKeysOnlyOnDiskAreRefusedAndTheFilterGrows(t *testing.T) {
	queue.SetMinFilterCapacity(t, 64)
	db := openDB(t, filepath.Join(t.TempDir(), "capi.db"))
	q, err := queue.OpenBolt(db, queue.Options{DedupCacheSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	first := idRange("disk", 0, 100)
	if n := enqueueEach(t, q, first...); n != len(first) {
		t.Fatalf("%d of %d new", n, len(first))
	}
	if err := q.FlushDedup(ctx); err != nil {
		t.Fatal(err)
	}
	if got := indexed(t, db); got != len(first) {
		t.Fatalf("index holds %d keys, want %d", got, len(first))
	}
	if n := enqueueEach(t, q, first...); n != 0 {
		t.Fatalf("%d keys only on disk were enqueued again", n)
	}
	if c := q.FilterCapacity(); c < 2*len(first) {
		t.Fatalf("filter capacity %d after %d keys past its size; want it rebuilt for twice the index", c, len(first))
	}
	more := idRange("disk", 100, 300)
	if n := enqueueEach(t, q, more...); n != len(more) {
		t.Fatalf("%d of %d new keys enqueued: the filter refused new keys", n, len(more))
	}
	if err := q.FlushDedup(ctx); err != nil {
		t.Fatal(err)
	}
	if n := enqueueEach(t, q, append(first, more...)...); n != 0 {
		t.Fatalf("%d keys only on disk were enqueued again after the filter was rebuilt", n)
	}
}

// A call that carries a key only the on-disk index holds, before a new one, stores the new one and
// leaves no reservation behind: a later call with the old key is answered at once.
func TestDuplicateFromTheIndexBesideANewKeyLeavesNoReservation(t *testing.T) {
	q := openBolt(t, filepath.Join(t.TempDir(), "capi.db"), queue.Options{})
	ctx := context.Background()
	if n := enqueueEach(t, q, "a"); n != 1 {
		t.Fatal("a was not new")
	}
	if err := q.FlushDedup(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := q.Enqueue(ctx, "meta", queuetest.Event("a"), queuetest.Event("b")); err != nil || n != 1 {
		t.Fatalf("Enqueue a, b = %d, %v; want only b new", n, err)
	}
	// A key left reserved would make every later call with it wait for a call long gone (here
	// the cache of index hits hides that, until it forgets the key).
	if n := q.Reserved(); n != 0 {
		t.Fatalf("%d dedup keys still reserved with no call in flight", n)
	}
	for _, id := range []string{"a", "b"} {
		short, cancel := context.WithTimeout(ctx, 2*time.Second)
		n, err := q.Enqueue(short, "meta", queuetest.Event(id))
		cancel()
		if err != nil || n != 0 {
			t.Fatalf("Enqueue %s again = %d, %v; want a duplicate at once", id, n, err)
		}
	}
}
