package delivery_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/caddy-capi/caddy-capi/capi/delivery"
	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/platform"
	"github.com/caddy-capi/caddy-capi/capi/queue"
	"github.com/caddy-capi/caddy-capi/capi/queue/queuetest"
)

// fakeSender is a platform that records every send. answer decides the Result; nil delivers all.
type fakeSender struct {
	name     string
	maxBatch int
	maxAge   time.Duration
	sleep    time.Duration

	mu        sync.Mutex
	answer    func(evs []event.Event) platform.Result
	sends     [][]string     // IDs of each send, in order
	delivered map[string]int // ID → times the platform accepted it

	inflight, maxInflight atomic.Int64
}

func newFake(name string) *fakeSender {
	return &fakeSender{name: name, maxBatch: 1000, maxAge: 7 * 24 * time.Hour, delivered: map[string]int{}}
}

func (f *fakeSender) Platform() string      { return f.name }
func (f *fakeSender) MaxBatch() int         { return f.maxBatch }
func (f *fakeSender) MaxAge() time.Duration { return f.maxAge }

func (f *fakeSender) Send(ctx context.Context, evs []event.Event) platform.Result {
	n := f.inflight.Add(1)
	defer f.inflight.Add(-1)
	for {
		m := f.maxInflight.Load()
		if n <= m || f.maxInflight.CompareAndSwap(m, n) {
			break
		}
	}
	if f.sleep > 0 {
		select {
		case <-time.After(f.sleep):
		case <-ctx.Done():
			return platform.Result{Outcome: platform.Retry, Reason: ctx.Err().Error()}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID
	}
	f.sends = append(f.sends, ids)
	res := platform.Result{Outcome: platform.Delivered}
	if f.answer != nil {
		res = f.answer(evs)
	}
	if res.WholeBatch && res.Outcome != platform.Delivered {
		return res
	}
	for i, ev := range evs {
		o := res.Outcome
		if r, ok := res.Events[i]; ok {
			o = r.Outcome
		}
		if o == platform.Delivered {
			f.delivered[ev.ID]++
		}
	}
	return res
}

func (f *fakeSender) setAnswer(a func(evs []event.Event) platform.Result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answer = a
}

func (f *fakeSender) deliveredCount(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.delivered[id]
}

func (f *fakeSender) distinctDelivered() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.delivered)
}

func (f *fakeSender) sendLog() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]string(nil), f.sends...)
}

// countingObserver records the Observer calls.
type countingObserver struct {
	mu                                         sync.Mutex
	enqueued, delivered, retried, deadLettered map[string]int
	latencies                                  int
	depth                                      map[string]int
}

func newObserver() *countingObserver {
	return &countingObserver{enqueued: map[string]int{}, delivered: map[string]int{}, retried: map[string]int{},
		deadLettered: map[string]int{}, depth: map[string]int{}}
}

func (o *countingObserver) Enqueued(p string, n int)     { o.add(o.enqueued, p, n) }
func (o *countingObserver) Delivered(p string, n int)    { o.add(o.delivered, p, n) }
func (o *countingObserver) Retried(p string, n int)      { o.add(o.retried, p, n) }
func (o *countingObserver) DeadLettered(p string, n int) { o.add(o.deadLettered, p, n) }
func (o *countingObserver) DeliveryLatency(p string, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.latencies++
}
func (o *countingObserver) QueueDepth(p string, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.depth[p] = n
}
func (o *countingObserver) add(m map[string]int, p string, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	m[p] += n
}
func (o *countingObserver) get(m map[string]int, p string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return m[p]
}

// openQueue opens a Bolt queue on a real file in dir.
func openQueue(tb testing.TB, dir string) (*queue.Bolt, *bbolt.DB) {
	tb.Helper()
	db, err := bbolt.Open(filepath.Join(dir, "capi.db"), 0o600, queue.BoltOptions(5*time.Second))
	if err != nil {
		tb.Fatal(err)
	}
	q, err := queue.OpenBolt(db, queue.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return q, db
}

// newEngine returns an engine over a fresh queue, closed with the test.
func newEngine(tb testing.TB, opts delivery.Options) (*delivery.Engine, *queue.Bolt) {
	tb.Helper()
	q, db := openQueue(tb, tb.TempDir())
	if opts.BackoffBase == 0 {
		opts.BackoffBase, opts.BackoffCap = 5*time.Millisecond, 50*time.Millisecond
	}
	if opts.Poll == 0 {
		opts.Poll = 10 * time.Millisecond
	}
	e := delivery.New(q, opts)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		e.Close(ctx)
		q.Close()
		db.Close()
	})
	return e, q
}

func events(prefix string, n int) []event.Event {
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = queuetest.Event(fmt.Sprintf("%s-%04d", prefix, i))
		evs[i].Time = time.Now().Add(-time.Minute)
	}
	return evs
}

func mustEnqueue(tb testing.TB, e *delivery.Engine, platformName string, evs ...event.Event) {
	tb.Helper()
	if n, err := e.Enqueue(context.Background(), platformName, evs...); err != nil || n != len(evs) {
		tb.Fatalf("Enqueue = %d, %v; want %d new", n, err, len(evs))
	}
}

// eventually waits up to 20s for cond; the delivery is asynchronous by design.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func platformStats(tb testing.TB, e *delivery.Engine, p string) delivery.PlatformStats {
	tb.Helper()
	st, err := e.Stats(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return st[p]
}
