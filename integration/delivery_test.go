package integration

// End-to-end tests of delivery (issue 4): conversions enter through the real handler of the real
// binary and reach the strict fake platforms through the real senders, across platform outages,
// kill -9, config reloads and a permanently invalid event.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/integration/fakes"
	"github.com/caddy-capi/caddy-capi/integration/harness"
)

// conversionSite is a shop whose thank-you page fires a Purchase per order and answers with the
// event's ID, so a test knows which ID each order carries. Vars: platforms (the platform blocks),
// flush, batch.
const conversionSite = `{
	capi {
		{{.Vars.platforms}}
		delivery {
			flush {{.Vars.flush}}
			batch {{.Vars.batch}}
		}
	}
}
{{.Site}} {
	capi {
		conversion Purchase /thank-you {
			value    {http.request.uri.query.total}
			currency USD
			order_id {http.request.uri.query.order}
		}
	}
	respond "{capi.event_id}" 200
}`

// inflight is a reverse proxy in front of a fake platform that measures how many requests are in
// flight at once: with one worker per platform, never more than one, whatever reloads happen.
type inflight struct {
	srv      *httptest.Server
	cur, max atomic.Int64
}

func newInflight(t *testing.T, target string) *inflight {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &inflight{}
	rp := httputil.NewSingleHostReverseProxy(u)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := p.cur.Add(1)
		defer p.cur.Add(-1)
		for {
			m := p.max.Load()
			if n <= m || p.max.CompareAndSwap(m, n) {
				break
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// metaBlock is the meta block for a fake Meta reached at endpoint (the fake itself or a proxy).
func metaBlock(m *fakes.Meta, endpoint string) string {
	cfg := m.Config()
	return fmt.Sprintf("meta {\n\tpixel_id %s\n\taccess_token %s\n\tendpoint %s\n}\n", cfg.PixelID, cfg.AccessToken, endpoint)
}

// purchase fires the conversion of one order as a new shopper and returns its event ID. The 200
// is the acknowledgement: the event is on disk when the shopper gets it.
//
// A request that fails without an answer is tried again, as a shopper reloads the page: during a
// config reload Caddy itself resets the odd connection (a plain `respond` site shows it too), and
// an unanswered request was never acknowledged. The order's event ID is derived from the order,
// so the retry carries the same ID and counts once.
func purchase(t *testing.T, c *harness.Caddy, order string) string {
	t.Helper()
	var lastErr error
	for range 3 {
		client := harness.NewClient()
		client.Transport = &http.Transport{DisableKeepAlives: true}
		resp, err := client.Get(c.URL("/thank-you?order=" + url.QueryEscape(order) + "&total=19.90"))
		if err != nil {
			lastErr = err
			time.Sleep(50 * time.Millisecond)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		id := strings.TrimSpace(string(body))
		if resp.StatusCode != http.StatusOK || !eventIDPattern.MatchString(id) {
			t.Errorf("order %s: %d %q; want 200 with the event ID", order, resp.StatusCode, body)
			return ""
		}
		return id
	}
	t.Errorf("order %s: %v", order, lastErr)
	return ""
}

var eventIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// orders fires conversions for orders prefix-0 … prefix-(n-1), one every gap, and returns order →
// event ID.
func orders(t *testing.T, c *harness.Caddy, prefix string, n int, gap time.Duration) map[string]string {
	t.Helper()
	ids := make(map[string]string, n)
	for i := range n {
		order := fmt.Sprintf("%s-%d", prefix, i)
		ids[order] = purchase(t, c, order)
		time.Sleep(gap)
	}
	return ids
}

// checkDelivered waits until every event ID of ids was accepted by the fake, then checks that
// each order reached the platform under exactly its one event ID, and returns how many times each
// event ID was accepted.
func checkDelivered(t *testing.T, m *fakes.Meta, ids map[string]string, timeout time.Duration) map[string]int {
	t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	m.WaitFor(t, timeout, fmt.Sprintf("all %d events", len(want)), func(es []fakes.Event) bool {
		seen := map[string]bool{}
		for _, e := range es {
			if want[e.ID] {
				seen[e.ID] = true
			}
		}
		return len(seen) == len(want)
	})
	counts := map[string]int{}
	for _, e := range m.Accepted() {
		counts[e.ID]++
		order, _ := e.Get("custom_data.order_id").(string)
		if id, ok := ids[order]; ok && id != e.ID {
			t.Errorf("order %s arrived as event %s, but its conversion was acknowledged as %s", order, e.ID, id)
		}
	}
	return counts
}

// queueState reads GET /capi/queue for one platform.
type queueState struct {
	Depth        int    `json:"depth"`
	Leased       int    `json:"leased"`
	DeadLetters  int    `json:"dead_letters"`
	Workers      int    `json:"workers"`
	Enqueued     uint64 `json:"enqueued"`
	Delivered    uint64 `json:"delivered"`
	Retried      uint64 `json:"retried"`
	DeadLettered uint64 `json:"dead_lettered"`
}

func adminJSON(t *testing.T, c *harness.Caddy, method, path, body string, out any) int {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.AdminURL(path), rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", c.AdminURL(""))
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	} else if resp.StatusCode != http.StatusOK {
		t.Logf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode
}

func metaQueue(t *testing.T, c *harness.Caddy) queueState {
	t.Helper()
	var resp struct {
		Platforms map[string]queueState `json:"platforms"`
	}
	if status := adminJSON(t, c, http.MethodGet, "/capi/queue", "", &resp); status != http.StatusOK {
		t.Fatalf("GET /capi/queue: %d", status)
	}
	return resp.Platforms["meta"]
}

// waitQueue polls the queue state until cond holds.
func waitQueue(t *testing.T, c *harness.Caddy, timeout time.Duration, what string, cond func(queueState) bool) queueState {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := metaQueue(t, c)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: the meta queue is %+v", what, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDeliveryOutageLosesNothing(t *testing.T) {
	meta := fakes.NewMeta(t, fakes.MetaConfig{})
	c := harness.Start(t, conversionSite,
		harness.Var("platforms", meta.Block()), harness.Var("flush", "50ms"), harness.Var("batch", "50"))

	// Steady conversions for about six seconds; Meta answers 503 for three of them.
	var (
		mu  sync.Mutex
		ids = map[string]string{}
		wg  sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 120 {
			order := fmt.Sprintf("outage-%d", i)
			id := purchase(t, c, order)
			mu.Lock()
			ids[order] = id
			mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
	}()
	time.Sleep(1500 * time.Millisecond)
	meta.FailFor(3*time.Second, http.StatusServiceUnavailable)
	wg.Wait()

	counts := checkDelivered(t, meta, ids, 45*time.Second)
	failed := 0
	for _, r := range meta.Requests() {
		if r.Status == http.StatusServiceUnavailable {
			failed++
		}
	}
	if failed == 0 {
		t.Fatal("no request met the outage; the test proved nothing")
	}
	for id, n := range counts {
		if n > 1 {
			t.Errorf("event %s was accepted %d times; Meta answered every failed request with 503, so nothing should have been accepted twice", id, n)
		}
	}
	s := waitQueue(t, c, 10*time.Second, "an empty queue", func(s queueState) bool { return s.Depth == 0 })
	if s.Retried == 0 || s.DeadLetters != 0 || s.Delivered < uint64(len(ids)) {
		t.Errorf("after the outage the meta queue is %+v; want retries, no dead letters, all %d delivered", s, len(ids))
	}
	t.Logf("%d conversions, %d requests refused with 503, queue %+v", len(ids), failed, s)
}

func TestDeliveryCrashLosesNothing(t *testing.T) {
	meta := fakes.NewMeta(t, fakes.MetaConfig{})
	c := harness.Start(t, conversionSite,
		harness.Var("platforms", meta.Block()), harness.Var("flush", "50ms"), harness.Var("batch", "50"))

	// Meta is down: every conversion is acknowledged to the shopper and waits in the queue.
	meta.FailFor(time.Hour, http.StatusServiceUnavailable)
	ids := orders(t, c, "crash", 40, 10*time.Millisecond)
	c.Kill9()
	if len(meta.Accepted()) != 0 {
		t.Fatal("Meta accepted events while it was down")
	}

	meta.FailFor(0, http.StatusServiceUnavailable)
	c.Restart()
	counts := checkDelivered(t, meta, ids, 30*time.Second)
	for id, n := range counts {
		if n > 1 {
			t.Errorf("event %s accepted %d times", id, n)
		}
	}
}

func TestDeliveryReloadsDuringTraffic(t *testing.T) {
	meta := fakes.NewMeta(t, fakes.MetaConfig{})
	// Each request takes a while at the platform, so that a doubled worker would overlap.
	meta.Delay(20 * time.Millisecond)
	proxy := newInflight(t, meta.URL())
	block := metaBlock(meta, proxy.srv.URL)
	c := harness.Start(t, conversionSite,
		harness.Var("platforms", block), harness.Var("flush", "50ms"), harness.Var("batch", "20"))

	// Three shoppers buy steadily while the config is reloaded.
	var (
		mu   sync.Mutex
		ids  = map[string]string{}
		stop = make(chan struct{})
		wg   sync.WaitGroup
	)
	for shopper := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				order := fmt.Sprintf("reload-%d-%d", shopper, i)
				id := purchase(t, c, order)
				mu.Lock()
				ids[order] = id
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}

	const reloads = 30
	for i := range reloads {
		// Every reload changes the delivery settings, so each is a real config change.
		cfg := strings.NewReplacer("{{.Vars.flush}}", fmt.Sprintf("%dms", 40+i%3*20), "{{.Vars.batch}}", fmt.Sprint(10+i%4*5)).Replace(conversionSite)
		began := time.Now()
		errc := make(chan error, 1)
		go func() { errc <- c.Reload(cfg) }()
		select {
		case err := <-errc:
			if err != nil {
				t.Fatalf("reload %d: %v", i, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("reload %d hung for %s", i, time.Since(began))
		}
		time.Sleep(200 * time.Millisecond)
	}
	close(stop)
	wg.Wait()

	counts := checkDelivered(t, meta, ids, 30*time.Second)
	for id, n := range counts {
		if n > 1 {
			t.Errorf("event %s accepted %d times; nothing failed, so nothing should have been sent twice", id, n)
		}
	}
	if m := proxy.max.Load(); m > 1 {
		t.Errorf("%d requests were in flight to Meta at once; one worker was configured, so a worker was doubled", m)
	}
	s := waitQueue(t, c, 10*time.Second, "an empty queue", func(s queueState) bool { return s.Depth == 0 })
	if s.Workers != 1 {
		t.Errorf("meta has %d workers after %d reloads, want 1", s.Workers, reloads)
	}
	t.Logf("%d conversions across %d reloads; at most %d request in flight", len(ids), reloads, proxy.max.Load())
}

func TestDeliveryIsolatesAPermanentlyInvalidEvent(t *testing.T) {
	meta := fakes.NewMeta(t, fakes.MetaConfig{})
	// A long flush gathers the conversions into one batch.
	c := harness.Start(t, conversionSite,
		harness.Var("platforms", meta.Block()), harness.Var("flush", "3s"), harness.Var("batch", "100"))

	ids := map[string]string{}
	var bad string
	for i := range 6 {
		order := fmt.Sprintf("batch-%d", i)
		ids[order] = purchase(t, c, order)
		if i == 2 {
			bad = ids[order]
			meta.RejectEvent(bad, "custom_data.value must be a number")
		}
	}
	good := map[string]string{}
	for order, id := range ids {
		if id != bad {
			good[order] = id
		}
	}
	checkDelivered(t, meta, good, 30*time.Second)
	if _, ok := meta.Event(bad); ok {
		t.Fatal("Meta accepted the event it rejects")
	}
	whole := false
	for _, r := range meta.Requests() {
		if strings.HasPrefix(r.Outcome, "rejected event "+bad) && strings.Count(string(r.Body), `event_id`) >= 6 {
			whole = true
		}
	}
	if !whole {
		t.Error("the six conversions never went out as one batch; the test did not exercise splitting a rejected batch")
	}

	type deadLetter struct {
		ID      string `json:"id"`
		EventID string `json:"event_id"`
		Reason  string `json:"reason"`
	}
	var page struct {
		DeadLetters []deadLetter `json:"dead_letters"`
	}
	waitQueue(t, c, 10*time.Second, "the dead letter", func(s queueState) bool { return s.DeadLetters == 1 && s.Depth == 0 })
	if status := adminJSON(t, c, http.MethodGet, "/capi/dead-letters?platform=meta", "", &page); status != http.StatusOK {
		t.Fatalf("GET /capi/dead-letters: %d", status)
	}
	if len(page.DeadLetters) != 1 || page.DeadLetters[0].EventID != bad {
		t.Fatalf("dead letters = %+v; want only %s", page.DeadLetters, bad)
	}
	if r := page.DeadLetters[0].Reason; !strings.Contains(r, "custom_data.value must be a number") {
		t.Errorf("dead-letter reason %q does not carry Meta's", r)
	}

	// The cause is fixed: the config now points at a Meta that takes the event. Replay it.
	fixed := fakes.NewMeta(t, fakes.MetaConfig{})
	if err := c.Reload(strings.NewReplacer("{{.Vars.platforms}}", fixed.Block()).Replace(conversionSite)); err != nil {
		t.Fatal(err)
	}
	var replayed struct {
		Replayed int `json:"replayed"`
	}
	body := fmt.Sprintf(`{"platform":"meta","ids":[%q]}`, page.DeadLetters[0].ID)
	if status := adminJSON(t, c, http.MethodPost, "/capi/dead-letters/replay", body, &replayed); status != http.StatusOK || replayed.Replayed != 1 {
		t.Fatalf("replay: %d, %+v", status, replayed)
	}
	e := fixed.WaitEvent(t, bad, 15*time.Second)
	if order, _ := e.Get("custom_data.order_id").(string); order != "batch-2" {
		t.Errorf("the replayed event carries order %q, want batch-2", order)
	}
	waitQueue(t, c, 10*time.Second, "no dead letters", func(s queueState) bool { return s.DeadLetters == 0 && s.Depth == 0 })
}

func TestSinkFileRecordsDemoPayloadsWithoutTokens(t *testing.T) {
	c := harness.Start(t, demoConfig(t))
	// A shopper from a Google ad, so that Google Ads gets the purchase as a click conversion.
	shopper := harness.NewClient()
	landing, err := shopper.Get(c.URL("/?gclid=Cj0KCQiA-sink_test"))
	if err != nil {
		t.Fatal(err)
	}
	landing.Body.Close()
	resp, err := shopper.Get(c.URL("/thank-you?order=SINK-1&total=24.95&currency=USD"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("thank-you page: %d", resp.StatusCode)
	}
	resp.Body.Close()

	type line struct {
		Time     time.Time       `json:"time"`
		Platform string          `json:"platform"`
		Method   string          `json:"method"`
		URL      string          `json:"url"`
		Body     json.RawMessage `json:"body"`
	}
	path := c.Path("demo-events.jsonl")
	var lines []line
	deadline := time.Now().Add(15 * time.Second)
	for {
		lines = lines[:0]
		if f, err := os.Open(path); err == nil {
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 1<<20), 16<<20)
			for sc.Scan() {
				var l line
				if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
					t.Fatalf("sink line is not JSON: %q: %v", sc.Text(), err)
				}
				lines = append(lines, l)
			}
			f.Close()
		}
		got := map[string]bool{}
		for _, l := range lines {
			if strings.Contains(string(l.Body), "SINK-1") {
				got[l.Platform] = true
			}
		}
		if got["meta"] && got["tiktok"] && got["google"] {
			break
		}
		if time.Now().After(deadline) {
			raw, _ := os.ReadFile(path)
			t.Fatalf("the sink holds the order for %v only:\n%s", got, raw)
		}
		time.Sleep(50 * time.Millisecond)
	}

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"demo-meta-access-token", "demo-tiktok-access-token", "demo-developer-token",
		"demo-client-secret", "demo-refresh-token", "sink-access-token"} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("the sink file holds the secret %q", secret)
		}
	}
	// The payloads as sent: Meta's and TikTok's carry the same event ID for the order, Google's the
	// click and the order.
	eventIDs := map[string]string{}
	for _, l := range lines {
		if l.Method != http.MethodPost || l.Time.IsZero() || !json.Valid(l.Body) {
			t.Errorf("sink line %+v", l)
		}
		if !strings.Contains(string(l.Body), "SINK-1") {
			continue
		}
		var body struct {
			Data []struct {
				EventID string `json:"event_id"`
			} `json:"data"`
			Conversions []struct {
				Gclid   string `json:"gclid"`
				OrderID string `json:"orderId"`
			} `json:"conversions"`
		}
		if err := json.Unmarshal(l.Body, &body); err != nil {
			t.Fatalf("%s's recorded body %s: %v", l.Platform, l.Body, err)
		}
		u := strings.SplitN(l.URL, "?", 2)[0]
		switch l.Platform {
		case "meta", "tiktok":
			if len(body.Data) != 1 || !eventIDPattern.MatchString(body.Data[0].EventID) {
				t.Fatalf("%s's recorded body %s", l.Platform, l.Body)
			}
			eventIDs[l.Platform] = body.Data[0].EventID
		case "google":
			if len(body.Conversions) != 1 || body.Conversions[0].Gclid != "Cj0KCQiA-sink_test" || body.Conversions[0].OrderID != "SINK-1" {
				t.Errorf("Google's recorded body %s", l.Body)
			}
		}
		if want := map[string]string{
			"meta":   "https://graph.facebook.com/v25.0/1234567890123456/events",
			"tiktok": "https://business-api.tiktok.com/open_api/v1.3/event/track/",
		}[l.Platform]; want != "" && u != want {
			t.Errorf("%s's recorded URL %s, want %s", l.Platform, u, want)
		}
	}
	if eventIDs["meta"] != eventIDs["tiktok"] {
		t.Errorf("Meta got event %s and TikTok %s for one order", eventIDs["meta"], eventIDs["tiktok"])
	}
}

func TestAdminTestEventReachesPlatformsWithATestCode(t *testing.T) {
	meta := fakes.NewMeta(t, fakes.MetaConfig{})
	tiktok := fakes.NewTikTok(t, fakes.TikTokConfig{})
	c := harness.Start(t, conversionSite,
		harness.Var("platforms", meta.Block("test_event_code TEST12345")+tiktok.Block()),
		harness.Var("flush", "50ms"), harness.Var("batch", "50"))

	warned := false
	for _, e := range c.LogEntries() {
		if e["level"] == "warn" && strings.Contains(fmt.Sprint(e["msg"]), "test_event_code") {
			warned = true
			if ps := fmt.Sprint(e["platforms"]); ps != "[meta]" {
				t.Errorf("the warning names platforms %s, want [meta]", ps)
			}
		}
	}
	if !warned {
		t.Error("no warning that a test_event_code is configured")
	}

	var resp struct {
		EventID   string            `json:"event_id"`
		Platforms []string          `json:"platforms"`
		Skipped   map[string]string `json:"skipped"`
	}
	if status := adminJSON(t, c, http.MethodPost, "/capi/test-event", "", &resp); status != http.StatusOK {
		t.Fatalf("POST /capi/test-event: %d", status)
	}
	if len(resp.Platforms) != 1 || resp.Platforms[0] != "meta" || resp.Skipped["tiktok"] == "" {
		t.Fatalf("test event went to %v, skipped %v; want Meta only", resp.Platforms, resp.Skipped)
	}
	e := meta.WaitEvent(t, resp.EventID, 10*time.Second)
	if e.TestEventCode != "TEST12345" {
		t.Errorf("Meta got the test event with test_event_code %q", e.TestEventCode)
	}
	// TikTok has no test code, so nothing that would count as a real event was even queued for it.
	var q struct {
		Platforms map[string]queueState `json:"platforms"`
	}
	adminJSON(t, c, http.MethodGet, "/capi/queue", "", &q)
	if s := q.Platforms["tiktok"]; s.Enqueued != 0 || s.Depth != 0 || len(tiktok.Requests()) != 0 {
		t.Errorf("TikTok got the test event: queue %+v, %d requests", s, len(tiktok.Requests()))
	}
	if status := adminJSON(t, c, http.MethodGet, "/capi/test-event", "", nil); status != http.StatusMethodNotAllowed {
		t.Errorf("GET /capi/test-event: %d, want 405", status)
	}
}

// TestValidateBesideARunningServer: `caddy validate` of the running config, with the same data
// directory, neither waits for nor takes the storage's file lock, and delivery carries on.
func TestValidateBesideARunningServer(t *testing.T) {
	meta := fakes.NewMeta(t, fakes.MetaConfig{})
	c := harness.Start(t, conversionSite,
		harness.Var("platforms", meta.Block()), harness.Var("flush", "50ms"), harness.Var("batch", "50"))
	before := purchase(t, c, "validate-0")
	meta.WaitEvent(t, before, 10*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.Binary(t), "validate", "--config", c.ConfigPath(), "--adapter", "caddyfile")
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+c.DataDir, "HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
	began := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("caddy validate beside the running server: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Valid configuration") {
		t.Errorf("caddy validate said:\n%s", out)
	}
	t.Logf("validate took %s", time.Since(began).Round(time.Millisecond))

	after := purchase(t, c, "validate-1")
	meta.WaitEvent(t, after, 10*time.Second)
}
