package caddymodule

import (
	"context"
	"html/template"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/platform"
	"github.com/caddy-capi/caddy-capi/capi/queue"
)

// isolatedMetrics gives the test its own delivery collectors, so that counts from earlier tests in
// the process do not blur the numbers it checks. Storages opened after the call count into them.
func isolatedMetrics(t *testing.T) *deliveryMetrics {
	t.Helper()
	metricsOnce.Do(initMetrics)
	previous := metrics
	metrics = newDeliveryMetrics()
	t.Cleanup(func() { metrics = previous })
	return metrics
}

// dashboardGet runs GET on the dashboard route with an Accept header and returns the response.
func dashboardGet(t *testing.T, target, accept string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, target, nil)
	if accept != "" {
		r.Header.Set("Accept", accept)
	}
	w := httptest.NewRecorder()
	if err := (AdminAPI{}).handleDashboard(w, r); err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	return w
}

func dashboardJSON(t *testing.T) dashboardView {
	t.Helper()
	w := dashboardGet(t, "/capi/dashboard.json", "")
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q", ct)
	}
	return decodeInto[dashboardView](t, w.Body.Bytes())
}

func platformOf(t *testing.T, v dashboardView, name string) platformView {
	t.Helper()
	for _, p := range v.Platforms {
		if p.Platform == name {
			return p
		}
	}
	t.Fatalf("platform %s missing from the dashboard: %+v", name, v.Platforms)
	return platformView{}
}

func shareOf(t *testing.T, c coverageView, name string) signalShare {
	t.Helper()
	for _, s := range c.Signals {
		if s.Signal == name {
			return s
		}
	}
	t.Fatalf("signal %s missing from %+v", name, c.Signals)
	return signalShare{}
}

// signalEvents are four Purchase events with known signals: every one has an external_id; three
// an IP and a user agent; one Meta's em and fbp; two TikTok's email; none a name.
func signalEvents() []event.Event {
	evs := make([]event.Event, 4)
	for i := range evs {
		evs[i] = testEvent("cov-" + string(rune('a'+i)))
		if i < 3 {
			evs[i].User.IP = "203.0.113.7"
			evs[i].User.UserAgent = "Mozilla/5.0 UniqueAgent/1.0"
		}
		if i < 2 {
			evs[i].User.TikTok.Emails = []string{strings.Repeat("b", 64)}
		}
	}
	evs[0].User.Meta.Emails = []string{strings.Repeat("e", 64)}
	evs[0].User.FBP = "fb.1.1700000000000.123456789"
	return evs
}

