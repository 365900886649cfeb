package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/caddy-capi/caddy-capi/capi/store"
)

func TestBackgroundWriterCountsDropsAndDrainsOnDestruct(t *testing.T) {
	w := newBackgroundWriter()
	dropped := edgeStats().backgroundDropped.WithLabelValues("test-drop")
	before := counterValue(t, dropped)

	release := make(chan struct{})
	started := make(chan struct{})
	var ran atomic.Int64
	if !w.submit("test-drop", func(context.Context) error { close(started); <-release; ran.Add(1); return nil }) {
		t.Fatal("the first job was refused")
	}
	<-started
	for i := range backgroundQueueSize {
		if !w.submit("test-drop", func(context.Context) error { ran.Add(1); return nil }) {
			t.Fatalf("job %d refused before the queue was full", i)
		}
	}
	if w.submit("test-drop", func(context.Context) error { ran.Add(1); return nil }) {
		t.Fatal("a job was taken beyond the queue's bound")
	}
	if got := counterValue(t, dropped) - before; got != 1 {
		t.Fatalf("dropped jobs counted %v, want 1", got)
	}

	close(release)
	if err := w.Destruct(); err != nil {
		t.Fatal(err)
	}
	if got := ran.Load(); got != backgroundQueueSize+1 {
		t.Fatalf("%d jobs ran; Destruct must finish the %d that were waiting", got, backgroundQueueSize+1)
	}
	if w.submit("test-drop", func(context.Context) error { return nil }) {
		t.Fatal("a stopped writer took a job")
	}
	if got := counterValue(t, dropped) - before; got != 2 {
		t.Fatalf("a job refused after Destruct was not counted: %v", got)
	}
}

// TestEdgeBurstOfNewVisitorsIsWrittenInGroups sends 2,000 first visits, each minting a visitor whose
// record the background writer must write, at up to newVisitorRate a second (a campaign's landing
// page): at one fsync per record (about 1 ms on the development machine) the writer would fall
// behind by a thousand records a second and drop.
func TestEdgeBurstOfNewVisitorsIsWrittenInGroups(t *testing.T) {
	const newVisitorRate, tick = 3000, 10 * time.Millisecond
	s := newTestSite(t, `{}`, nil)
	dropped := edgeStats().backgroundDropped.WithLabelValues(jobVisitor)
	failed := edgeStats().backgroundFailed.WithLabelValues(jobVisitor)
	droppedBefore, failedBefore := counterValue(t, dropped), counterValue(t, failed)
	visitors := s.app.storage.visitors
	commits := visitors.Commits()

	const burst = 2000
	ids := make([]string, 0, burst)
	start := time.Now()
	for i := range burst {
		// Pace the visits: newVisitorRate a second, sent a tick's worth at a time.
		if ahead := time.Duration(i/(newVisitorRate*int(tick)/int(time.Second)))*tick - time.Since(start); ahead > 0 {
			time.Sleep(ahead)
		}
		clear(s.jar) // a new browser each time
		s.page(fmt.Sprintf("https://shop.example.com/landing?fbclid=IwAR%05d", i))
		id := s.jar["_capi_vid"]
		if id == "" {
			t.Fatalf("visit %d set no visitor cookie", i)
		}
		ids = append(ids, id)
	}
	elapsed := time.Since(start)
	s.settle()

	if got := counterValue(t, dropped) - droppedBefore; got != 0 {
		t.Errorf("%v visitor writes dropped during the burst; want none", got)
	}
	if got := counterValue(t, failed) - failedBefore; got != 0 {
		t.Errorf("%v visitor writes failed during the burst", got)
	}
	ctx := context.Background()
	for i, id := range ids {
		v, ok, err := visitors.FindByClickID(ctx, store.ClickFBCLID, fmt.Sprintf("IwAR%05d", i))
		if err != nil || !ok || v.ID != id {
			t.Fatalf("visitor %d (%s) after the burst: found %v (%q), %v", i, id, ok, v.ID, err)
		}
	}
	n := visitors.Commits() - commits
	t.Logf("%d new visitors in %v, written in %d transactions", burst, elapsed.Round(time.Millisecond), n)
	if n >= burst {
		t.Errorf("%d new visitors took %d transactions; want them grouped", burst, n)
	}
}

// batchCounter is a visitor store that counts how its writes arrive.
type batchCounter struct {
	*store.Bolt
	updates, batches atomic.Int64
	batched          atomic.Int64
}

func (b *batchCounter) Update(ctx context.Context, id string, fn func(*store.Visitor) error) (store.Visitor, error) {
	b.updates.Add(1)
	return b.Bolt.Update(ctx, id, fn)
}

func (b *batchCounter) UpdateMany(ctx context.Context, changes []store.Change) []error {
	b.batches.Add(1)
	b.batched.Add(int64(len(changes)))
	return b.Bolt.UpdateMany(ctx, changes)
}

// onlyStore hides the Batcher of the store it holds, as a store without UpdateMany would be.
type onlyStore struct{ store.Store }

