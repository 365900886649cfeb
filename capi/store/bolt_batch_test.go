package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/store"
	"github.com/caddy-capi/caddy-capi/capi/store/storetest"
)

// newVisitor is the change the edge's background writer makes for a new visitor: identity, a click
// and a cart token, so every index is involved.
func newVisitor(i int) store.Change {
	return store.Change{ID: fmt.Sprintf("visitor%05d", i), Fn: func(v *store.Visitor) error {
		v.User.IP = "203.0.113.7"
		v.User.UserAgent = "Mozilla/5.0 (X11; Linux x86_64)"
		v.User.Meta.Emails = []string{storetest.Hash(fmt.Sprint("shopper", i))}
		v.Clicks = map[string]store.Click{store.ClickFBCLID: {Value: fmt.Sprintf("IwAR%05d", i)}}
		v.CartTokens = []string{fmt.Sprintf("cart%05d", i)}
		return nil
	}}
}

func TestBoltUpdateManyWritesEveryChangeWithItsIndexes(t *testing.T) {
	s, _ := openBolt(t, filepath.Join(t.TempDir(), "capi.db"), store.Options{})
	ctx := context.Background()
	changes := make([]store.Change, 300)
	for i := range changes {
		changes[i] = newVisitor(i)
	}
	commits := s.Commits()
	for i, err := range s.UpdateMany(ctx, changes) {
		if err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
	}
	if n := s.Commits() - commits; n != 1 {
		t.Errorf("UpdateMany of %d records took %d transactions; want 1", len(changes), n)
	}
	for i := range changes {
		id := changes[i].ID
		if v, ok, err := s.Get(ctx, id); err != nil || !ok || v.Created.IsZero() || v.Updated.IsZero() {
			t.Fatalf("Get(%s) = %+v, %v, %v; want the record with its times", id, v, ok, err)
		}
		for what, find := range map[string]func() (store.Visitor, bool, error){
			"click": func() (store.Visitor, bool, error) {
				return s.FindByClickID(ctx, store.ClickFBCLID, fmt.Sprintf("IwAR%05d", i))
			},
			"email": func() (store.Visitor, bool, error) {
				return s.FindByEmailHash(ctx, storetest.Hash(fmt.Sprint("shopper", i)))
			},
			"cart": func() (store.Visitor, bool, error) { return s.FindByCartToken(ctx, fmt.Sprintf("cart%05d", i)) },
		} {
			if v, ok, err := find(); err != nil || !ok || v.ID != id {
				t.Fatalf("find %s of %s = %q, %v, %v", what, id, v.ID, ok, err)
			}
		}
	}
}

func TestBoltUpdateManyFailedChangeLosesNoOther(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name   string
		change store.Change
		want   error // errors.Is target; nil: only that it failed
	}{
		{"update function fails", store.Change{ID: "bad", Fn: func(v *store.Visitor) error {
			v.CartTokens = []string{"cart-of-bad"}
			return boom
		}}, boom},
		{"plaintext profile is refused", store.Change{ID: "bad", Fn: func(v *store.Visitor) error {
			v.CartTokens = []string{"cart-of-bad"}
			v.User.Meta.Emails = []string{"alice@example.com"}
			return nil
		}}, store.ErrInvalid},
		{"empty ID is refused", store.Change{ID: "", Fn: func(v *store.Visitor) error { return nil }}, store.ErrInvalid},
		// Fails inside the transaction, after its record was put (bbolt refuses keys over 32 KiB):
		// the transaction is retried without it.
		{"storage refuses an index key", store.Change{ID: "bad", Fn: func(v *store.Visitor) error {
			v.CartTokens = []string{"cart-of-bad", strings.Repeat("x", 40_000)}
			return nil
		}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openBolt(t, filepath.Join(t.TempDir(), "capi.db"), store.Options{})
			ctx := context.Background()
			changes := []store.Change{newVisitor(1), newVisitor(2), tt.change, newVisitor(3), newVisitor(4)}
			errs := s.UpdateMany(ctx, changes)
			if len(errs) != len(changes) {
				t.Fatalf("UpdateMany returned %d errors for %d changes", len(errs), len(changes))
			}
			for i, err := range errs {
				switch {
				case i == 2 && err == nil:
					t.Errorf("the failing change reported no error")
				case i == 2 && tt.want != nil && !errors.Is(err, tt.want):
					t.Errorf("the failing change's error = %v; want %v", err, tt.want)
				case i != 2 && err != nil:
					t.Errorf("change %d (good) failed with the bad one: %v", i, err)
				}
			}
			for _, i := range []int{1, 2, 3, 4} {
				if _, ok, err := s.FindByCartToken(ctx, fmt.Sprintf("cart%05d", i)); !ok || err != nil {
					t.Errorf("visitor %d lost: %v, %v", i, ok, err)
				}
			}
			if _, ok, _ := s.Get(ctx, "bad"); ok {
				t.Error("the failing change was written")
			}
			if _, ok, _ := s.FindByCartToken(ctx, "cart-of-bad"); ok {
				t.Error("the failing change left an index entry")
			}
		})
	}
}