func TestDashboardCountsSignalsOfDeliveredEvents(t *testing.T) {
	m := isolatedMetrics(t)
	dir := t.TempDir()
	path, sinkPath := filepath.Join(dir, "capi.db"), filepath.Join(dir, "events.jsonl")
	a := provisioned(t, path, withSink(sinkPath))
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { a.Stop(); a.Cleanup() }()

	evs := signalEvents()
	for _, e := range evs {
		if _, err := a.storage.enqueueEdge(context.Background(), []string{platform.Meta, platform.TikTok}, e); err != nil {
			t.Fatal(err)
		}
	}
	// The sink answers as a platform that accepts everything: the engine settles the events as
	// delivered and hands them to the observer.
	deadline := time.Now().Add(10 * time.Second)
	for value(t, m.signals.WithLabelValues(platform.TikTok, "external_id")) < 4 ||
		value(t, m.signals.WithLabelValues(platform.Meta, "external_id")) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("the signals of 4 delivered events were never counted; sink: %v", readSink(t, sinkPath))
		}
		time.Sleep(20 * time.Millisecond)
	}

	tests := []struct {
		platform, signal string
		want             float64
	}{
		{platform.Meta, "external_id", 4},
		{platform.Meta, "client_ip_address", 3},
		{platform.Meta, "client_user_agent", 3},
		{platform.Meta, "em", 1},
		{platform.Meta, "fbp", 1},
		{platform.Meta, "fn", 0},
		{platform.TikTok, "external_id", 4},
		{platform.TikTok, "ip", 3},
		{platform.TikTok, "email", 2},
		{platform.TikTok, "address", 0},
	}
	for _, tt := range tests {
		if got := value(t, m.signals.WithLabelValues(tt.platform, tt.signal)); got != tt.want {
			t.Errorf("caddy_capi_event_signals_total{platform=%q,signal=%q} = %v, want %v", tt.platform, tt.signal, got, tt.want)
		}
	}

	v := dashboardJSON(t)
	meta := platformOf(t, v, platform.Meta)
	if meta.Delivered != 4 || meta.Enqueued != 4 || meta.Depth != 0 || meta.Label != "Meta" {
		t.Errorf("meta = %+v; want 4 enqueued, 4 delivered, nothing waiting", meta)
	}
	c := meta.Coverage
	if c.Events != 4 || c.Of != 15 || len(c.Signals) != 15 || c.PerEvent == nil || *c.PerEvent != 3 {
		t.Errorf("meta coverage = %+v; want 4 events, 15 signals, 3.0 per event ((4+3+3+1+1)/4)", c)
	}
	for name, want := range map[string]float64{"external_id": 100, "client_ip_address": 75, "em": 25, "fn": 0} {
		if s := shareOf(t, c, name); s.Percent == nil || *s.Percent != want {
			t.Errorf("meta %s share = %v, want %v%%", name, s.Percent, want)
		}
	}
	tiktok := platformOf(t, v, platform.TikTok).Coverage
	if tiktok.Of != 12 || tiktok.PerEvent == nil || *tiktok.PerEvent != 3 {
		t.Errorf("tiktok coverage = %+v; want 3.0 of 12 ((4+3+3+2)/4)", tiktok)
	}
	if meta.Latency == nil || meta.Latency.Observed != 4 || meta.Latency.P50.Seconds <= 0 || meta.Latency.P95.Seconds < meta.Latency.P50.Seconds {
		t.Errorf("meta latency = %+v; want 4 observations with 0 < p50 <= p95", meta.Latency)
	}
	for _, p := range v.Platforms {
		if p.Platform == platform.Google {
			t.Errorf("Google is shown though it is neither configured nor counted: %+v", p)
		}
	}

	page := dashboardGet(t, "/capi/dashboard", "text/html,application/xhtml+xml,*/*;q=0.8").Body.String()
	for _, want := range []string{"Meta: 3.0 of 15", "TikTok: 3.0 of 12", "<code>client_ip_address</code>", "75.0%", "25.0%",
		"records to <code>" + template.HTMLEscapeString(sinkPath) + "</code> instead of sending", "estimated from the histogram buckets"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q:\n%s", want, page)
		}
	}
	for _, private := range []string{"203.0.113.7", "UniqueAgent", strings.Repeat("e", 64), "fb.1.1700000000000", "cov-a", "meta-secret-token", "tiktok-secret-token"} {
		if strings.Contains(page, private) {
			t.Errorf("the page shows %q", private)
		}
	}
}

// TestDashboardCoverageIgnoresEventsNotAccepted holds delivery, so events wait and one is a dead
// letter: the page shows the queue and "no events yet" for coverage, with no NaN anywhere.
func TestDashboardCoverageIgnoresEventsNotAccepted(t *testing.T) {
	m := isolatedMetrics(t)
	a, _ := heldApp(t, nil)
	for _, e := range signalEvents()[:3] {
		if _, err := a.storage.enqueueEdge(context.Background(), []string{platform.Meta}, e); err != nil {
			t.Fatal(err)
		}
	}
	bury(t, a, "meta: (#100) Invalid parameter <b>bold</b>", personal("dl-1"))

	v := dashboardJSON(t)
	meta := platformOf(t, v, platform.Meta)
	if meta.Depth != 3 || meta.DeadLetters != 1 || meta.Enqueued != 3 || meta.Delivered != 0 {
		t.Errorf("meta = %+v; want 3 waiting, 1 dead letter, 3 enqueued, none delivered", meta)
	}
	if c := meta.Coverage; c.Events != 0 || c.PerEvent != nil || len(c.Signals) != 15 || c.Signals[0].Percent != nil {
		t.Errorf("coverage with nothing delivered = %+v; want 15 signals, no shares", c)
	}
	if meta.Latency != nil {
		t.Errorf("latency with nothing delivered = %+v", meta.Latency)
	}
	if got := len(collected(m.signals)); got != 0 {
		t.Errorf("%d signal series exist though nothing was delivered", got)
	}

	w := dashboardGet(t, "/capi/dashboard", "")
	page := w.Body.String()
	if ct := w.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	if !strings.Contains(page, "No events yet") || strings.Contains(page, "NaN") || strings.Contains(page, "Inf") {
		t.Errorf("the page for a platform with nothing delivered:\n%s", page)
	}
	for _, want := range []string{"<th>waiting in queue</th><td class=\"n\">3</td>", "<th>dead letters waiting</th><td class=\"n\">1</td>"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q:\n%s", want, page)
		}
	}
	if strings.Contains(page, "<b>bold") || strings.Contains(page, "Invalid parameter") {
		t.Error("the page shows a dead letter's reason")
	}
}

