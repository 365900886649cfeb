package delivery_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/delivery"
	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/platform"
)

func TestEveryEventIsDeliveredOnceInBatches(t *testing.T) {
	tests := []struct {
		name      string
		settings  delivery.Settings
		maxBatch  int
		wantBatch int
	}{
		{"batch setting below the platform's cap", delivery.Settings{Workers: 2, Batch: 40, Flush: 10 * time.Millisecond}, 1000, 40},
		{"platform cap below the batch setting", delivery.Settings{Workers: 2, Batch: 500, Flush: 10 * time.Millisecond}, 25, 25},
		{"default batch is the platform's cap", delivery.Settings{Flush: 10 * time.Millisecond}, 60, 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obs := newObserver()
			e, _ := newEngine(t, delivery.Options{Observer: obs})
			f := newFake(platform.Meta)
			f.maxBatch = tt.maxBatch
			e.SetSenders(map[string]platform.Sender{platform.Meta: f}, tt.settings)
			evs := events("ev", 300)
			mustEnqueue(t, e, platform.Meta, evs...)
			eventually(t, "all delivered", func() bool { return f.distinctDelivered() == len(evs) })
			for _, ev := range evs {
				if n := f.deliveredCount(ev.ID); n != 1 {
					t.Errorf("%s delivered %d times", ev.ID, n)
				}
			}
			for _, s := range f.sendLog() {
				if len(s) > tt.wantBatch {
					t.Fatalf("a send carried %d events, more than %d", len(s), tt.wantBatch)
				}
			}
			eventually(t, "stats settle", func() bool {
				st := platformStats(t, e, platform.Meta)
				return st.Delivered == 300 && st.Depth == 0
			})
			st := platformStats(t, e, platform.Meta)
			if st.Enqueued != 300 || st.Retried != 0 || st.DeadLettered != 0 || st.LastDelivery.IsZero() {
				t.Errorf("stats = %+v", st)
			}
			if obs.get(obs.enqueued, platform.Meta) != 300 || obs.get(obs.delivered, platform.Meta) != 300 || obs.latencies != 300 {
				t.Errorf("observer saw enqueued %d, delivered %d, %d latencies", obs.get(obs.enqueued, platform.Meta),
					obs.get(obs.delivered, platform.Meta), obs.latencies)
			}
		})
	}
}

func TestPartialBatchWaitsForFlush(t *testing.T) {
	e, _ := newEngine(t, delivery.Options{})
	f := newFake(platform.TikTok)
	e.SetSenders(map[string]platform.Sender{platform.TikTok: f}, delivery.Settings{Batch: 100, Flush: 300 * time.Millisecond})
	for _, ev := range events("trickle", 5) {
		mustEnqueue(t, e, platform.TikTok, ev)
	}
	eventually(t, "flushed", func() bool { return f.distinctDelivered() == 5 })
	if log := f.sendLog(); len(log) != 1 {
		t.Fatalf("5 events trickling in within the flush interval took %d sends, want 1: %v", len(log), log)
	}
}

func TestBatchFilledOneByOneGoesOutWithoutWaitingForFlush(t *testing.T) {
	e, _ := newEngine(t, delivery.Options{})
	f := newFake(platform.TikTok)
	e.SetSenders(map[string]platform.Sender{platform.TikTok: f}, delivery.Settings{Batch: 10, Flush: time.Hour})
	for _, ev := range events("one", 10) {
		mustEnqueue(t, e, platform.TikTok, ev)
		time.Sleep(2 * time.Millisecond)
	}
	eventually(t, "the full batch sent", func() bool { return f.distinctDelivered() == 10 })
	if log := f.sendLog(); len(log) != 1 {
		t.Fatalf("sends = %v, want one batch of 10", log)
	}
}