func TestBoltUpdateManyAppliesChangesToOneVisitorInOrder(t *testing.T) {
	clock := storetest.NewClock()
	s, _ := openBolt(t, filepath.Join(t.TempDir(), "capi.db"), store.Options{TTL: time.Hour, Now: clock.Now})
	ctx := context.Background()
	if _, err := s.Update(ctx, "v1", func(v *store.Visitor) error {
		v.Clicks = map[string]store.Click{store.ClickGCLID: {Value: "gclid-old"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Get(ctx, "v1"); !ok { // now in the cache
		t.Fatal("record missing")
	}
	time.Sleep(10 * time.Millisecond) // let ristretto admit it
	setClick := func(value string) store.Change {
		return store.Change{ID: "v1", Fn: func(v *store.Visitor) error {
			v.Clicks[store.ClickGCLID] = store.Click{Value: value}
			v.CartTokens = append(v.CartTokens, value)
			return nil
		}}
	}
	for i, err := range s.UpdateMany(ctx, []store.Change{setClick("gclid-a"), setClick("gclid-b")}) {
		if err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
	}
	v, ok, err := s.Get(ctx, "v1")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if got := v.Clicks[store.ClickGCLID].Value; got != "gclid-b" || !slices.Equal(v.CartTokens, []string{"gclid-a", "gclid-b"}) {
		t.Fatalf("record after two changes: click %q, cart tokens %q; want the second click and both tokens (cache not invalidated, or changes lost)", got, v.CartTokens)
	}
	for value, want := range map[string]bool{"gclid-old": false, "gclid-a": false, "gclid-b": true} {
		if _, ok, _ := s.FindByClickID(ctx, store.ClickGCLID, value); ok != want {
			t.Errorf("FindByClickID(%s) found = %v; want %v", value, ok, want)
		}
	}
}

func TestBoltUpdateManyDoesNotResurrectExpiredRecord(t *testing.T) {
	clock := storetest.NewClock()
	s, _ := openBolt(t, filepath.Join(t.TempDir(), "capi.db"), store.Options{TTL: time.Hour, Now: clock.Now})
	ctx := context.Background()
	if _, err := s.Update(ctx, "v1", func(v *store.Visitor) error {
		v.Clicks = map[string]store.Click{store.ClickTTCLID: {Value: "tt-old"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Hour)
	errs := s.UpdateMany(ctx, []store.Change{{ID: "v1", Fn: func(v *store.Visitor) error {
		if len(v.Clicks) != 0 {
			return fmt.Errorf("the update function saw the expired record's clicks %v", v.Clicks)
		}
		v.User.IP = "203.0.113.9"
		return nil
	}}})
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
	if _, ok, _ := s.FindByClickID(ctx, store.ClickTTCLID, "tt-old"); ok {
		t.Error("the expired record's click ID came back")
	}
	if v, _, _ := s.Get(ctx, "v1"); !v.Created.Equal(clock.Now()) {
		t.Errorf("Created = %v; want %v (a new record)", v.Created, clock.Now())
	}
}

func TestBoltUpdateManyCancelledWritesNothing(t *testing.T) {
	s, _ := openBolt(t, filepath.Join(t.TempDir(), "capi.db"), store.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i, err := range s.UpdateMany(ctx, []store.Change{newVisitor(1), newVisitor(2)}) {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("change %d error = %v; want context.Canceled", i, err)
		}
	}
	if _, ok, _ := s.Get(context.Background(), "visitor00001"); ok {
		t.Error("a cancelled UpdateMany wrote a record")
	}
}

func TestBoltMarkSeenGroupsConcurrentCallers(t *testing.T) {
	s, _ := openBolt(t, filepath.Join(t.TempDir(), "capi.db"), store.Options{})
	ctx := context.Background()
	const callers = 200
	commits := s.Commits()
	var wg sync.WaitGroup
	var firsts atomic.Int32
	start := make(chan struct{})
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			first, err := s.MarkSeen(ctx, fmt.Sprint("order-", i), time.Hour)
			if err != nil {
				t.Error(err)
			}
			if first {
				firsts.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if firsts.Load() != callers {
		t.Fatalf("%d of %d distinct keys were first", firsts.Load(), callers)
	}
	if n := s.Commits() - commits; n >= callers {
		t.Errorf("%d concurrent MarkSeen calls took %d transactions; want them grouped", callers, n)
	}
}

func TestBoltMarkSeenSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capi.db")
	ctx := context.Background()
	db := openDB(t, path)
	s, err := store.OpenBolt(db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := s.MarkSeen(ctx, "conversion/Purchase/R1", time.Hour); err != nil || !first {
		t.Fatalf("MarkSeen = %v, %v", first, err)
	}
	s.Close()
	if _, err := s.MarkSeen(ctx, "conversion/Purchase/R2", time.Hour); err == nil {
		t.Error("MarkSeen after Close succeeded")
	}
	db.Close()
	s2, _ := openBolt(t, path, store.Options{})
	if first, err := s2.MarkSeen(ctx, "conversion/Purchase/R1", time.Hour); err != nil || first {
		t.Fatalf("MarkSeen after reopen = %v, %v; want false (the mark was durable)", first, err)
	}
}

// BenchmarkBoltMarkSeenParallel measures MarkSeen from many concurrent callers against a real
// file with fsync, as conversions on the request path call it, and reports the p99 of a call.
func BenchmarkBoltMarkSeenParallel(b *testing.B) {
	for _, callers := range []int{1, 64, 256} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			s, _ := openBolt(b, filepath.Join(b.TempDir(), "capi.db"), store.Options{})
			ctx := context.Background()
			var seq atomic.Int64
			var latMu sync.Mutex
			var lat [][]time.Duration
			b.SetParallelism(max(1, callers/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			b.ResetTimer()
			commits, cpu := s.Commits(), processCPU()
			b.RunParallel(func(pb *testing.PB) {
				mine := make([]time.Duration, 0, 4096)
				for pb.Next() {
					key := fmt.Sprint("conversion/Purchase/order-", seq.Add(1))
					t0 := time.Now()
					if _, err := s.MarkSeen(ctx, key, time.Hour); err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(t0))
				}
				latMu.Lock()
				lat = append(lat, mine)
				latMu.Unlock()
			})
			b.StopTimer()
			all := slices.Concat(lat...)
			slices.Sort(all)
			if len(all) > 0 {
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
				b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(b.N)/float64(s.Commits()-commits), "events/commit")
			b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/event")
		})
	}
}

// BenchmarkBoltNewVisitors writes new visitor records one Update each and in UpdateMany groups of
// 256, as the edge's background writer does under a burst of new visitors.
func BenchmarkBoltNewVisitors(b *testing.B) {
	for _, group := range []int{1, 256} {
		b.Run(fmt.Sprintf("group=%d", group), func(b *testing.B) {
			s, _ := openBolt(b, filepath.Join(b.TempDir(), "capi.db"), store.Options{})
			ctx := context.Background()
			changes := make([]store.Change, 0, group)
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				changes = append(changes, newVisitor(n))
				n++
				if len(changes) < group {
					continue
				}
				for _, err := range s.UpdateMany(ctx, changes) {
					if err != nil {
						b.Fatal(err)
					}
				}
				changes = changes[:0]
			}
			if len(changes) > 0 {
				s.UpdateMany(ctx, changes)
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestBoltUpdateManyLeavesNoStaleCache: readers filling the cache while batches rewrite the same
// records never leave an old record behind once the batch has returned.
func TestBoltUpdateManyLeavesNoStaleCache(t *testing.T) {
	s, _ := openBolt(t, filepath.Join(t.TempDir(), "capi.db"), store.Options{})
	ctx := context.Background()
	const records, rounds = 64, 20
	ids := make([]string, records)
	for i := range ids {
		ids[i] = fmt.Sprint("visitor-", i)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := r; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := s.Get(ctx, ids[i%records]); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for round := range rounds {
		changes := make([]store.Change, records)
		for i, id := range ids {
			changes[i] = store.Change{ID: id, Fn: func(v *store.Visitor) error {
				v.LastPageURL = fmt.Sprint("https://shop.example/p/", round)
				return nil
			}}
		}
		for _, err := range s.UpdateMany(ctx, changes) {
			if err != nil {
				t.Fatal(err)
			}
		}
		for _, id := range ids {
			v, ok, err := s.Get(ctx, id)
			if want := fmt.Sprint("https://shop.example/p/", round); err != nil || !ok || v.LastPageURL != want {
				t.Fatalf("round %d: Get(%s) = %q, %v, %v; want %q (a stale cached record)", round, id, v.LastPageURL, ok, err, want)
			}
		}
	}
	close(stop)
	wg.Wait()
}
