package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/platform"
	"github.com/caddy-capi/caddy-capi/capi/queue"
	"github.com/caddy-capi/caddy-capi/capi/signal"
	"github.com/caddy-capi/caddy-capi/capi/store"
)

func TestAdminStatusReportsStorageAndPlatforms(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capi.db")
	a := provisioned(t, path, func(a *App) {
		a.Sink = &SinkConfig{Type: "file", Path: filepath.Join(t.TempDir(), "events.jsonl")}
		a.Meta = &MetaConfig{PixelID: "1234567890"}
		a.TikTok = &TikTokConfig{PixelCode: "C4ABCDEFGH12"}
	})
	defer a.Cleanup()

	status := func() storageStatus {
		t.Helper()
		w := httptest.NewRecorder()
		if err := (AdminAPI{}).handleStatus(w, httptest.NewRequest(http.MethodGet, "/capi/status", nil)); err != nil {
			t.Fatal(err)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		var resp statusResponse
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
		for _, s := range resp.Storages {
			if s.Path == path {
				return s
			}
		}
		t.Fatalf("storage %s missing from %s", path, w.Body)
		return storageStatus{}
	}

	if s := status(); s.Open || s.Started {
		t.Errorf("before Start: %+v", s)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	s := status()
	if !s.Open || !s.Started || s.Backend != "bolt" || len(s.Platforms) != 2 || s.Platforms[0] != "meta" || s.Platforms[1] != "tiktok" || s.Sink == "" {
		t.Errorf("after Start: %+v", s)
	}
	a.Stop()
	if s := status(); s.Started {
		t.Errorf("after Stop: %+v", s)
	}
}

func TestAdminStatusRefusesWrites(t *testing.T) {
	err := (AdminAPI{}).handleStatus(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/capi/status", nil))
	if err == nil {
		t.Fatal("POST accepted")
	}
}

// adminCall runs one admin route handler and returns the status and the body; an error the route
// returns is turned into its status as Caddy's admin server does.
func adminCall(t *testing.T, h func(http.ResponseWriter, *http.Request) error, method, target, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	w := httptest.NewRecorder()
	err := h(w, httptest.NewRequest(method, target, rd))
	if err != nil {
		var apiErr caddy.APIError
		if !errors.As(err, &apiErr) {
			t.Fatalf("%s %s: error %v is not a caddy.APIError", method, target, err)
		}
		return apiErr.HTTPStatus, []byte(apiErr.Err.Error())
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type = %q", method, target, ct)
	}
	return w.Code, w.Body.Bytes()
}

func decodeInto[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return v
}

// heldApp starts an app whose events stay queued, on its own storage, and returns it with the
// query string that picks its storage.
func heldApp(t *testing.T, configure func(*App)) (*App, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "capi.db")
	a := provisioned(t, path, func(a *App) {
		a.Meta = &MetaConfig{PixelID: "1234567890", AccessToken: "meta-token", Endpoint: "http://127.0.0.1:9"}
		a.holdDelivery = true
		if configure != nil {
			configure(a)
		}
	})
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Stop(); a.Cleanup() })
	return a, "storage=" + url.QueryEscape(path)
}

// personal is an event carrying every kind of signal the dead-letter listing must not show.
func personal(id string) event.Event {
	e := testEvent(id)
	e.ActionSource = event.ActionWebsite
	e.SourceURL = "https://shop.example/thank-you?email=jane@example.com"
	e.User.IP = "203.0.113.7"
	e.User.UserAgent = "Mozilla/5.0 (X11; Linux x86_64) UniqueAgent/1.0"
	e.User.FBC = "fb.1.1700000000000.AbCdEf"
	e.User.Meta.Emails = []string{strings.Repeat("e", 64)}
	e.User.Google.City = "springfield"
	return e
}

// bury enqueues events for Meta and moves them to the dead letters with reason, as a worker does
// after a permanent failure.
func bury(t *testing.T, a *App, reason string, events ...event.Event) {
	t.Helper()
	ctx := context.Background()
	q := a.storage.queue
	if _, err := q.Enqueue(ctx, platform.Meta, events...); err != nil {
		t.Fatal(err)
	}
	items, err := q.Lease(ctx, platform.Meta, len(events))
	if err != nil || len(items) != len(events) {
		t.Fatalf("lease: %d items, %v", len(items), err)
	}
	var ss []queue.Settlement
	for _, it := range items {
		ss = append(ss, queue.Settlement{Receipt: it.Receipt, Outcome: queue.Bury, Attempts: 1, Reason: reason})
	}
	if err := q.Settle(ctx, platform.Meta, ss...); err != nil {
		t.Fatal(err)
	}
}