func TestOutageRetriesUntilEveryEventIsDelivered(t *testing.T) {
	obs := newObserver()
	e, _ := newEngine(t, delivery.Options{Observer: obs})
	f := newFake(platform.Meta)
	f.setAnswer(func([]event.Event) platform.Result {
		return platform.Result{Outcome: platform.Retry, Reason: "503 Service Unavailable"}
	})
	e.SetSenders(map[string]platform.Sender{platform.Meta: f}, delivery.Settings{Workers: 2, Batch: 50, Flush: 5 * time.Millisecond})

	var wg sync.WaitGroup
	var all []event.Event
	for p := range 4 {
		evs := events(fmt.Sprint("p", p), 150)
		all = append(all, evs...)
		wg.Go(func() {
			for _, ev := range evs {
				mustEnqueue(t, e, platform.Meta, ev)
				time.Sleep(time.Millisecond / 2)
			}
		})
	}
	time.Sleep(150 * time.Millisecond)
	f.setAnswer(nil) // the platform is back
	wg.Wait()
	eventually(t, "all delivered after the outage", func() bool { return f.distinctDelivered() == len(all) })

	sent := map[string]int{}
	for _, s := range f.sendLog() {
		for _, id := range s {
			sent[id]++
		}
	}
	known := map[string]bool{}
	for _, ev := range all {
		known[ev.ID] = true
		if n := f.deliveredCount(ev.ID); n != 1 {
			t.Errorf("%s accepted %d times", ev.ID, n)
		}
	}
	retried := 0
	for id, n := range sent {
		if !known[id] {
			t.Errorf("sent an event ID %q that was never enqueued", id)
		}
		retried += n - 1
	}
	if retried == 0 {
		t.Fatal("the outage caused no retry: the test did not exercise one")
	}
	st := platformStats(t, e, platform.Meta)
	if st.Retried == 0 || st.LastFailure != "503 Service Unavailable" || st.DeadLettered != 0 {
		t.Errorf("stats after outage = %+v", st)
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	e, _ := newEngine(t, delivery.Options{})
	f := newFake(platform.Google)
	f.setAnswer(func([]event.Event) platform.Result {
		return platform.Result{Outcome: platform.Retry, RetryAfter: time.Hour, Reason: "429 Too Many Requests"}
	})
	e.SetSenders(map[string]platform.Sender{platform.Google: f}, delivery.Settings{Flush: time.Millisecond})
	mustEnqueue(t, e, platform.Google, events("g", 1)...)
	eventually(t, "first send", func() bool { return len(f.sendLog()) == 1 })
	time.Sleep(300 * time.Millisecond) // dozens of polls and backoff caps (50ms) pass
	if n := len(f.sendLog()); n != 1 {
		t.Fatalf("sent %d times within the platform's Retry-After of an hour", n)
	}
	if st := platformStats(t, e, platform.Google); st.Depth != 1 || st.Retried != 1 {
		t.Fatalf("stats = %+v, want the event waiting", st)
	}
}

// rejectIfContains answers like Meta: one invalid event sinks the whole batch.
func rejectIfContains(bad *map[string]bool, mu *sync.Mutex) func([]event.Event) platform.Result {
	return func(evs []event.Event) platform.Result {
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range evs {
			if (*bad)[ev.ID] {
				return platform.Result{Outcome: platform.Permanent, WholeBatch: true,
					Reason: "(#100) Invalid parameter: event " + ev.ID}
			}
		}
		return platform.Result{Outcome: platform.Delivered}
	}
}

func TestBatchRejectedAsAWholeIsSplitToIsolateTheBadEvent(t *testing.T) {
	e, _ := newEngine(t, delivery.Options{})
	f := newFake(platform.Meta)
	var mu sync.Mutex
	bad := map[string]bool{"ev-0013": true}
	f.setAnswer(rejectIfContains(&bad, &mu))
	e.SetSenders(map[string]platform.Sender{platform.Meta: f}, delivery.Settings{Batch: 40, Flush: 50 * time.Millisecond})
	evs := events("ev", 40)
	mustEnqueue(t, e, platform.Meta, evs...)

	eventually(t, "the good ones delivered", func() bool { return f.distinctDelivered() == 39 })
	eventually(t, "the bad one dead-lettered", func() bool { return platformStats(t, e, platform.Meta).DeadLetters == 1 })
	dead, err := e.DeadLetters(context.Background(), platform.Meta, "", 10)
	if err != nil || len(dead) != 1 {
		t.Fatalf("DeadLetters = %v, %v", dead, err)
	}
	if d := dead[0]; d.Event.ID != "ev-0013" || d.Reason != "(#100) Invalid parameter: event ev-0013" || d.Attempts != 1 {
		t.Fatalf("dead letter = %+v", d)
	}
	if n := len(f.sendLog()); n > 2*6+1 {
		t.Errorf("isolating one event in 40 took %d sends; halving needs at most 13", n)
	}

	mu.Lock()
	bad = map[string]bool{} // the cause is fixed (say, a mapping corrected)
	mu.Unlock()
	if n, err := e.Replay(context.Background(), platform.Meta, dead[0].ID); err != nil || n != 1 {
		t.Fatalf("Replay = %d, %v", n, err)
	}
	eventually(t, "the replayed event delivered", func() bool { return f.deliveredCount("ev-0013") == 1 })
	eventually(t, "no dead letters left", func() bool {
		st := platformStats(t, e, platform.Meta)
		return st.DeadLetters == 0 && st.Depth == 0
	})
}

func TestNamedOffendersAreDeadLetteredWithoutSplitting(t *testing.T) {
	e, _ := newEngine(t, delivery.Options{})
	f := newFake(platform.Meta)
	f.setAnswer(func(evs []event.Event) platform.Result {
		for i, ev := range evs {
			if ev.ID == "ev-0002" {
				return platform.Result{Outcome: platform.Permanent, WholeBatch: true, Reason: "batch rejected",
					Events: map[int]platform.EventResult{i: {Outcome: platform.Permanent, Reason: "invalid fbc"}}}
			}
		}
		return platform.Result{Outcome: platform.Delivered}
	})
	e.SetSenders(map[string]platform.Sender{platform.Meta: f}, delivery.Settings{Batch: 10, Flush: time.Hour})
	mustEnqueue(t, e, platform.Meta, events("ev", 10)...)
	eventually(t, "delivered", func() bool { return f.distinctDelivered() == 9 })
	if log := f.sendLog(); len(log) != 2 || len(log[1]) != 9 {
		t.Fatalf("sends = %v, want the batch then the 9 others", log)
	}
	eventually(t, "dead-lettered", func() bool { return platformStats(t, e, platform.Meta).DeadLetters == 1 })
	dead, _ := e.DeadLetters(context.Background(), platform.Meta, "", 10)
	if len(dead) != 1 || dead[0].Reason != "invalid fbc" {
		t.Fatalf("dead letters = %+v", dead)
	}
}

func TestPerEventOutcomes(t *testing.T) {
	e, _ := newEngine(t, delivery.Options{})
	f := newFake(platform.Google)
	first := true
	f.setAnswer(func(evs []event.Event) platform.Result {
		if !first {
			return platform.Result{Outcome: platform.Delivered}
		}
		first = false
		return platform.Result{Outcome: platform.Delivered, Events: map[int]platform.EventResult{
			1: {Outcome: platform.Permanent, Reason: "CONVERSION_PRECEDES_CLICK"},
			2: {Outcome: platform.Retry, Reason: "CONCURRENT_MODIFICATION"},
		}}
	})
	e.SetSenders(map[string]platform.Sender{platform.Google: f}, delivery.Settings{Batch: 4, Flush: time.Hour})
	mustEnqueue(t, e, platform.Google, events("g", 4)...)
	eventually(t, "three delivered", func() bool { return f.distinctDelivered() == 3 })
	if f.deliveredCount("g-0001") != 0 || f.deliveredCount("g-0002") != 1 {
		t.Fatalf("the permanent failure was delivered or the retry was not")
	}
	dead, _ := e.DeadLetters(context.Background(), platform.Google, "", 10)
	if len(dead) != 1 || dead[0].Event.ID != "g-0001" || dead[0].Reason != "CONVERSION_PRECEDES_CLICK" {
		t.Fatalf("dead letters = %+v", dead)
	}
}

func TestEventsTooOldAreDeadLetteredUnsent(t *testing.T) {
	e, _ := newEngine(t, delivery.Options{})
	meta, google := newFake(platform.Meta), newFake(platform.Google)
	google.maxAge = 90 * 24 * time.Hour
	e.SetSenders(map[string]platform.Sender{platform.Meta: meta, platform.Google: google}, delivery.Settings{
		Flush: 5 * time.Millisecond, GiveUp: map[string]time.Duration{platform.Google: 48 * time.Hour},
	})
	at := func(id string, age time.Duration) event.Event {
		ev := events(id, 1)[0]
		ev.Time = time.Now().Add(-age)
		return ev
	}
	mustEnqueue(t, e, platform.Meta, at("stale", 8*24*time.Hour), at("just-under", 6*24*time.Hour), at("fresh", time.Minute))
	mustEnqueue(t, e, platform.Google, at("past-give-up", 72*time.Hour), at("within", 24*time.Hour))

	eventually(t, "meta settled", func() bool { return platformStats(t, e, platform.Meta).Depth == 0 })
	eventually(t, "google settled", func() bool { return platformStats(t, e, platform.Google).Depth == 0 })
	for _, s := range append(meta.sendLog(), google.sendLog()...) {
		if slices.ContainsFunc(s, func(id string) bool { return strings.HasPrefix(id, "stale") || strings.HasPrefix(id, "past-give-up") }) {
			t.Fatalf("an event past its age limit was sent: %v", s)
		}
	}
	tests := []struct {
		platform, id, reason string
	}{
		{platform.Meta, "stale-0000", delivery.ReasonTooOld},
		{platform.Google, "past-give-up-0000", "not delivered within give_up 48h0m0s"},
	}
	for _, tt := range tests {
		dead, err := e.DeadLetters(context.Background(), tt.platform, "", 10)
		if err != nil || len(dead) != 1 || dead[0].Event.ID != tt.id || dead[0].Reason != tt.reason {
			t.Errorf("%s dead letters = %+v, %v; want %s with %q", tt.platform, dead, err, tt.id, tt.reason)
		}
	}
	if meta.distinctDelivered() != 2 || google.distinctDelivered() != 1 {
		t.Errorf("delivered %d to meta and %d to google, want 2 and 1", meta.distinctDelivered(), google.distinctDelivered())
	}
}

// Dead letters carry IP addresses, user agents and hashed customer data: once their event is too old
// for the platform even to accept, they are kept DeadLetterGrace for reading, then dropped.
func TestDeadLettersExpireAWeekAfterThePlatformWouldTakeThem(t *testing.T) {
	e, _ := newEngine(t, delivery.Options{})
	meta := newFake(platform.Meta) // events accepted up to 7 days old
	e.SetSenders(map[string]platform.Sender{platform.Meta: meta}, delivery.Settings{Flush: 5 * time.Millisecond})
	at := func(id string, age time.Duration) event.Event {
		ev := events(id, 1)[0]
		ev.Time = time.Now().Add(-age)
		return ev
	}
	day := 24 * time.Hour
	mustEnqueue(t, e, platform.Meta, at("expired", 7*day+delivery.DeadLetterGrace+time.Hour), at("readable", 8*day))
	eventually(t, "both buried", func() bool { return platformStats(t, e, platform.Meta).DeadLetters == 2 })

	n, err := e.ExpireDeadLetters(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("ExpireDeadLetters = %d, %v; want 1 dropped", n, err)
	}
	dead, err := e.DeadLetters(context.Background(), platform.Meta, "", 10)
	if err != nil || len(dead) != 1 || dead[0].Event.ID != "readable-0000" {
		t.Fatalf("dead letters left: %+v, %v; want readable-0000 only", dead, err)
	}
	if n, err := e.ExpireDeadLetters(context.Background()); err != nil || n != 0 {
		t.Fatalf("a second sweep dropped %d, %v; want 0", n, err)
	}
}

// The engine runs that expiry on its own, every Options.DeadLetterSweep.
func TestDeadLettersExpireWithoutBeingAsked(t *testing.T) {
	e, _ := newEngine(t, delivery.Options{DeadLetterSweep: 20 * time.Millisecond})
	e.SetSenders(map[string]platform.Sender{platform.Meta: newFake(platform.Meta)}, delivery.Settings{Flush: 5 * time.Millisecond})
	ev := events("expired", 1)[0]
	ev.Time = time.Now().Add(-7*24*time.Hour - delivery.DeadLetterGrace - time.Hour)
	mustEnqueue(t, e, platform.Meta, ev)
	eventually(t, "the dead letter buried and then expired", func() bool {
		st := platformStats(t, e, platform.Meta)
		return st.Depth == 0 && st.DeadLetters == 0 && st.DeadLettered == 1
	})
}

// Erasing a visitor drops their dead letters on every platform and no one else's.
func TestDropDeadLettersOfOneVisitor(t *testing.T) {
	e, _ := newEngine(t, delivery.Options{})
	meta, tiktok := newFake(platform.Meta), newFake(platform.TikTok)
	e.SetSenders(map[string]platform.Sender{platform.Meta: meta, platform.TikTok: tiktok}, delivery.Settings{Flush: 5 * time.Millisecond})
	old := func(id, externalID string) event.Event {
		ev := events(id, 1)[0]
		ev.Time = time.Now().Add(-8 * 24 * time.Hour) // too old to send: buried at once
		ev.User.ExternalID = externalID
		return ev
	}
	const erased, kept = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9"
	mustEnqueue(t, e, platform.Meta, old("a", erased), old("b", kept), old("c", erased))
	mustEnqueue(t, e, platform.TikTok, old("d", erased), old("e", kept))
	eventually(t, "all buried", func() bool {
		return platformStats(t, e, platform.Meta).DeadLetters == 3 && platformStats(t, e, platform.TikTok).DeadLetters == 2
	})
	n, err := e.DropDeadLettersOf(context.Background(), erased)
	if err != nil || n != 3 {
		t.Fatalf("DropDeadLettersOf = %d, %v; want 3", n, err)
	}
	for p, want := range map[string]string{platform.Meta: "b-0000", platform.TikTok: "e-0000"} {
		dead, err := e.DeadLetters(context.Background(), p, "", 10)
		if err != nil || len(dead) != 1 || dead[0].Event.ID != want {
			t.Errorf("%s dead letters left: %+v, %v; want %s only", p, dead, err, want)
		}
	}
	if _, err := e.DropDeadLettersOf(context.Background(), ""); err == nil {
		t.Error("an empty external ID was accepted: it would match events without one")
	}
}

func TestSetSendersDuringTrafficLosesNothingAndDoublesNoWorker(t *testing.T) {
	e, _ := newEngine(t, delivery.Options{})
	// Two sender instances for one platform (each reload builds new ones) sharing one record.
	a := newFake(platform.Meta)
	a.sleep = time.Millisecond
	b := &fakeSender{name: platform.Meta, maxBatch: 1000, maxAge: a.maxAge, sleep: time.Millisecond}
	var mu sync.Mutex
	delivered := map[string]int{}
	record := func(evs []event.Event) platform.Result {
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range evs {
			delivered[ev.ID]++
		}
		return platform.Result{Outcome: platform.Delivered}
	}
	a.setAnswer(record)
	b.answer, b.delivered = record, map[string]int{}

	counts := []int{1, 4, 2, 3, 1, 4}
	e.SetSenders(map[string]platform.Sender{platform.Meta: a}, delivery.Settings{Workers: 2, Batch: 20, Flush: 2 * time.Millisecond})
	evs := events("r", 2000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < len(evs); i += 10 {
			mustEnqueue(t, e, platform.Meta, evs[i:i+10]...)
			time.Sleep(200 * time.Microsecond)
		}
	}()
	last := 0
	for i := range 40 {
		s := a
		if i%2 == 1 {
			s = b
		}
		last = counts[i%len(counts)]
		e.SetSenders(map[string]platform.Sender{platform.Meta: s}, delivery.Settings{Workers: last, Batch: 10 + i, Flush: 2 * time.Millisecond})
		time.Sleep(3 * time.Millisecond)
	}
	<-done
	eventually(t, "all delivered across reloads", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(delivered) == len(evs)
	})
	mu.Lock()
	for id, n := range delivered {
		if n != 1 {
			t.Errorf("%s delivered %d times: two workers held it", id, n)
		}
	}
	mu.Unlock()
	eventually(t, "worker count settles", func() bool { return platformStats(t, e, platform.Meta).Workers == last })
	if m := max(a.maxInflight.Load(), b.maxInflight.Load()); m > 4 {
		t.Fatalf("%d sends in flight at once; never more than 4 workers were configured", m)
	}
}

