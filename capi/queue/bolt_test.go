package queue_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/queue"
	"github.com/caddy-capi/caddy-capi/capi/queue/queuetest"
)

// openDB opens a bbolt file as the Caddy glue does: with a lock timeout.
func openDB(tb testing.TB, path string) *bbolt.DB {
	tb.Helper()
	db, err := bbolt.Open(path, 0o600, queue.BoltOptions(time.Second))
	if err != nil {
		tb.Fatal(err)
	}
	return db
}

func openBolt(tb testing.TB, path string, opts queue.Options) *queue.Bolt {
	tb.Helper()
	db := openDB(tb, path)
	q, err := queue.OpenBolt(db, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		q.Close()
		db.Close()
	})
	return q
}

// boltQueue pairs a queue with its file so Reopen can close both, as a crash would.
type boltQueue struct {
	*queue.Bolt
	db *bbolt.DB
}

func (b boltQueue) Close() error {
	b.Bolt.Close()
	return b.db.Close()
}

func boltBackend(opts queue.Options) queuetest.Backend {
	open := func(t *testing.T, path string, now func() time.Time) queue.Queue {
		db := openDB(t, path)
		opts.Now = now
		q, err := queue.OpenBolt(db, opts)
		if err != nil {
			t.Fatal(err)
		}
		return boltQueue{q, db}
	}
	return queuetest.Backend{
		Open: func(t *testing.T, now func() time.Time) queue.Queue {
			return open(t, filepath.Join(t.TempDir(), "capi.db"), now)
		},
		Reopen: func(t *testing.T, q queue.Queue, now func() time.Time) queue.Queue {
			bq := q.(boltQueue)
			path := bq.db.Path()
			bq.Close()
			return open(t, path, now)
		},
	}
}

func TestBoltQueue(t *testing.T) {
	queuetest.Run(t, boltBackend(queue.Options{}))
}

// TestBoltQueueFlushingDedupKeysConstantly runs the suite with a dedup flush after every few
// logged keys, so that keys move from the reservations to the unflushed set to the on-disk index
// while the suite's concurrent enqueues of one key look for them.
func TestBoltQueueFlushingDedupKeysConstantly(t *testing.T) {
	queuetest.Run(t, boltBackend(queue.Options{DedupFlushKeys: 2}))
}

func TestBoltLeavesOtherBucketsAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capi.db")
	db := openDB(t, path)
	defer db.Close()
	err := db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket([]byte("visitor.records"))
		if err != nil {
			return err
		}
		return b.Put([]byte("v1"), []byte("hashed profile"))
	})
	if err != nil {
		t.Fatal(err)
	}
	q, err := queue.OpenBolt(db, queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Enqueue(context.Background(), "meta", queuetest.Event("a")); err != nil {
		t.Fatal(err)
	}
	q.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			switch n := string(name); {
			case n == "visitor.records":
				if got := string(b.Get([]byte("v1"))); got != "hashed profile" {
					t.Errorf("visitor record changed to %q", got)
				}
			case len(n) < 5 || n[:5] != "queue":
				t.Errorf("queue created bucket %q outside its prefix", n)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSettleRefusesReceiptsItDidNotIssue(t *testing.T) {
	q := openBolt(t, filepath.Join(t.TempDir(), "capi.db"), queue.Options{})
	ctx := context.Background()
	if _, err := q.Enqueue(ctx, "meta", queuetest.Event("a")); err != nil {
		t.Fatal(err)
	}
	items, err := q.Lease(ctx, "meta", 1)
	if err != nil || len(items) != 1 {
		t.Fatalf("Lease = %v, %v", items, err)
	}
	err = q.Settle(ctx, "meta", queue.Settlement{Receipt: items[0].Receipt, Outcome: queue.Ack}, queue.Settlement{Receipt: "bogus", Outcome: queue.Ack})
	if err == nil {
		t.Fatal("Settle accepted a receipt the queue never issued")
	}
	if st, _ := q.Stats(ctx); st["meta"].Depth != 1 {
		t.Fatalf("a refused settlement changed the queue: %+v", st["meta"])
	}
}

func TestSweepDeletesOnlyExpiredDedupEntries(t *testing.T) {
	// Where the keys are when the sweep runs: held in memory for the next flush, or flushed to the
	// on-disk index.
	tests := []struct {
		name                 string
		flushOld, flushYoung bool
	}{
		{"unflushed", false, false},
		{"flushed", true, true},
		{"old flushed, young unflushed", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testSweep(t, tt.flushOld, tt.flushYoung)
		})
	}
}

func testSweep(t *testing.T, flushOld, flushYoung bool) {
	clock := queuetest.NewClock(time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC))
	path := filepath.Join(t.TempDir(), "capi.db")
	q := openBolt(t, path, queue.Options{Now: clock.Now})
	ctx := context.Background()
	flushIf := func(flush bool) {
		t.Helper()
		if !flush {
			return
		}
		if err := q.FlushDedup(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		if _, err := q.Enqueue(ctx, "meta", queuetest.Event(fmt.Sprint("old", i))); err != nil {
			t.Fatal(err)
		}
	}
	flushIf(flushOld)
	clock.Advance(24 * time.Hour)
	if _, err := q.Enqueue(ctx, "meta", queuetest.Event("young")); err != nil {
		t.Fatal(err)
	}
	flushIf(flushYoung)
	clock.Advance(24*time.Hour + time.Second)
	if n, err := q.SweepDedup(ctx, 2); err != nil || n != 2 {
		t.Fatalf("SweepDedup(limit 2) = %d, %v; want 2", n, err)
	}
	if n, err := q.SweepDedup(ctx, 0); err != nil || n != 3 {
		t.Fatalf("SweepDedup = %d, %v; want the 3 expired entries left", n, err)
	}
	if n, err := q.SweepDedup(ctx, 0); err != nil || n != 0 {
		t.Fatalf("second SweepDedup = %d, %v; want 0", n, err)
	}
	if n, _ := q.Enqueue(ctx, "meta", queuetest.Event("young")); n != 0 {
		t.Fatal("the sweep forgot an entry still inside its window")
	}
	if n, _ := q.Enqueue(ctx, "meta", queuetest.Event("old0")); n != 1 {
		t.Fatal("an expired entry still blocks its key after the sweep")
	}
}

// TestWaitingEventsStayOnDisk enqueues a million events and checks that the heap does not grow with
// them: waiting events live in the log and, past its limit, in the bbolt file (mmap'd, not heap);
// memory holds only bounded caches.
func TestWaitingEventsStayOnDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("enqueues a million events")
	}
	const total, chunk = 1_000_000, 1000
	q := openBolt(t, filepath.Join(t.TempDir(), "capi.db"), queue.Options{})
	ctx := context.Background()
	batch := make([]event.Event, chunk)
	fill := func(from, to int) {
		for i := from; i < to; i += chunk {
			for j := range batch {
				batch[j] = queuetest.Event(fmt.Sprintf("ev-%07d", i+j))
			}
			if _, err := q.Enqueue(ctx, "meta", batch...); err != nil {
				t.Fatal(err)
			}
		}
	}
	settled := func() uint64 {
		// Measured between flushes and with every partition's window drained.
		catchUp(t, q)
		return heapInUse()
	}
	empty := settled()
	// The first 100,000 fill the bounded dedup cache and half the unflushed dedup set; growth
	// after that would be per event.
	fill(0, 100_000)
	warm := settled()
	fill(100_000, total)
	after := settled()
	st, _ := q.Stats(ctx)
	if st["meta"].Depth != total {
		t.Fatalf("depth %d, want %d", st["meta"].Depth, total)
	}
	t.Logf("heap in use: %.1f MiB empty, %.1f MiB after 100k events, %.1f MiB after %d (%+.1f MiB)",
		mib(empty), mib(warm), mib(after), total, mib(after)-mib(warm))
	// 900,000 more events at ~1 KiB each would be ~900 MiB if held; allow noise, not growth.
	if grow := int64(after) - int64(warm); grow > 32<<20 {
		t.Fatalf("heap grew by %.1f MiB while 900,000 events were added: waiting events are held in memory", float64(grow)/(1<<20))
	}
	// Past its limit the log moved the oldest waiting events into bbolt: its length is bounded
	// too, by the limit and by the dedup keys not yet flushed (up to DedupFlushKeys of them).
	if n := q.Segments(); n > 2*queue.MaxLogSegments {
		t.Fatalf("the log holds %d segments with a limit of %d: waiting events are not moved out of it", n, queue.MaxLogSegments)
	}
	items, err := q.Lease(ctx, "meta", 3)
	if err != nil || len(items) != 3 || items[0].Event.ID != "ev-0000000" {
		t.Fatalf("lease from a million: %v, %v", len(items), err)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func pagesWritten(db *bbolt.DB) int64 {
	st := db.Stats()
	return st.TxStats.GetWrite()
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// BenchmarkEnqueueDurable measures one-event Enqueue calls from many concurrent producers against a
// real file with fsync, as the request path uses it, and reports the p99 latency of a call.
// events/fsync is how many enqueues share one flush of the write-ahead log; events/commit and
// pages/event are the applier's bbolt transactions behind it.
func BenchmarkEnqueueDurable(b *testing.B) {
	for _, producers := range []int{1, 64, 256} {
		b.Run(fmt.Sprintf("producers=%d", producers), func(b *testing.B) {
			db := openDB(b, filepath.Join(b.TempDir(), "capi.db"))
			defer db.Close()
			q, err := queue.OpenBolt(db, queue.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			ctx := context.Background()
			var seq atomic.Int64
			lat := make([][]time.Duration, 0, 1024)
			var latMu = make(chan struct{}, 1)
			latMu <- struct{}{}
			// RunParallel starts parallelism×GOMAXPROCS goroutines.
			b.SetParallelism(max(1, producers/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			b.ResetTimer()
			commits, cpu, pages, writes := q.Commits(), processCPU(), pagesWritten(db), q.LogWrites()
			b.RunParallel(func(pb *testing.PB) {
				mine := make([]time.Duration, 0, 4096)
				ev := queuetest.Event("")
				for pb.Next() {
					ev.ID = fmt.Sprint("bench-", seq.Add(1))
					t0 := time.Now()
					if _, err := q.Enqueue(ctx, "meta", ev); err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(t0))
				}
				<-latMu
				lat = append(lat, mine)
				latMu <- struct{}{}
			})
			b.StopTimer()
			all := slices.Concat(lat...)
			slices.Sort(all)
			if len(all) > 0 {
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
				b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(b.N)/float64(q.LogWrites()-writes), "events/fsync")
			b.ReportMetric(float64(b.N)/float64(q.Commits()-commits), "events/commit")
			b.ReportMetric(float64(pagesWritten(db)-pages)/float64(b.N), "pages/event")
			// CPU per event is what the throughput would be on an idle machine; wall-clock numbers
			// on a shared one depend on the neighbours.
			b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/event")
		})
	}
}