func TestAdminQueueReportsDepthAndCounters(t *testing.T) {
	a, sel := heldApp(t, nil)
	for _, id := range []string{"q-1", "q-2", "q-3"} {
		if _, err := a.storage.enqueueEdge(context.Background(), []string{platform.Meta}, testEvent(id)); err != nil {
			t.Fatal(err)
		}
	}
	bury(t, a, "meta: (#100) invalid parameter", testEvent("q-dead"))

	status, body := adminCall(t, AdminAPI{}.handleQueue, http.MethodGet, "/capi/queue?"+sel, "")
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	resp := decodeInto[queueResponse](t, body)
	m := resp.Platforms[platform.Meta]
	if m.Depth != 3 || m.DeadLetters != 1 || m.Enqueued != 4 || m.Workers != 0 {
		t.Errorf("meta = %+v; want depth 3, 1 dead letter, 4 enqueued, no workers while held", m)
	}
	if resp.Storage != a.storageKey {
		t.Errorf("storage = %q", resp.Storage)
	}

	if status, _ := adminCall(t, AdminAPI{}.handleQueue, http.MethodPost, "/capi/queue?"+sel, ""); status != http.StatusMethodNotAllowed {
		t.Errorf("POST /capi/queue: %d", status)
	}
	if status, _ := adminCall(t, AdminAPI{}.handleQueue, http.MethodGet, "/capi/queue?storage=/nonexistent.db", ""); status != http.StatusNotFound {
		t.Errorf("unknown storage: %d", status)
	}
}

