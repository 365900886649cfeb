// Package queuetest is the behavioural test suite every queue.Queue implementation must pass, so the
// embedded (bbolt) and the cluster (Redis) queues keep one contract. It holds no implementation.
package queuetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/queue"
)

// Backend opens queues of one implementation for the suite.
type Backend struct {
	// Open returns a new, empty queue that reads the time from now. The test closes it (Close may
	// be called twice).
	Open func(t *testing.T, now func() time.Time) queue.Queue
	// Reopen closes q without settling its leases, as a crash would leave it, and opens the same
	// storage again.
	Reopen func(t *testing.T, q queue.Queue, now func() time.Time) queue.Queue
}

// Clock is a settable time source.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var start = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// Event returns a distinct, fully populated event with the given ID.
func Event(id string) event.Event {
	return event.Event{
		Name:         "Purchase",
		ID:           id,
		Time:         start.Add(-time.Minute),
		SourceURL:    "https://shop.example/thanks?order=" + id,
		ActionSource: event.ActionWebsite,
		Value:        "49.90",
		Currency:     "EUR",
		OrderID:      "order-" + id,
		ContentIDs:   []string{"sku-1"},
		Contents:     []event.Content{{ID: "sku-1", Quantity: 2, ItemPrice: "24.95"}},
		Custom:       map[string]string{"coupon": "WINTER"},
		User: event.User{
			ExternalID: "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",
			IP:         "203.0.113.7",
			FBC:        "fb.1.1700000000000.abc",
			Meta:       event.Profile{Emails: []string{"b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"}},
		},
	}
}