func openTestVisitors(t *testing.T) *store.Bolt {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "capi.db"), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.OpenBolt(db, store.Options{})
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		db.Close()
	})
	return s
}

func TestBackgroundWriterGroupsVisitorWrites(t *testing.T) {
	boom := errors.New("boom")
	for _, tt := range []struct {
		name    string
		batcher bool
	}{{"store with UpdateMany", true}, {"store without UpdateMany", false}} {
		t.Run(tt.name, func(t *testing.T) {
			counted := &batchCounter{Bolt: openTestVisitors(t)}
			var visitors store.Store = counted
			if !tt.batcher {
				visitors = onlyStore{counted}
			}
			w := newBackgroundWriter()
			failed := edgeStats().backgroundFailed.WithLabelValues(jobVisitor)
			failedBefore := counterValue(t, failed)

			// Hold the writer so the jobs below wait together, as a burst finds it busy. It must
			// be running the holding job before they come: otherwise it may gather the first few
			// of them with it into a group of their own.
			release, holding := make(chan struct{}), make(chan struct{})
			w.submit("test", func(context.Context) error { close(holding); <-release; return nil })
			<-holding
			const jobs = 300
			for i := range jobs {
				fn := func(v *store.Visitor) error {
					v.CartTokens = append(v.CartTokens, fmt.Sprint("cart-", i))
					return nil
				}
				if i == 7 {
					fn = func(*store.Visitor) error { return boom }
				}
				if !w.submitVisitor(func(context.Context) (visitorWrite, error) {
					return visitorWrite{visitors: visitors, change: store.Change{ID: fmt.Sprint("visitor-", i), Fn: fn}}, nil
				}) {
					t.Fatalf("job %d refused", i)
				}
			}
			// A job that decides there is nothing to write.
			w.submitVisitor(func(context.Context) (visitorWrite, error) { return visitorWrite{}, nil })
			close(release)
			if err := w.Destruct(); err != nil {
				t.Fatal(err)
			}

			ctx := context.Background()
			for i := range jobs {
				_, ok, err := counted.FindByCartToken(ctx, fmt.Sprint("cart-", i))
				if want := i != 7; ok != want || err != nil {
					t.Errorf("visitor %d written = %v, %v; want %v", i, ok, err, want)
				}
			}
			if got := counterValue(t, failed) - failedBefore; got != 1 {
				t.Errorf("failed visitor writes counted %v; want 1", got)
			}
			if tt.batcher {
				// 300 jobs in groups of at most backgroundGroup: two transactions.
				if counted.updates.Load() != 0 || counted.batches.Load() > 2 || counted.batched.Load() != jobs {
					t.Errorf("updates %d, batches %d of %d changes; want %d changes in at most 2 batches",
						counted.updates.Load(), counted.batches.Load(), counted.batched.Load(), jobs)
				}
			} else if counted.updates.Load() != jobs || counted.batches.Load() != 0 {
				t.Errorf("updates %d, batches %d; want one Update per change", counted.updates.Load(), counted.batches.Load())
			}
		})
	}
}

// TestBackgroundWriterLingersOnlyWhenBusy: after a large group the writer waits for more jobs, so
// two visitor writes submitted a few milliseconds apart share one transaction; an idle writer
// commits a lone job at once.
func TestBackgroundWriterLingersOnlyWhenBusy(t *testing.T) {
	counted := &batchCounter{Bolt: openTestVisitors(t)}
	w := newBackgroundWriter()
	t.Cleanup(func() { w.Destruct() })
	write := func(id string) chan struct{} {
		done := make(chan struct{})
		w.submitVisitor(func(context.Context) (visitorWrite, error) {
			return visitorWrite{visitors: counted, change: store.Change{ID: id, Fn: func(*store.Visitor) error { return nil }},
				written: func() { close(done) }}, nil
		})
		return done
	}
	waitAll := func(chs ...chan struct{}) {
		for _, c := range chs {
			select {
			case <-c:
			case <-time.After(10 * time.Second):
				t.Fatal("a visitor write never completed")
			}
		}
	}

	// Idle: a lone write is committed without waiting out the linger.
	start := time.Now()
	waitAll(write("idle"))
	if d := time.Since(start); d >= backgroundLinger {
		t.Errorf("an idle writer took %v for a lone job; want no lingering", d)
	}

	// Busy: a held writer gathers a large group, and the group after it lingers.
	release := make(chan struct{})
	w.submit("test", func(context.Context) error { <-release; return nil })
	var burst []chan struct{}
	for i := range backgroundBusy {
		burst = append(burst, write(fmt.Sprint("burst-", i)))
	}
	close(release)
	waitAll(burst...)
	batches := counted.batches.Load()
	a := write("a")
	time.Sleep(backgroundLinger / 5)
	b := write("b")
	waitAll(a, b)
	if n := counted.batches.Load() - batches; n != 1 {
		t.Errorf("two writes %v apart after a burst took %d transactions; want them lingered into one", backgroundLinger/5, n)
	}
}