// TestDashboardEscapesConfigStrings names the storage and the sink after HTML: the only strings on
// the page that do not come from the code must come out as text, never as markup.
func TestDashboardEscapesConfigStrings(t *testing.T) {
	isolatedMetrics(t)
	dir := filepath.Join(t.TempDir(), `x"><img src=x onerror=alert(1)>`)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "capi.db")
	sinkPath := filepath.Join(dir, "<script>alert(1)<.jsonl")
	a := provisioned(t, path, func(a *App) {
		withSink(sinkPath)(a)
		a.holdDelivery = true
	})
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { a.Stop(); a.Cleanup() }()

	page := dashboardGet(t, "/capi/dashboard", "").Body.String()
	for _, raw := range []string{"<img", "<script", `x">`} {
		if strings.Contains(page, raw) {
			t.Errorf("the page carries %q unescaped", raw)
		}
	}
	for _, s := range []string{path, sinkPath} {
		if !strings.Contains(page, template.HTMLEscapeString(s)) {
			t.Errorf("the page lacks the escaped %q", s)
		}
	}
	if csp := dashboardGet(t, "/capi/dashboard", "").Header().Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy = %q; want scripts refused", csp)
	}
}

func TestDashboardAnswersJSONOrHTML(t *testing.T) {
	isolatedMetrics(t)
	heldApp(t, nil)
	tests := []struct {
		target, accept string
		wantJSON       bool
	}{
		{"/capi/dashboard", "", false},
		{"/capi/dashboard", "*/*", false},
		{"/capi/dashboard", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", false},
		{"/capi/dashboard", "application/json", true},
		{"/capi/dashboard", "Application/JSON; charset=utf-8", true},
		{"/capi/dashboard", "text/html;q=0.5, application/json", true},
		{"/capi/dashboard", "application/json;q=0.5, text/html", false},
		{"/capi/dashboard", "application/json;q=0", false},
		{"/capi/dashboard.json", "text/html", true},
	}
	for _, tt := range tests {
		w := dashboardGet(t, tt.target, tt.accept)
		ct := w.Header().Get("Content-Type")
		if isJSON := ct == "application/json"; isJSON != tt.wantJSON {
			t.Errorf("GET %s, Accept %q: Content-Type %q, want JSON %v", tt.target, tt.accept, ct, tt.wantJSON)
		}
		if vary := w.Header().Get("Vary"); vary != "Accept" {
			t.Errorf("GET %s: Vary = %q", tt.target, vary)
		}
	}
}

func TestDashboardRefusesOtherMethods(t *testing.T) {
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodHead} {
		for _, target := range []string{"/capi/dashboard", "/capi/dashboard.json"} {
			if status, _ := adminCall(t, AdminAPI{}.handleDashboard, method, target, ""); status != http.StatusMethodNotAllowed {
				t.Errorf("%s %s: %d, want 405", method, target, status)
			}
		}
	}
}

func TestDashboardRouteIsRegistered(t *testing.T) {
	want := map[string]bool{"/capi/dashboard": false, "/capi/dashboard.json": false}
	for _, r := range (AdminAPI{}).Routes() {
		if _, ok := want[r.Pattern]; ok {
			want[r.Pattern] = true
		}
	}
	for p, found := range want {
		if !found {
			t.Errorf("%s is not among the admin routes", p)
		}
	}
}