// Run runs the suite against b.
func Run(t *testing.T, b Backend) {
	h := func(t *testing.T) (*Clock, queue.Queue) {
		c := NewClock(start)
		q := b.Open(t, c.Now)
		t.Cleanup(func() { q.Close() })
		return c, q
	}
	reopen := func(t *testing.T, c *Clock, q queue.Queue) queue.Queue {
		q2 := b.Reopen(t, q, c.Now)
		t.Cleanup(func() { q2.Close() })
		return q2
	}
	ctx := context.Background()

	t.Run("EnqueuedEventsAreLeasedInOrderAndIntact", func(t *testing.T) {
		_, q := h(t)
		want := []event.Event{Event("a"), Event("b"), Event("c")}
		if n, err := q.Enqueue(ctx, "meta", want...); err != nil || n != 3 {
			t.Fatalf("Enqueue = %d, %v; want 3, nil", n, err)
		}
		items := lease(t, q, "meta", 10)
		if got := ids(items); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
			t.Fatalf("leased %v, want [a b c]", got)
		}
		for i, it := range items {
			if !reflect.DeepEqual(it.Event, want[i]) {
				t.Errorf("event %d changed in the queue:\n got %+v\nwant %+v", i, it.Event, want[i])
			}
			if it.Attempts != 0 || it.LastReason != "" || !it.Enqueued.Equal(start) {
				t.Errorf("fresh item %d: attempts %d, reason %q, enqueued %v", i, it.Attempts, it.LastReason, it.Enqueued)
			}
		}
	})

	t.Run("PlatformsArePartitioned", func(t *testing.T) {
		_, q := h(t)
		enqueue(t, q, "meta", "m1")
		enqueue(t, q, "tiktok", "t1", "t2")
		if got := ids(lease(t, q, "tiktok", 10)); !reflect.DeepEqual(got, []string{"t1", "t2"}) {
			t.Fatalf("tiktok leased %v", got)
		}
		if got := ids(lease(t, q, "meta", 10)); !reflect.DeepEqual(got, []string{"m1"}) {
			t.Fatalf("meta leased %v", got)
		}
		if got := lease(t, q, "google", 10); len(got) != 0 {
			t.Fatalf("google leased %v from an empty partition", ids(got))
		}
	})

	t.Run("LeasedEventsAreNotLeasedAgainUntilReleased", func(t *testing.T) {
		_, q := h(t)
		enqueue(t, q, "meta", "a", "b", "c")
		first := lease(t, q, "meta", 2)
		if got := ids(lease(t, q, "meta", 10)); !reflect.DeepEqual(got, []string{"c"}) {
			t.Fatalf("second lease got %v, want [c]", got)
		}
		q.Release("meta", first[0].Receipt)
		if got := ids(lease(t, q, "meta", 10)); !reflect.DeepEqual(got, []string{"a"}) {
			t.Fatalf("after release got %v, want [a]", got)
		}
	})

	t.Run("AckedEventsAreGoneEvenAfterReopen", func(t *testing.T) {
		c, q := h(t)
		enqueue(t, q, "meta", "a", "b")
		items := lease(t, q, "meta", 10)
		settle(t, q, "meta", queue.Settlement{Receipt: items[0].Receipt, Outcome: queue.Ack})
		// A second settlement of the same receipt is a no-op, as after a retried write.
		settle(t, q, "meta", queue.Settlement{Receipt: items[0].Receipt, Outcome: queue.Ack})
		if d := depth(t, q, "meta"); d != 1 {
			t.Fatalf("depth after one ack = %d, want 1", d)
		}
		q = reopen(t, c, q)
		if got := ids(lease(t, q, "meta", 10)); !reflect.DeepEqual(got, []string{"b"}) {
			t.Fatalf("after reopen leased %v, want [b]", got)
		}
	})

	t.Run("UnsettledLeasesAreDeliveredAgainAfterReopen", func(t *testing.T) {
		c, q := h(t)
		enqueue(t, q, "meta", "a", "b", "c", "d")
		items := lease(t, q, "meta", 10)
		settle(t, q, "meta", queue.Settlement{Receipt: items[1].Receipt, Outcome: queue.Ack})
		q = reopen(t, c, q)
		if got := ids(lease(t, q, "meta", 10)); !reflect.DeepEqual(got, []string{"a", "c", "d"}) {
			t.Fatalf("after crash leased %v, want [a c d]", got)
		}
		if d := depth(t, q, "meta"); d != 3 {
			t.Fatalf("depth after reopen = %d, want 3", d)
		}
	})

	t.Run("ASettlementThatFailsStillEndsItsLeases", func(t *testing.T) {
		_, q := h(t)
		enqueue(t, q, "meta", "a", "b")
		items := lease(t, q, "meta", 10)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := q.Settle(cctx, "meta", queue.Settlement{Receipt: items[0].Receipt, Outcome: queue.Ack}); err == nil {
			t.Fatal("Settle with a cancelled context succeeded")
		}
		err := q.Settle(ctx, "meta",
			queue.Settlement{Receipt: items[1].Receipt, Outcome: queue.Ack},
			queue.Settlement{Receipt: "not a receipt", Outcome: queue.Ack})
		if err == nil {
			t.Fatal("Settle accepted a receipt that is not one of the queue's")
		}
		if got := ids(lease(t, q, "meta", 10)); !reflect.DeepEqual(got, []string{"a", "b"}) {
			t.Fatalf("after failed settlements leased %v, want [a b] due again", got)
		}
	})

	t.Run("RescheduledEventsWaitForNotBeforeAndKeepTheirIdentity", func(t *testing.T) {
		c, q := h(t)
		enqueue(t, q, "meta", "a")
		it := lease(t, q, "meta", 1)[0]
		settle(t, q, "meta", queue.Settlement{Receipt: it.Receipt, Outcome: queue.Reschedule,
			NotBefore: c.Now().Add(time.Minute), Attempts: 1, Reason: "503 Service Unavailable"})
		if got := lease(t, q, "meta", 10); len(got) != 0 {
			t.Fatalf("leased %v before its not-before", ids(got))
		}
		c.Advance(time.Minute)
		got := lease(t, q, "meta", 10)
		if len(got) != 1 || got[0].Event.ID != "a" || got[0].Attempts != 1 || got[0].LastReason != "503 Service Unavailable" {
			t.Fatalf("after not-before got %+v", got)
		}
		if !got[0].Enqueued.Equal(start) {
			t.Errorf("rescheduling changed Enqueued to %v", got[0].Enqueued)
		}
	})

	t.Run("OrderIsNotBeforeThenArrival", func(t *testing.T) {
		c, q := h(t)
		enqueue(t, q, "meta", "a", "b")
		a := lease(t, q, "meta", 1)[0]
		settle(t, q, "meta", queue.Settlement{Receipt: a.Receipt, Outcome: queue.Reschedule, NotBefore: c.Now().Add(time.Second), Attempts: 1})
		c.Advance(2 * time.Second)
		enqueue(t, q, "meta", "c")
		if got := ids(lease(t, q, "meta", 10)); !reflect.DeepEqual(got, []string{"b", "a", "c"}) {
			t.Fatalf("leased %v, want [b a c]", got)
		}
	})

	t.Run("BuriedEventsAreListedReplayedAndDropped", func(t *testing.T) {
		c, q := h(t)
		enqueue(t, q, "meta", "good", "bad", "worse")
		items := lease(t, q, "meta", 10)
		c.Advance(time.Minute)
		settle(t, q, "meta",
			queue.Settlement{Receipt: items[0].Receipt, Outcome: queue.Ack},
			queue.Settlement{Receipt: items[1].Receipt, Outcome: queue.Bury, Attempts: 1, Reason: "Invalid parameter"},
			queue.Settlement{Receipt: items[2].Receipt, Outcome: queue.Bury, Attempts: 3, Reason: "older than the platform accepts"},
		)
		st := stats(t, q)["meta"]
		if st.Depth != 0 || st.DeadLetters != 2 || st.Leased != 0 {
			t.Fatalf("stats = %+v, want depth 0, 2 dead letters, none leased", st)
		}
		dead, err := q.DeadLetters(ctx, "meta", "", 10)
		if err != nil || len(dead) != 2 {
			t.Fatalf("DeadLetters = %d, %v", len(dead), err)
		}
		d := dead[0]
		if d.Event.ID != "bad" || d.Reason != "Invalid parameter" || d.Attempts != 1 || d.Platform != "meta" ||
			!d.Enqueued.Equal(start) || !d.Buried.Equal(start.Add(time.Minute)) || !reflect.DeepEqual(d.Event, Event("bad")) {
			t.Fatalf("dead letter = %+v", d)
		}
		page, err := q.DeadLetters(ctx, "meta", d.ID, 10)
		if err != nil || len(page) != 1 || page[0].Event.ID != "worse" {
			t.Fatalf("second page = %+v, %v", page, err)
		}
		if got := lease(t, q, "meta", 10); len(got) != 0 {
			t.Fatalf("dead letters were leased: %v", ids(got))
		}
		if n, err := q.Replay(ctx, "meta", d.ID); err != nil || n != 1 {
			t.Fatalf("Replay = %d, %v", n, err)
		}
		got := lease(t, q, "meta", 10)
		if len(got) != 1 || got[0].Event.ID != "bad" || got[0].Attempts != 0 {
			t.Fatalf("after replay leased %+v", got)
		}
		if n, err := q.Drop(ctx, "meta"); err != nil || n != 1 {
			t.Fatalf("Drop all = %d, %v", n, err)
		}
		if st := stats(t, q)["meta"]; st.DeadLetters != 0 || st.Depth != 1 {
			t.Fatalf("after drop stats = %+v", st)
		}
		if _, err := q.Replay(ctx, "meta", "not-an-id"); err == nil {
			t.Fatal("Replay accepted a malformed ID")
		}
	})

	t.Run("ReplayAllSurvivesReopen", func(t *testing.T) {
		c, q := h(t)
		enqueue(t, q, "tiktok", "a", "b")
		var ss []queue.Settlement
		for _, it := range lease(t, q, "tiktok", 10) {
			ss = append(ss, queue.Settlement{Receipt: it.Receipt, Outcome: queue.Bury, Attempts: 1, Reason: "40001"})
		}
		settle(t, q, "tiktok", ss...)
		q = reopen(t, c, q)
		if st := stats(t, q)["tiktok"]; st.DeadLetters != 2 || st.Depth != 0 {
			t.Fatalf("after reopen stats = %+v", st)
		}
		if n, err := q.Replay(ctx, "tiktok"); err != nil || n != 2 {
			t.Fatalf("Replay all = %d, %v", n, err)
		}
		if got := ids(lease(t, q, "tiktok", 10)); !reflect.DeepEqual(got, []string{"a", "b"}) {
			t.Fatalf("after replay all leased %v", got)
		}
	})

	t.Run("DuplicatesWithin48HoursAreNotEnqueued", func(t *testing.T) {
		c, q := h(t)
		if n := enqueue(t, q, "meta", "a", "a"); n != 1 {
			t.Fatalf("same event twice in one call: %d new, want 1", n)
		}
		tests := []struct {
			name     string
			platform string
			ev       event.Event
			advance  time.Duration
			want     int
		}{
			{"same key again", "meta", Event("a"), 0, 0},
			{"same ID on another platform", "tiktok", Event("a"), 0, 1},
			{"same ID under another name", "meta", withName(Event("a"), "Lead"), 0, 1},
			{"same key just inside the window", "meta", Event("a"), queue.DedupWindow - time.Second, 0},
			{"same key after the window", "meta", Event("a"), 2 * time.Second, 1},
			{"the renewed key again", "meta", Event("a"), time.Hour, 0},
		}
		for _, tt := range tests {
			c.Advance(tt.advance)
			n, err := q.Enqueue(ctx, tt.platform, tt.ev)
			if err != nil || n != tt.want {
				t.Errorf("%s: Enqueue = %d, %v; want %d", tt.name, n, err, tt.want)
			}
		}
	})

	t.Run("DedupSurvivesReopen", func(t *testing.T) {
		c, q := h(t)
		enqueue(t, q, "meta", "a")
		q = reopen(t, c, q)
		if n := enqueue(t, q, "meta", "a", "b"); n != 1 {
			t.Fatalf("after reopen %d new, want 1 (only b)", n)
		}
	})

	t.Run("InvalidEventsAreRefusedAndNothingOfTheCallIsStored", func(t *testing.T) {
		_, q := h(t)
		long := Event(string(make([]byte, 4096)))
		for _, tc := range []struct {
			name     string
			platform string
			events   []event.Event
		}{
			{"missing ID", "meta", []event.Event{Event("ok"), {Name: "Purchase"}}},
			{"missing name", "meta", []event.Event{Event("ok"), {ID: "x"}}},
			{"oversized ID", "meta", []event.Event{Event("ok"), long}},
			{"no platform", "", []event.Event{Event("ok")}},
		} {
			if n, err := q.Enqueue(ctx, tc.platform, tc.events...); err == nil || n != 0 {
				t.Errorf("%s: Enqueue = %d, %v; want an error", tc.name, n, err)
			}
		}
		if got := lease(t, q, "meta", 10); len(got) != 0 {
			t.Fatalf("a refused call stored %v", ids(got))
		}
		if n := enqueue(t, q, "meta", "ok"); n != 1 {
			t.Fatalf("a refused call marked its valid event as seen")
		}
	})

	t.Run("ConcurrentProducersAndConsumersLoseAndDoubleNothing", func(t *testing.T) {
		_, q := h(t)
		const producers, perProducer, consumers = 8, 200, 4
		var wg sync.WaitGroup
		for p := range producers {
			wg.Go(func() {
				for i := range perProducer {
					if _, err := q.Enqueue(ctx, "meta", Event(fmt.Sprintf("%d-%d", p, i))); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		var produced atomic.Bool
		var mu sync.Mutex
		seen := make(map[string]int)
		var cw sync.WaitGroup
		for range consumers {
			cw.Go(func() {
				for {
					items, err := q.Lease(ctx, "meta", 50)
					if err != nil {
						t.Error(err)
						return
					}
					if len(items) == 0 {
						if produced.Load() {
							return
						}
						time.Sleep(time.Millisecond)
						continue
					}
					ss := make([]queue.Settlement, len(items))
					mu.Lock()
					for i, it := range items {
						seen[it.Event.ID]++
						ss[i] = queue.Settlement{Receipt: it.Receipt, Outcome: queue.Ack}
					}
					mu.Unlock()
					if err := q.Settle(ctx, "meta", ss...); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		produced.Store(true)
		cw.Wait()
		if len(seen) != producers*perProducer {
			t.Fatalf("consumed %d distinct events, want %d", len(seen), producers*perProducer)
		}
		for id, n := range seen {
			if n != 1 {
				t.Fatalf("event %s leased %d times while held", id, n)
			}
		}
		if d := depth(t, q, "meta"); d != 0 {
			t.Fatalf("depth after draining = %d", d)
		}
	})

	t.Run("ConcurrentEnqueuesOfOneKeyStoreItOnce", func(t *testing.T) {
		_, q := h(t)
		const callers = 16
		for _, id := range []string{"x", "y", "z"} {
			var added atomic.Int64
			var wg sync.WaitGroup
			for range callers {
				wg.Go(func() {
					n, err := q.Enqueue(ctx, "meta", Event(id), Event(id+"-own"))
					if err != nil {
						t.Error(err)
					}
					added.Add(int64(n))
				})
			}
			wg.Wait()
			// Every call also carries a key of its own that all calls share: exactly one call
			// stores each of the two.
			if n := added.Load(); n != 2 {
				t.Errorf("%d callers enqueueing %s at once stored %d events, want 2", callers, id, n)
			}
		}
		if got := ids(lease(t, q, "meta", 100)); len(got) != 6 {
			t.Fatalf("leased %v, want each key once", got)
		}
	})

	t.Run("CancelledEnqueueStoresNothing", func(t *testing.T) {
		_, q := h(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if n, err := q.Enqueue(cctx, "meta", Event("a")); !errors.Is(err, context.Canceled) || n != 0 {
			t.Fatalf("Enqueue with a cancelled context = %d, %v", n, err)
		}
		if n := enqueue(t, q, "meta", "a"); n != 1 {
			t.Fatal("a cancelled enqueue marked its event as seen")
		}
	})

	t.Run("ClosedQueueRefusesWork", func(t *testing.T) {
		_, q := h(t)
		enqueue(t, q, "meta", "a")
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Enqueue(ctx, "meta", Event("b")); !errors.Is(err, queue.ErrClosed) {
			t.Errorf("Enqueue after Close: %v", err)
		}
		if _, err := q.Lease(ctx, "meta", 1); !errors.Is(err, queue.ErrClosed) {
			t.Errorf("Lease after Close: %v", err)
		}
	})
}

func withName(ev event.Event, name string) event.Event {
	ev.Name = name
	return ev
}

func enqueue(t *testing.T, q queue.Queue, platformName string, idList ...string) int {
	t.Helper()
	evs := make([]event.Event, len(idList))
	for i, id := range idList {
		evs[i] = Event(id)
	}
	n, err := q.Enqueue(context.Background(), platformName, evs...)
	if err != nil {
		t.Fatalf("Enqueue %v: %v", idList, err)
	}
	return n
}

func lease(t *testing.T, q queue.Queue, platformName string, n int) []queue.Item {
	t.Helper()
	items, err := q.Lease(context.Background(), platformName, n)
	if err != nil {
		t.Fatalf("Lease: %v", err)
	}
	return items
}

func settle(t *testing.T, q queue.Queue, platformName string, ss ...queue.Settlement) {
	t.Helper()
	if err := q.Settle(context.Background(), platformName, ss...); err != nil {
		t.Fatalf("Settle: %v", err)
	}
}

func stats(t *testing.T, q queue.Queue) map[string]queue.PartitionStats {
	t.Helper()
	s, err := q.Stats(context.Background())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return s
}

func depth(t *testing.T, q queue.Queue, platformName string) int {
	t.Helper()
	return stats(t, q)[platformName].Depth
}

func ids(items []queue.Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.Event.ID
	}
	return out
}
