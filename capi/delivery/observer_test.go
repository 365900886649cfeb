package delivery_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/delivery"
	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/platform"
)

// eventObserver is a countingObserver that also records the events handed to DeliveredEvents.
type eventObserver struct {
	*countingObserver
	mu   sync.Mutex
	seen map[string]int // event ID → times handed over as accepted
	ips  map[string]string
}

func newEventObserver() *eventObserver {
	return &eventObserver{countingObserver: newObserver(), seen: map[string]int{}, ips: map[string]string{}}
}

func (o *eventObserver) DeliveredEvents(platformName string, evs []*event.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, e := range evs {
		o.seen[platformName+"/"+e.ID]++
		o.ips[e.ID] = e.User.IP
	}
}

func (o *eventObserver) times(key string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.seen[key]
}

func (o *eventObserver) ip(id string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ips[id]
}

func (o *eventObserver) total() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, v := range o.seen {
		n += v
	}
	return n
}

var _ delivery.EventObserver = (*eventObserver)(nil)

// TestEventObserverSeesEachAcceptedEventOnce delivers events of which some fail transiently first
// and one is refused for good: the observer must see every accepted event exactly once, with its
// contents, and never the refused one, so that counts derived from the events (signal coverage)
// share the delivered counter as their denominator.
func TestEventObserverSeesEachAcceptedEventOnce(t *testing.T) {
	obs := newEventObserver()
	e, _ := newEngine(t, delivery.Options{Observer: obs})
	f := newFake(platform.Meta)
	var mu sync.Mutex
	failures := map[string]int{}
	f.setAnswer(func(evs []event.Event) platform.Result {
		mu.Lock()
		defer mu.Unlock()
		res := platform.Result{Outcome: platform.Delivered, Events: map[int]platform.EventResult{}}
		for i, ev := range evs {
			switch {
			case ev.ID == "obs-0003":
				res.Events[i] = platform.EventResult{Outcome: platform.Permanent, Reason: "invalid parameter"}
			case strings.HasSuffix(ev.ID, "5") && failures[ev.ID] < 2:
				failures[ev.ID]++
				res.Events[i] = platform.EventResult{Outcome: platform.Retry, Reason: "throttled"}
			}
		}
		return res
	})
	e.SetSenders(map[string]platform.Sender{platform.Meta: f}, delivery.Settings{Batch: 7, Flush: 5 * time.Millisecond})

	evs := events("obs", 40)
	for i := range evs {
		evs[i].User.IP = "192.0.2." + evs[i].ID[len(evs[i].ID)-2:]
	}
	mustEnqueue(t, e, platform.Meta, evs...)
	eventually(t, "39 accepted and 1 dead-lettered", func() bool {
		st := platformStats(t, e, platform.Meta)
		return st.Delivered == 39 && st.DeadLettered == 1 && obs.total() >= 39
	})

	if st := platformStats(t, e, platform.Meta); st.Retried == 0 {
		t.Fatalf("no event was retried, so the test proves nothing about retries: %+v", st)
	}
	for _, ev := range evs {
		want := 1
		if ev.ID == "obs-0003" {
			want = 0
		}
		if got := obs.times(platform.Meta + "/" + ev.ID); got != want {
			t.Errorf("%s handed to DeliveredEvents %d times, want %d", ev.ID, got, want)
		}
		if got := obs.ip(ev.ID); want == 1 && got != ev.User.IP {
			t.Errorf("%s arrived with IP %q, want its own %q", ev.ID, got, ev.User.IP)
		}
	}
	if got, delivered := obs.total(), obs.get(obs.delivered, platform.Meta); got != delivered {
		t.Errorf("DeliveredEvents saw %d events, Delivered counted %d", got, delivered)
	}
}
