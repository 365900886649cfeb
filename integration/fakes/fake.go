// Package fakes provides strict stand-ins for the ad platforms' HTTP APIs — Meta's Graph API
// (Conversions API), TikTok's Events API 2.0, Google Ads' conversion upload services and Google's
// OAuth token endpoint — on loopback httptest servers.
//
// Each fake validates every request as strictly as the platform's documentation (the notes under
// shared/spec/ name the sources): authentication, path, content type, field names, types, hashing
// format, required fields, event age and batch limits. A deviation gets the platform's own error
// shape and is recorded as a violation, and a test fails at cleanup if any violation occurred that
// it did not declare with ExpectViolations. What a fake accepts is recorded event by event (raw
// JSON), and a fake can be told to fail: 5xx, 429 with Retry-After, delays, and a permanent
// rejection of one event.
//
// The fakes must stay independent of the product's platform packages: they are written from the
// platform notes, so that they check our senders rather than mirror them.
package fakes

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Event is one event (Meta, TikTok) or one conversion or adjustment (Google) that a fake accepted.
type Event struct {
	// Platform is "meta", "tiktok" or "google".
	Platform string
	// Name is Meta's event_name, TikTok's event, or Google's conversionAction resource name.
	Name string
	// ID is Meta's and TikTok's event_id, or Google's orderId (its deduplication key).
	ID string
	// Time is event_time (Meta, TikTok) or conversionDateTime / adjustmentDateTime (Google).
	Time time.Time
	// Endpoint is the operation that carried it: "events" (Meta), "track" (TikTok),
	// "uploadClickConversions" or "uploadConversionAdjustments" (Google).
	Endpoint string
	// TestEventCode is the request's test_event_code (Meta, TikTok), empty for live events.
	TestEventCode string
	// Request is the index, in Requests(), of the request that carried it.
	Request int
	// Raw is the event's JSON exactly as received.
	Raw json.RawMessage
}

// Map decodes Raw into a generic map for assertions on individual fields.
func (e Event) Map() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(e.Raw, &m)
	return m
}

// Get returns the value at a dotted path in Raw ("user_data.em", "properties.value",
// "userIdentifiers.0.hashedEmail"), or nil.
func (e Event) Get(path string) any {
	var v any = e.Map()
	for _, key := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[key]
		case []any:
			var i int
			if _, err := fmt.Sscanf(key, "%d", &i); err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// Request is one HTTP request a fake received, whatever became of it.
type Request struct {
	Method string
	Path   string
	Query  string
	Header http.Header
	Body   []byte
	// Status is the HTTP status the fake answered with; Outcome says why: "accepted",
	// "violation: …", "scripted: …", "rejected event …", "abandoned" (the client went away).
	Status  int
	Outcome string
	Time    time.Time
}

// Violation is a request that broke the platform's documented rules.
type Violation struct {
	Time    time.Time
	Request string // "POST /v25.0/123/events"
	Reason  string
}

func (v Violation) String() string { return v.Request + ": " + v.Reason }

// recorder is the state every fake shares: what it received and accepted, its violations, and the
// failures it has been told to produce.
type recorder struct {
	t        testing.TB
	platform string
	srv      *httptest.Server
	now      func() time.Time

	mu         sync.Mutex
	requests   []Request
	accepted   []Event
	violations []Violation
	expected   bool
	changed    chan struct{}

	failNext   []int // statuses of the next failing requests
	failStatus int
	failUntil  time.Time
	retryAfter time.Duration
	delay      time.Duration
	reject     map[string]string // event ID → reason of a permanent rejection
}

func newRecorder(t testing.TB, platform string, now func() time.Time) *recorder {
	if now == nil {
		now = time.Now
	}
	return &recorder{t: t, platform: platform, now: now, changed: make(chan struct{}), reject: map[string]string{}}
}

// serve starts the loopback server and registers the cleanup that closes it and fails the test on
// unexpected violations.
func (r *recorder) serve(h http.Handler) {
	r.srv = httptest.NewServer(h)
	r.t.Cleanup(func() {
		r.srv.Close()
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.violations) > 0 && !r.expected {
			var b strings.Builder
			for _, v := range r.violations {
				b.WriteString("\n  - " + v.String())
			}
			r.t.Errorf("fake %s received %d request(s) that break the platform's rules:%s", r.platform, len(r.violations), b.String())
		}
	})
}

// URL is the base URL of the fake, to configure as the platform's `endpoint`.
func (r *recorder) URL() string { return r.srv.URL }

// ExpectViolations declares that the test sends invalid requests on purpose, so that violations do
// not fail it at cleanup.
func (r *recorder) ExpectViolations() {
	r.mu.Lock()
	r.expected = true
	r.mu.Unlock()
}

// Violations returns the invalid requests received so far.
func (r *recorder) Violations() []Violation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Violation(nil), r.violations...)
}

// Requests returns every request received so far.
func (r *recorder) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.requests...)
}

// Accepted returns every event accepted so far, in arrival order.
func (r *recorder) Accepted() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.accepted...)
}

// Event returns the first accepted event with the given ID.
func (r *recorder) Event(id string) (Event, bool) {
	for _, e := range r.Accepted() {
		if e.ID == id {
			return e, true
		}
	}
	return Event{}, false
}

// EventsWithID returns every accepted event with the given ID (retries and duplicates included).
func (r *recorder) EventsWithID(id string) []Event {
	var out []Event
	for _, e := range r.Accepted() {
		if e.ID == id {
			out = append(out, e)
		}
	}
	return out
}

