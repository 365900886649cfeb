package boltcommit_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/caddy-capi/caddy-capi/capi/internal/boltcommit"
)

var bucket = []byte("test")

func openDB(t *testing.T) *bbolt.DB {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "commit.db"), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucket(bucket)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return db
}

// put writes key=value into the test bucket.
func put(key string) boltcommit.Write {
	return boltcommit.Write{Apply: func(tx *bbolt.Tx) error {
		return tx.Bucket(bucket).Put([]byte(key), []byte("v"))
	}}
}

func stored(t *testing.T, db *bbolt.DB, key string) bool {
	t.Helper()
	var ok bool
	if err := db.View(func(tx *bbolt.Tx) error {
		ok = tx.Bucket(bucket).Get([]byte(key)) != nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ok
}

// hold submits a write that blocks its transaction until release is called, and returns once the
// committer is inside that transaction: writes submitted meanwhile wait for the next group.
func hold(t *testing.T, c *boltcommit.Committer) (release func() error) {
	t.Helper()
	inside, gate := make(chan struct{}), make(chan struct{})
	done := c.Submit(boltcommit.Write{Apply: func(tx *bbolt.Tx) error {
		close(inside)
		<-gate
		return nil
	}})
	<-inside
	return func() error { close(gate); return <-done }
}

func TestCommitterGroupsWritesWaitingDuringACommit(t *testing.T) {
	db := openDB(t)
	c := boltcommit.New(db, boltcommit.Options{MaxGroup: 64})
	defer c.Close()

	release := hold(t, c)
	txs := make(map[int]int) // transaction ID → writes it carried
	var mu sync.Mutex
	var dones []<-chan error
	for i := range 50 {
		dones = append(dones, c.Submit(boltcommit.Write{Apply: func(tx *bbolt.Tx) error {
			mu.Lock()
			txs[tx.ID()]++
			mu.Unlock()
			return tx.Bucket(bucket).Put(fmt.Appendf(nil, "k%d", i), []byte("v"))
		}}))
	}
	before := c.Commits()
	if err := release(); err != nil {
		t.Fatal(err)
	}
	for i, done := range dones {
		if err := <-done; err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if n := c.Commits() - before; n != 1 {
		t.Errorf("50 writes waiting together took %d transactions; want 1", n)
	}
	if len(txs) != 1 {
		t.Errorf("writes spread over transactions %v; want one", txs)
	}
	for i := range 50 {
		if !stored(t, db, fmt.Sprintf("k%d", i)) {
			t.Fatalf("k%d is missing after its write reported success", i)
		}
	}
}

func TestCommitterCapsGroupAtMaxGroup(t *testing.T) {
	db := openDB(t)
	const maxGroup, writes = 4, 40
	c := boltcommit.New(db, boltcommit.Options{MaxGroup: maxGroup})
	defer c.Close()

	release := hold(t, c)
	var mu sync.Mutex
	txs := make(map[int]int)
	var wg sync.WaitGroup
	errs := make(chan error, writes)
	for i := range writes {
		wg.Go(func() {
			// Submit blocks while maxGroup writes wait, so the rest queue up behind them.
			errs <- <-c.Submit(boltcommit.Write{Apply: func(tx *bbolt.Tx) error {
				mu.Lock()
				txs[tx.ID()]++
				mu.Unlock()
				return tx.Bucket(bucket).Put(fmt.Appendf(nil, "k%d", i), []byte("v"))
			}})
		})
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for id, n := range txs {
		if n > maxGroup {
			t.Errorf("transaction %d carried %d writes; want at most %d", id, n, maxGroup)
		}
		total += n
	}
	if total != writes {
		t.Errorf("%d writes applied in the committed transactions; want %d", total, writes)
	}
}

func TestCommitterIsolatesAFailingWrite(t *testing.T) {
	db := openDB(t)
	c := boltcommit.New(db, boltcommit.Options{})
	defer c.Close()

	release := hold(t, c)
	bad := errors.New("bad write")
	var committed atomic.Int32
	good := func(key string) boltcommit.Write {
		w := put(key)
		w.Committed = func() { committed.Add(1) }
		return w
	}
	first := c.Submit(good("before"))
	failing := c.Submit(boltcommit.Write{
		Apply: func(tx *bbolt.Tx) error {
			if err := tx.Bucket(bucket).Put([]byte("bad"), []byte("v")); err != nil {
				return err
			}
			return bad
		},
		Committed: func() { t.Error("Committed ran for a write that failed") },
	})
	last := c.Submit(good("after"))
	before := c.Commits()
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Errorf("write before the failing one: %v", err)
	}
	if err := <-failing; !errors.Is(err, bad) {
		t.Errorf("failing write got %v; want its own error", err)
	}
	if err := <-last; err != nil {
		t.Errorf("write after the failing one: %v", err)
	}
	// One group try plus one retry per write.
	if n := c.Commits() - before; n != 4 {
		t.Errorf("a failed group of 3 took %d transactions; want 4 (the group, then each alone)", n)
	}
	if committed.Load() != 2 {
		t.Errorf("Committed ran %d times; want 2 (the good writes)", committed.Load())
	}
	if !stored(t, db, "before") || !stored(t, db, "after") {
		t.Error("a good write was lost with the failing one")
	}
	if stored(t, db, "bad") {
		t.Error("the failing write's partial change was committed")
	}
}

func TestCommitterCommittedRunsBeforeTheOutcome(t *testing.T) {
	db := openDB(t)
	c := boltcommit.New(db, boltcommit.Options{})
	defer c.Close()
	var ran atomic.Bool
	w := put("k")
	w.Committed = func() { ran.Store(true) }
	if err := <-c.Submit(w); err != nil {
		t.Fatal(err)
	}
	if !ran.Load() {
		t.Error("the outcome arrived before Committed ran")
	}
}

func TestCommitterCloseDrainsSubmittedWrites(t *testing.T) {
	db := openDB(t)
	closedErr := errors.New("store closed")
	c := boltcommit.New(db, boltcommit.Options{Closed: closedErr})

	release := hold(t, c)
	var dones []<-chan error
	for i := range 10 {
		dones = append(dones, c.Submit(put(fmt.Sprintf("k%d", i))))
	}
	closed := make(chan error)
	go func() { closed <- c.Close() }()
	// Close waits for the committer, which is still inside the held transaction.
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a transaction was open", err)
	case <-time.After(20 * time.Millisecond):
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("first Close = %v; want nil", err)
	}
	for i, done := range dones {
		if err := <-done; err != nil {
			t.Errorf("write %d submitted before Close: %v", i, err)
		}
		if !stored(t, db, fmt.Sprintf("k%d", i)) {
			t.Errorf("write %d submitted before Close is not on disk", i)
		}
	}
	if !c.Closed() {
		t.Error("Closed() = false after Close")
	}
	if err := <-c.Submit(put("late")); !errors.Is(err, closedErr) {
		t.Errorf("write after Close got %v; want the configured %v", err, closedErr)
	}
	if stored(t, db, "late") {
		t.Error("a write submitted after Close was committed")
	}
	if err := c.Close(); !errors.Is(err, closedErr) {
		t.Errorf("second Close = %v; want %v", err, closedErr)
	}
	// The database stays its opener's.
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucket).Put([]byte("x"), nil) }); err != nil {
		t.Errorf("database unusable after Close: %v", err)
	}
}