func TestRemovedPlatformStopsDrainingAndKeepsItsEvents(t *testing.T) {
	e, _ := newEngine(t, delivery.Options{})
	meta, tiktok := newFake(platform.Meta), newFake(platform.TikTok)
	e.SetSenders(map[string]platform.Sender{platform.Meta: meta, platform.TikTok: tiktok}, delivery.Settings{Workers: 3, Flush: time.Millisecond})
	eventually(t, "tiktok workers", func() bool { return platformStats(t, e, platform.TikTok).Workers == 3 })
	e.SetSenders(map[string]platform.Sender{platform.Meta: meta}, delivery.Settings{Workers: 3, Flush: time.Millisecond})
	eventually(t, "tiktok workers gone", func() bool { return platformStats(t, e, platform.TikTok).Workers == 0 })
	mustEnqueue(t, e, platform.TikTok, events("t", 5)...)
	time.Sleep(50 * time.Millisecond)
	if st := platformStats(t, e, platform.TikTok); st.Depth != 5 || len(tiktok.sendLog()) != 0 {
		t.Fatalf("a removed platform was drained: %+v", st)
	}
	installed, previous := e.SetSenders(map[string]platform.Sender{platform.Meta: meta, platform.TikTok: tiktok}, delivery.Settings{Workers: 1, Flush: time.Millisecond})
	eventually(t, "tiktok drained after re-adding", func() bool { return tiktok.distinctDelivered() == 5 })
	// A failed config start puts the previous config back, unless a newer one replaced it.
	if !e.CompareAndSwap(installed, previous) || e.CompareAndSwap(installed, previous) {
		t.Fatal("CompareAndSwap did not restore exactly once")
	}
	eventually(t, "tiktok workers gone again", func() bool { return platformStats(t, e, platform.TikTok).Workers == 0 })
}