// EventsNamed returns the accepted events with the given name.
func (r *recorder) EventsNamed(name string) []Event {
	var out []Event
	for _, e := range r.Accepted() {
		if e.Name == name {
			out = append(out, e)
		}
	}
	return out
}

// WaitFor waits until cond holds for the accepted events and returns them; it fails the test after
// timeout. Delivery is asynchronous, so end-to-end tests wait rather than look once.
func (r *recorder) WaitFor(t testing.TB, timeout time.Duration, what string, cond func([]Event) bool) []Event {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		r.mu.Lock()
		events := append([]Event(nil), r.accepted...)
		changed := r.changed
		r.mu.Unlock()
		if cond(events) {
			return events
		}
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("fake %s: no %s after %v; accepted %d event(s), %d request(s), violations: %v",
				r.platform, what, timeout, len(events), len(r.Requests()), r.Violations())
			return nil
		}
	}
}

// WaitEvent waits for an accepted event with the given ID.
func (r *recorder) WaitEvent(t testing.TB, id string, timeout time.Duration) Event {
	t.Helper()
	r.WaitFor(t, timeout, "event "+id, func(es []Event) bool {
		for _, e := range es {
			if e.ID == id {
				return true
			}
		}
		return false
	})
	e, _ := r.Event(id)
	return e
}

// WaitAccepted waits until at least n events have been accepted.
func (r *recorder) WaitAccepted(t testing.TB, n int, timeout time.Duration) []Event {
	t.Helper()
	return r.WaitFor(t, timeout, fmt.Sprintf("%d accepted event(s)", n), func(es []Event) bool { return len(es) >= n })
}

// FailNext makes the next n requests fail with the HTTP status (5xx, 429, 400, 401…) in the
// platform's error shape. Requests are still validated.
func (r *recorder) FailNext(n int, status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for range n {
		r.failNext = append(r.failNext, status)
	}
}

// FailFor makes every request fail with status for duration d from now (an outage).
func (r *recorder) FailFor(d time.Duration, status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failStatus, r.failUntil = status, r.now().Add(d)
}

// RateLimit makes the next n requests fail with 429 Too Many Requests and a Retry-After header of
// retryAfter (whole seconds, rounded up), in the platform's throttling error shape.
func (r *recorder) RateLimit(n int, retryAfter time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retryAfter = retryAfter
	for range n {
		r.failNext = append(r.failNext, http.StatusTooManyRequests)
	}
}

// Delay makes every following request wait d before it is answered (0 to stop), so a client's
// timeout fires. A request whose client gives up during the delay is not processed.
func (r *recorder) Delay(d time.Duration) {
	r.mu.Lock()
	r.delay = d
	r.mu.Unlock()
}

// RejectEvent makes the platform refuse the event with this ID permanently, as it would an invalid
// one: Meta and TikTok refuse the whole request that carries it; Google fails only that conversion
// (a partial failure at its index).
func (r *recorder) RejectEvent(id, reason string) {
	r.mu.Lock()
	r.reject[id] = reason
	r.mu.Unlock()
}

// scripted returns the failure status to produce for this request, or 0.
func (r *recorder) scripted() (status int, retryAfter time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.failNext) > 0 {
		status = r.failNext[0]
		r.failNext = r.failNext[1:]
		if status == http.StatusTooManyRequests {
			retryAfter = r.retryAfter
		}
		return status, retryAfter
	}
	if r.now().Before(r.failUntil) {
		return r.failStatus, 0
	}
	return 0, 0
}

func (r *recorder) rejection(id string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	reason, ok := r.reject[id]
	return reason, ok
}

func (r *recorder) currentDelay() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.delay
}

// receive reads the request body and applies the delay; ok is false when the client went away.
func (r *recorder) receive(w http.ResponseWriter, req *http.Request) (body []byte, ok bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, 64<<20))
	if err != nil {
		body = nil
	}
	if d := r.currentDelay(); d > 0 {
		select {
		case <-time.After(d):
		case <-req.Context().Done():
			r.record(req, body, 0, "abandoned", nil)
			return nil, false
		}
	}
	return body, true
}

// record notes a request, its outcome, and the events it got accepted.
func (r *recorder) record(req *http.Request, body []byte, status int, outcome string, events []Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	idx := len(r.requests)
	r.requests = append(r.requests, Request{
		Method: req.Method, Path: req.URL.Path, Query: req.URL.RawQuery, Header: req.Header.Clone(),
		Body: body, Status: status, Outcome: outcome, Time: r.now(),
	})
	for _, e := range events {
		e.Platform, e.Request = r.platform, idx
		r.accepted = append(r.accepted, e)
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *recorder) violate(req *http.Request, reasons []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, reason := range reasons {
		r.violations = append(r.violations, Violation{Time: r.now(), Request: req.Method + " " + req.URL.Path, Reason: reason})
	}
}

// writeJSON answers with a JSON body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func retryAfterHeader(w http.ResponseWriter, d time.Duration) {
	if d <= 0 {
		return
	}
	secs := int((d + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", fmt.Sprint(secs))
}

// traceID makes an opaque support ID like the platforms' (fbtrace_id, request_id).
func (r *recorder) traceID() string {
	r.mu.Lock()
	n := len(r.requests)
	r.mu.Unlock()
	return fmt.Sprintf("Afake%s%06d", strings.ToUpper(r.platform[:1]), n)
}