// TestDashboardPageGolden renders a dashboard of fixed numbers: Meta with deliveries, one slow,
// TikTok configured with nothing delivered. Rewrite with -update after a deliberate change.
func TestDashboardPageGolden(t *testing.T) {
	m := newDeliveryMetrics()
	obs := deliveryObserver{m: m}
	evs := signalEvents()
	ptrs := make([]*event.Event, len(evs))
	for i := range evs {
		ptrs[i] = &evs[i]
	}
	obs.Enqueued(platform.Meta, 5)
	obs.Delivered(platform.Meta, 4)
	obs.DeliveredEvents(platform.Meta, ptrs)
	obs.Retried(platform.Meta, 2)
	obs.DeadLettered(platform.Meta, 1)
	for _, d := range []time.Duration{300 * time.Millisecond, 500 * time.Millisecond, time.Second, 3 * time.Hour} {
		obs.DeliveryLatency(platform.Meta, d)
	}
	statuses := []storageStatus{{
		Path: "/var/lib/caddy/capi/capi.db", Backend: backendBolt, Open: true, Started: true,
		Platforms: []string{platform.Meta, platform.TikTok}, Sink: "/var/log/capi/events.jsonl",
		Queue: map[string]queue.PartitionStats{platform.Meta: {Depth: 2, Leased: 1, DeadLetters: 1}},
	}}
	v := buildDashboard(m, statuses, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	var page strings.Builder
	if err := dashboardPage.Execute(&page, v); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "dashboard", "page.html")
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(page.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if page.String() != string(want) {
		t.Errorf("the page differs from %s (run with -update after a deliberate change):\n%s", golden, page.String())
	}
}

func TestBucketQuantile(t *testing.T) {
	// Buckets of 1s, 2s, 4s with cumulative counts 10, 30, 40, and 10 more beyond 4s.
	h := &dto.Histogram{SampleCount: ptr(uint64(50)), Bucket: []*dto.Bucket{
		{UpperBound: ptr(1.0), CumulativeCount: ptr(uint64(10))},
		{UpperBound: ptr(2.0), CumulativeCount: ptr(uint64(30))},
		{UpperBound: ptr(4.0), CumulativeCount: ptr(uint64(40))},
		{UpperBound: ptr(math.Inf(+1)), CumulativeCount: ptr(uint64(50))},
	}}
	tests := []struct {
		q    float64
		want quantileValue
	}{
		{0.1, quantileValue{Seconds: 0.5}},              // rank 5 of the first bucket's 10: halfway from 0 to 1s
		{0.5, quantileValue{Seconds: 1.75}},             // rank 25: 15 of the 20 between 1s and 2s
		{0.8, quantileValue{Seconds: 4}},                // rank 40: the top of the 4s bucket
		{0.95, quantileValue{Seconds: 4, Beyond: true}}, // rank 47.5: past the last bucket
		{0.99, quantileValue{Seconds: 4, Beyond: true}},
	}
	for _, tt := range tests {
		if got := bucketQuantile(tt.q, h); got != tt.want {
			t.Errorf("q%v = %+v, want %+v", tt.q, got, tt.want)
		}
	}
	if got := bucketQuantile(0.5, &dto.Histogram{}); got != (quantileValue{}) {
		t.Errorf("empty histogram: %+v", got)
	}
}

func ptr[T any](v T) *T { return &v }

func TestHumanSeconds(t *testing.T) {
	for s, want := range map[float64]string{0.35: "350 ms", 4.2: "4.2 s", 384: "6.4 min", 9000: "2.5 h", 104857.6: "1.2 d"} {
		if got := humanSeconds(s); got != want {
			t.Errorf("humanSeconds(%v) = %q, want %q", s, got, want)
		}
	}
}

// FuzzDashboardAccept checks the Accept negotiation on any header: it never panics, and it picks
// JSON only when the header names JSON.
func FuzzDashboardAccept(f *testing.F) {
	for _, s := range []string{"", "*/*", "application/json", "text/html;q=0.5, application/json",
		"application/json;q=x", "application/json;q=NaN", "application/json;q=1e400", `application/json;q="0.9"`, ",,;;=", "a/b;c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, accept string) {
		got := wantsJSON(accept)
		if got && !strings.Contains(strings.ToLower(accept), "json") {
			t.Errorf("wantsJSON(%q) without JSON named", accept)
		}
		if got != wantsJSON(accept) {
			t.Errorf("wantsJSON(%q) is not deterministic", accept)
		}
	})
}

// BenchmarkDeliveredEvents measures counting the signals of a round of 1000 accepted events, which
// the delivery engine does after each settled send.
func BenchmarkDeliveredEvents(b *testing.B) {
	registerMetrics(prometheus.NewRegistry(), zap.NewNop())
	obs := deliveryObserver{m: newDeliveryMetrics()}
	evs := make([]event.Event, 1000)
	ptrs := make([]*event.Event, len(evs))
	for i := range evs {
		evs[i] = signalEvents()[i%4]
		ptrs[i] = &evs[i]
	}
	b.ReportAllocs()
	for b.Loop() {
		obs.DeliveredEvents(platform.Meta, ptrs)
	}
}