func TestCommitterDefaultClosedError(t *testing.T) {
	c := boltcommit.New(openDB(t), boltcommit.Options{})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-c.Submit(put("k")); !errors.Is(err, boltcommit.ErrClosed) {
		t.Errorf("write after Close got %v; want ErrClosed", err)
	}
}

func TestCommitterConcurrentWritersAllLand(t *testing.T) {
	db := openDB(t)
	c := boltcommit.New(db, boltcommit.Options{MaxGroup: 16})
	const writers, each = 32, 20
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := <-c.Submit(put(fmt.Sprintf("w%d-%d", w, i))); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.View(func(tx *bbolt.Tx) error { n = tx.Bucket(bucket).Stats().KeyN; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != writers*each {
		t.Errorf("%d keys on disk; want %d", n, writers*each)
	}
	if c.Commits() > writers*each {
		t.Errorf("%d transactions for %d writes", c.Commits(), writers*each)
	}
}

// BenchmarkCommitterParallel measures the committer's own cost per write (grouping, channels,
// goroutine hand-offs) with NoSync, so that fsync does not hide it.
func BenchmarkCommitterParallel(b *testing.B) {
	db, err := bbolt.Open(filepath.Join(b.TempDir(), "bench.db"), 0o600, &bbolt.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket(bucket); return err }); err != nil {
		b.Fatal(err)
	}
	c := boltcommit.New(db, boltcommit.Options{})
	defer c.Close()
	var seq atomic.Uint64
	b.ReportAllocs()
	b.SetParallelism(32)
	before := c.Commits()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := fmt.Appendf(nil, "%016d", seq.Add(1))
			if err := <-c.Submit(boltcommit.Write{Apply: func(tx *bbolt.Tx) error {
				return tx.Bucket(bucket).Put(k, k)
			}}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/float64(c.Commits()-before), "writes/commit")
}