func TestAdminQueueCountsDeliveries(t *testing.T) {
	dir := t.TempDir()
	path, sinkPath := filepath.Join(dir, "capi.db"), filepath.Join(dir, "events.jsonl")
	a := provisioned(t, path, withSink(sinkPath))
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { a.Stop(); a.Cleanup() }()
	if _, err := a.storage.enqueueEdge(context.Background(), []string{platform.Meta}, testEvent("counted")); err != nil {
		t.Fatal(err)
	}
	waitSink(t, sinkPath, platform.Meta, "counted")
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body := adminCall(t, AdminAPI{}.handleQueue, http.MethodGet, "/capi/queue?storage="+url.QueryEscape(path), "")
		m := decodeInto[queueResponse](t, body).Platforms[platform.Meta]
		if m.Delivered == 1 && m.Depth == 0 && m.Workers == 1 && !m.LastDelivery.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("meta = %+v; want 1 delivered, nothing waiting, 1 worker", m)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAdminDeadLettersListWithoutPersonalData(t *testing.T) {
	a, sel := heldApp(t, nil)
	const reason = "meta: (#100) Invalid parameter: user_data.em"
	bury(t, a, reason, personal("dl-1"), personal("dl-2"), personal("dl-3"))

	status, body := adminCall(t, AdminAPI{}.handleDeadLetters, http.MethodGet, "/capi/dead-letters?platform=meta&limit=2&"+sel, "")
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	for _, private := range []string{"203.0.113.7", "UniqueAgent", "AbCdEf", strings.Repeat("e", 64), "springfield", "jane@example.com"} {
		if strings.Contains(string(body), private) {
			t.Errorf("the dead-letter listing shows %q: %s", private, body)
		}
	}
	page := decodeInto[deadLettersResponse](t, body)
	if len(page.DeadLetters) != 2 || page.NextCursor == "" {
		t.Fatalf("first page = %+v; want 2 dead letters and a cursor", page)
	}
	d := page.DeadLetters[0]
	if d.EventID != "dl-1" || d.Event != "Purchase" || d.Reason != reason || d.Attempts != 1 || d.Value != "10.00" {
		t.Errorf("dead letter = %+v", d)
	}
	if want := []string{"ip", "user_agent", "fbc", "meta.emails", "google.city"}; !slices.Equal(d.Signals, want) {
		t.Errorf("signals = %v, want %v", d.Signals, want)
	}

	_, body = adminCall(t, AdminAPI{}.handleDeadLetters, http.MethodGet, "/capi/dead-letters?platform=meta&limit=2&cursor="+page.NextCursor+"&"+sel, "")
	next := decodeInto[deadLettersResponse](t, body)
	if len(next.DeadLetters) != 1 || next.DeadLetters[0].EventID != "dl-3" || next.NextCursor != "" {
		t.Errorf("second page = %+v; want dl-3 alone and no cursor", next)
	}

	for _, bad := range []string{"platform=", "platform=facebook", "platform=meta&limit=0", "platform=meta&limit=x", "platform=meta&limit=100000"} {
		if status, msg := adminCall(t, AdminAPI{}.handleDeadLetters, http.MethodGet, "/capi/dead-letters?"+bad+"&"+sel, ""); status != http.StatusBadRequest {
			t.Errorf("%s: %d %s; want 400", bad, status, msg)
		}
	}
}

func TestAdminReplayAndDropDeadLetters(t *testing.T) {
	a, sel := heldApp(t, nil)
	bury(t, a, "meta: permanent", testEvent("r-1"), testEvent("r-2"), testEvent("r-3"))
	_, body := adminCall(t, AdminAPI{}.handleDeadLetters, http.MethodGet, "/capi/dead-letters?platform=meta&"+sel, "")
	dead := decodeInto[deadLettersResponse](t, body).DeadLetters
	if len(dead) != 3 {
		t.Fatalf("%d dead letters", len(dead))
	}

	status, body := adminCall(t, AdminAPI{}.handleReplay, http.MethodPost, "/capi/dead-letters/replay?"+sel,
		`{"platform":"meta","ids":["`+dead[0].ID+`"]}`)
	if status != http.StatusOK || *decodeInto[deadLetterResult](t, body).Replayed != 1 {
		t.Fatalf("replay: %d %s", status, body)
	}
	stats, err := a.storage.queue.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if m := stats[platform.Meta]; m.Depth != 1 || m.DeadLetters != 2 {
		t.Errorf("after replaying one: %+v; want 1 waiting, 2 dead", m)
	}
	items, err := a.storage.queue.Lease(context.Background(), platform.Meta, 10)
	if err != nil || len(items) != 1 || items[0].Event.ID != "r-1" || items[0].Attempts != 0 {
		t.Fatalf("the replayed event is not due again with a fresh count: %+v, %v", items, err)
	}
	a.storage.queue.Release(platform.Meta, items[0].Receipt)

	status, body = adminCall(t, AdminAPI{}.handleDrop, http.MethodPost, "/capi/dead-letters/drop?"+sel, `{"platform":"meta","all":true}`)
	if status != http.StatusOK || *decodeInto[deadLetterResult](t, body).Dropped != 2 {
		t.Fatalf("drop all: %d %s", status, body)
	}
	if stats, _ := a.storage.queue.Stats(context.Background()); stats[platform.Meta].DeadLetters != 0 || stats[platform.Meta].Depth != 1 {
		t.Errorf("after dropping all: %+v", stats[platform.Meta])
	}

	for _, tc := range []struct {
		name, method, body string
		want               int
	}{
		{"GET", http.MethodGet, "", http.StatusMethodNotAllowed},
		{"no IDs and not all", http.MethodPost, `{"platform":"meta"}`, http.StatusBadRequest},
		{"IDs and all", http.MethodPost, `{"platform":"meta","ids":["1"],"all":true}`, http.StatusBadRequest},
		{"unknown platform", http.MethodPost, `{"platform":"bing","all":true}`, http.StatusBadRequest},
		{"unknown field", http.MethodPost, `{"platform":"meta","id":["1"]}`, http.StatusBadRequest},
		{"not JSON", http.MethodPost, `platform=meta`, http.StatusBadRequest},
		{"malformed ID", http.MethodPost, `{"platform":"meta","ids":["not-an-id"]}`, http.StatusBadRequest},
	} {
		for _, h := range []func(http.ResponseWriter, *http.Request) error{AdminAPI{}.handleReplay, AdminAPI{}.handleDrop} {
			if status, msg := adminCall(t, h, tc.method, "/capi/dead-letters/x?"+sel, tc.body); status != tc.want {
				t.Errorf("%s: %d %s; want %d", tc.name, status, msg, tc.want)
			}
		}
	}
}

func TestAdminTestEventGoesWhereATestCodeIs(t *testing.T) {
	dir := t.TempDir()
	path, sinkPath := filepath.Join(dir, "capi.db"), filepath.Join(dir, "events.jsonl")
	a := provisioned(t, path, func(a *App) {
		withSink(sinkPath)(a)
		a.Meta.TestEventCode = "TEST4711"
	})
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { a.Stop(); a.Cleanup() }()
	sel := "?storage=" + url.QueryEscape(path)

	status, body := adminCall(t, AdminAPI{}.handleTestEvent, http.MethodPost, "/capi/test-event"+sel, "")
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	resp := decodeInto[testEventResponse](t, body)
	if !slices.Equal(resp.Platforms, []string{platform.Meta}) || resp.Skipped[platform.TikTok] == "" || resp.Event != "Purchase" {
		t.Fatalf("response = %+v; want Meta only, TikTok skipped for lack of a test code", resp)
	}
	waitSink(t, sinkPath, platform.Meta, resp.EventID)
	for _, l := range readSink(t, sinkPath) {
		if strings.Contains(string(l.Body), resp.EventID) && !strings.Contains(string(l.Body), "TEST4711") {
			t.Errorf("the test event went out without its test_event_code: %s", l.Body)
		}
	}

	status, body = adminCall(t, AdminAPI{}.handleTestEvent, http.MethodPost, "/capi/test-event"+sel, `{"event":"Lead"}`)
	if status != http.StatusOK || decodeInto[testEventResponse](t, body).Event != "Lead" {
		t.Errorf("named test event: %d %s", status, body)
	}
	for _, tc := range []struct{ method, body string }{
		{http.MethodGet, ""}, {http.MethodPost, `{"event":"not a name"}`}, {http.MethodPost, `{"name":"Lead"}`},
	} {
		if status, _ := adminCall(t, AdminAPI{}.handleTestEvent, tc.method, "/capi/test-event"+sel, tc.body); status < 400 {
			t.Errorf("%s %s accepted", tc.method, tc.body)
		}
	}
}

func TestAdminTestEventRefusedWithoutTestCodes(t *testing.T) {
	_, sel := heldApp(t, nil)
	status, msg := adminCall(t, AdminAPI{}.handleTestEvent, http.MethodPost, "/capi/test-event?"+sel, "")
	if status != http.StatusConflict || !strings.Contains(string(msg), "test_event_code") {
		t.Errorf("%d %s; want 409 naming test_event_code", status, msg)
	}
}

func TestAdminEraseVisitor(t *testing.T) {
	a, sel := heldApp(t, nil)
	ctx := context.Background()
	const id = "abcdefghijklmnopqrstuvwx"
	const id0 = id
	if _, err := a.storage.visitors.Update(ctx, id, func(v *store.Visitor) error {
		v.User.IP = "203.0.113.7"
		v.Clicks = map[string]store.Click{store.ClickGCLID: {Value: "gclid-1", FirstSeen: time.Now(), LastSeen: time.Now()}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, found, err := a.storage.visitors.FindByClickID(ctx, store.ClickGCLID, "gclid-1"); !found || err != nil {
		t.Fatalf("the visitor is not findable by click ID before the erasure: %v", err)
	}
	// Two of the visitor's events and one of someone else's sit in the dead letters.
	theirs := func(id string) event.Event {
		e := personal(id)
		e.User.ExternalID = signal.ExternalID(id0)
		return e
	}
	bury(t, a, "meta: (#100) Invalid parameter", theirs("dl-a"), personal("dl-other"), theirs("dl-b"))
	status, body := adminCall(t, AdminAPI{}.handleErase, http.MethodPost, "/capi/visitors/erase?"+sel, `{"visitor_id":"`+id+`"}`)
	if resp := decodeInto[eraseResponse](t, body); status != http.StatusOK || !resp.Erased || resp.DeadLettersDropped != 2 {
		t.Fatalf("erase: %d %s; want erased with their 2 dead letters", status, body)
	}
	if dead, err := a.storage.queue.DeadLetters(ctx, platform.Meta, "", 10); err != nil || len(dead) != 1 || dead[0].Event.ID != "dl-other" {
		t.Errorf("dead letters left: %+v, %v; want only the other visitor's", dead, err)
	}
	if _, found, err := a.storage.visitors.Get(ctx, id); found || err != nil {
		t.Errorf("the visitor is still there: %v, %v", found, err)
	}
	if _, found, _ := a.storage.visitors.FindByClickID(ctx, store.ClickGCLID, "gclid-1"); found {
		t.Error("the visitor is still found by click ID")
	}
	// Erasing someone unknown is not an error: afterwards no record of them exists either way.
	if status, _ := adminCall(t, AdminAPI{}.handleErase, http.MethodPost, "/capi/visitors/erase?"+sel, `{"visitor_id":"zzzzzzzzzzzzzzzzzzzzzzzz"}`); status != http.StatusOK {
		t.Errorf("unknown visitor: %d", status)
	}
	for _, bad := range []string{`{"visitor_id":"short"}`, `{"visitor_id":"ABCDEFGHIJKLMNOPQRSTUVWX"}`, `{}`, `{"id":"` + id + `"}`} {
		if status, _ := adminCall(t, AdminAPI{}.handleErase, http.MethodPost, "/capi/visitors/erase?"+sel, bad); status != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", bad, status)
		}
	}
	if status, _ := adminCall(t, AdminAPI{}.handleErase, http.MethodGet, "/capi/visitors/erase?"+sel, ""); status != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", status)
	}
}

func TestAdminAsksWhichStorageWhenSeveral(t *testing.T) {
	_, first := heldApp(t, nil)
	heldApp(t, nil)
	if status, msg := adminCall(t, AdminAPI{}.handleQueue, http.MethodGet, "/capi/queue", ""); status != http.StatusBadRequest || !strings.Contains(string(msg), "?storage=") {
		t.Errorf("%d %s; want 400 asking for ?storage=", status, msg)
	}
	if status, _ := adminCall(t, AdminAPI{}.handleQueue, http.MethodGet, "/capi/queue?"+first, ""); status != http.StatusOK {
		t.Errorf("with ?storage: %d", status)
	}
}