func TestCloseLetsInFlightSendsFinish(t *testing.T) {
	e, q := newEngine(t, delivery.Options{})
	f := newFake(platform.Meta)
	f.sleep = 200 * time.Millisecond
	e.SetSenders(map[string]platform.Sender{platform.Meta: f}, delivery.Settings{Batch: 10, Flush: time.Millisecond})
	mustEnqueue(t, e, platform.Meta, events("c", 100)...)
	eventually(t, "a send in flight", func() bool { return f.inflight.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	sent := len(f.sendLog())
	if sent == 0 || f.distinctDelivered() != 10*sent {
		t.Fatalf("Close returned before the in-flight send finished: %d sends, %d delivered", sent, f.distinctDelivered())
	}
	st, _ := q.Stats(context.Background())
	if st[platform.Meta].Depth != 100-10*sent || st[platform.Meta].Leased != 0 {
		t.Fatalf("after Close: %+v, want the delivered acked and the rest queued, unleased", st[platform.Meta])
	}
	time.Sleep(50 * time.Millisecond)
	if len(f.sendLog()) != sent {
		t.Fatal("a send started after Close returned")
	}
}

func TestCloseAbandonsSendsAtTheDeadlineAndKeepsTheirEvents(t *testing.T) {
	e, q := newEngine(t, delivery.Options{})
	f := newFake(platform.Meta)
	f.sleep = time.Hour // a platform that hangs
	e.SetSenders(map[string]platform.Sender{platform.Meta: f}, delivery.Settings{Workers: 2, Batch: 10, Flush: time.Millisecond})
	mustEnqueue(t, e, platform.Meta, events("h", 30)...)
	eventually(t, "sends in flight", func() bool { return f.inflight.Load() == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := e.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want the deadline", err)
	}
	st, _ := q.Stats(context.Background())
	if st[platform.Meta].Depth != 30 || st[platform.Meta].Leased != 0 {
		t.Fatalf("after an abandoned send: %+v, want all 30 queued and released", st[platform.Meta])
	}
	items, err := q.Lease(context.Background(), platform.Meta, 100)
	if err != nil || len(items) != 30 {
		t.Fatalf("lease after Close: %d, %v", len(items), err)
	}
	for _, it := range items {
		if it.Attempts != 0 {
			t.Fatalf("%s counted an attempt for an abandoned send", it.Event.ID)
		}
	}
}
