package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/caddy-capi/caddy-capi/capi/conversion"
	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/identity"
	"github.com/caddy-capi/caddy-capi/capi/store"
)

// The edge tests run the handler as Caddy runs it: the capi app is provisioned from JSON and
// started on a bbolt file of its own, the handler is loaded by its module ID in the same config
// context, and requests carry Caddy's replacer and vars with the client IP. What reaches the queue
// is recorded at edge.enqueue, which still writes to the real queue (so its dedup is real).

const (
	testPixelID   = "1234567890"
	testTikTok    = "C4ABCDEFGH1234567890"
	testTagID     = "AW-123456789"
	testLabel     = "AbC-dEf_1"
	testClientIP  = "203.0.113.7"
	testUserAgent = "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1.0"
)

// testApp is the capi app of the edge tests: every platform, recorded by a sink.
func testApp(dir string) map[string]any {
	return map[string]any{
		"storage": map[string]any{"path": filepath.Join(dir, "capi.db")},
		"sink":    map[string]any{"type": "file", "path": filepath.Join(dir, "sink.jsonl")},
		"meta":    map[string]any{"pixel_id": testPixelID},
		"tiktok":  map[string]any{"pixel_code": testTikTok},
		"google_ads": map[string]any{
			"tag_id": testTagID, "customer_id": "1234567890",
			"conversions": []any{map[string]any{"event": "Purchase", "action_id": "987654321", "label": testLabel}},
		},
		"default_country": "US",
	}
}

type enqueued struct {
	platforms []string
	event     event.Event
	added     int
}

// testSite is one site behind the handler, with a browser's cookie jar.
type testSite struct {
	t    testing.TB
	h    *Handler
	app  *App
	jar  map[string]string
	mu   sync.Mutex
	sent []enqueued
	// upstream answers the requests the handler passes on; it records what it received.
	upstream func(w http.ResponseWriter, r *http.Request)
	got      *http.Request
	gotBody  []byte
	gotRepl  map[string]string
}

func newTestSite(t testing.TB, site string, configureApp func(map[string]any)) *testSite {
	t.Helper()
	s := newUnstartedTestSite(t, site, configureApp)
	if err := s.app.Start(); err != nil {
		t.Fatalf("starting the capi app: %v", err)
	}
	return s
}

// newUnstartedTestSite provisions the app and the handler but does not start the app, as happens
// when Caddy starts the http app first.
func newUnstartedTestSite(t testing.TB, site string, configureApp func(map[string]any)) *testSite {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("XDG_DATA_HOME", dir)
	t.Setenv("XDG_CONFIG_HOME", dir)
	appCfg := testApp(dir)
	if configureApp != nil {
		configureApp(appCfg)
	}
	appJSON, err := json.Marshal(appCfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := caddy.ProvisionContext(&caddy.Config{
		Admin:   &caddy.AdminConfig{Disabled: true},
		AppsRaw: caddy.ModuleMap{"capi": appJSON},
	})
	if err != nil {
		t.Fatalf("provisioning the capi app: %v", err)
	}
	appIface, err := ctx.App("capi")
	if err != nil {
		t.Fatal(err)
	}
	app := appIface.(*App)
	mod, err := ctx.LoadModuleByID("http.handlers.capi", json.RawMessage(site))
	if err != nil {
		t.Fatalf("loading the handler: %v", err)
	}
	s := &testSite{t: t, h: mod.(*Handler), app: app, jar: map[string]string{}}
	t.Cleanup(func() {
		_ = s.h.Cleanup()
		_ = app.Stop()
		_ = app.Cleanup()
	})
	real := s.h.edge.enqueue
	s.h.edge.enqueue = func(ctx context.Context, platforms []string, e event.Event) (int, error) {
		n, err := real(ctx, platforms, e)
		s.mu.Lock()
		s.sent = append(s.sent, enqueued{platforms: platforms, event: e, added: n})
		s.mu.Unlock()
		return n, err
	}
	s.upstream = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<!doctype html><html><head><title>Shop</title></head><body>hello</body></html>")
	}
	return s
}

type response struct {
	*httptest.ResponseRecorder
	err error
}

func (r response) cookie(name string) *http.Cookie {
	for _, c := range r.Result().Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// do sends a request through the handler as a browser would: with the jar's cookies, and keeping
// the cookies the response sets. headers are name, value pairs.
func (s *testSite) do(method, target string, body io.Reader, headers ...string) response {
	s.t.Helper()
	r := httptest.NewRequest(method, target, body)
	r.Header.Set("User-Agent", testUserAgent)
	r.Header.Set("Accept-Language", "en-US,en;q=0.9")
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	for name, value := range s.jar {
		r.AddCookie(&http.Cookie{Name: name, Value: value})
	}
	// As Caddy's server does: the vars with the client IP, then the replacer with the request's
	// placeholders.
	r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: testClientIP}))
	repl := caddyhttp.NewTestReplacer(r)

	s.got, s.gotBody, s.gotRepl = nil, nil, map[string]string{}
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		s.got = r
		if r.Body != nil {
			s.gotBody, _ = io.ReadAll(r.Body)
		}
		for _, k := range []string{"capi.visitor_id", "capi.event_id", "capi.fbclid", "capi.gclid", "capi.ttclid"} {
			if v, ok := repl.GetString(k); ok {
				s.gotRepl[k] = v
			}
		}
		s.upstream(w, r)
		return nil
	})
	w := httptest.NewRecorder()
	err := s.h.ServeHTTP(w, r, next)
	for _, c := range w.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(s.jar, c.Name)
		} else {
			s.jar[c.Name] = c.Value
		}
	}
	return response{w, err}
}

// page requests a page as a browser navigation.
func (s *testSite) page(target string) response {
	s.t.Helper()
	return s.do(http.MethodGet, target, nil, "Accept", "text/html,application/xhtml+xml", "Sec-Fetch-Dest", "document")
}

// collect posts body to the site's collect path as window.capi.track does: JSON, same-origin.
func (s *testSite) collect(body string, headers ...string) response {
	s.t.Helper()
	h := append([]string{"Content-Type", "application/json", "Sec-Fetch-Site", "same-origin"}, headers...)
	return s.do(http.MethodPost, "https://shop.example.com/capi/collect", strings.NewReader(body), h...)
}

// settle waits until the background writer has run every job submitted so far.
func (s *testSite) settle() {
	done := make(chan struct{})
	if !s.h.edge.writer.submit("test", func(context.Context) error { close(done); return nil }) {
		s.t.Fatal("the background writer refused a job")
	}
	<-done
}

func (s *testSite) visitor(id string) store.Visitor {
	s.t.Helper()
	s.settle()
	v, found, err := s.app.storage.visitors.Get(context.Background(), id)
	if err != nil || !found {
		s.t.Fatalf("visitor %s: found=%v err=%v", id, found, err)
	}
	return v
}

func (s *testSite) events() []enqueued {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]enqueued(nil), s.sent...)
}

var (
	scriptConfig = regexp.MustCompile(`\}\)\(window,document,(\{.*\})\);\n</script>`)
)

// snippetOf returns the JSON literal the injected script was called with, or nil when the body
// has no snippet.
func snippetOf(t *testing.T, body string) map[string]any {
	t.Helper()
	if strings.Count(body, "<script") > 1 {
		t.Fatalf("more than one script injected:\n%s", body)
	}
	m := scriptConfig.FindStringSubmatch(body)
	if m == nil {
		return nil
	}
	var cfg map[string]any
	if err := json.Unmarshal([]byte(m[1]), &cfg); err != nil {
		t.Fatalf("snippet literal: %v", err)
	}
	return cfg
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestEdgeSetsCookiesOnFirstVisitAndKeepsThemOnReturn(t *testing.T) {
	s := newTestSite(t, `{}`, nil)
	first := s.page("https://shop.example.com/?fbclid=IwAR1abc_DEF-2&gclid=Cj0KCQjw-x_1&ttclid=E.C.P.tt1")
	if first.err != nil {
		t.Fatal(first.err)
	}
	vid := first.cookie("_capi_vid")
	if vid == nil || !validVisitorID(vid.Value) || !vid.HttpOnly || vid.Domain != "example.com" || !vid.Secure {
		t.Fatalf("_capi_vid = %+v; want an HttpOnly, Secure visitor ID on example.com", vid)
	}
	for _, name := range []string{"_fbp", "_fbc", "_ttp", "ttclid", "_gcl_aw"} {
		if first.cookie(name) == nil {
			t.Errorf("first visit did not set %s", name)
		}
	}
	if fbc := first.cookie("_fbc"); fbc == nil || !strings.HasPrefix(fbc.Value, "fb.1.") || !strings.HasSuffix(fbc.Value, ".IwAR1abc_DEF-2") {
		t.Errorf("_fbc = %v; want fb.1.<ms>.<fbclid exactly>", fbc)
	}
	want := map[string]string{"capi.visitor_id": vid.Value, "capi.fbclid": "IwAR1abc_DEF-2", "capi.gclid": "Cj0KCQjw-x_1", "capi.ttclid": "E.C.P.tt1"}
	for k, v := range want {
		if s.gotRepl[k] != v {
			t.Errorf("placeholder %s = %q, want %q", k, s.gotRepl[k], v)
		}
	}
	fbp := first.cookie("_fbp").Value

	again := s.page("https://shop.example.com/product")
	if c := again.cookie("_capi_vid"); c == nil || c.Value != vid.Value {
		t.Fatalf("return visit re-sent _capi_vid %v; want the same %s with a fresh lifetime", c, vid.Value)
	}
	if c := again.cookie("_fbp"); c == nil || c.Value != fbp {
		t.Errorf("_fbp changed on return: %v, want %s", c, fbp)
	}
	if s.gotRepl["capi.fbclid"] != "IwAR1abc_DEF-2" {
		t.Errorf("the fbclid in force was not kept from the cookie: %q", s.gotRepl["capi.fbclid"])
	}

	rec := s.visitor(vid.Value)
	if rec.Clicks[store.ClickFBCLID].Value != "IwAR1abc_DEF-2" || rec.Clicks[store.ClickGCLID].Value != "Cj0KCQjw-x_1" ||
		rec.Clicks[store.ClickTTCLID].Value != "E.C.P.tt1" {
		t.Errorf("visitor clicks = %+v", rec.Clicks)
	}
	if rec.User.IP != testClientIP || rec.User.UserAgent != testUserAgent || rec.User.FBP != fbp {
		t.Errorf("visitor user = %+v; want the client IP from Caddy's vars, the user agent and _fbp", rec.User)
	}
	if rec.LastPageURL == "" {
		t.Error("the last page URL of an HTML navigation was not recorded")
	}
}

func TestEdgeIgnoresForwardedForAndUsesCaddysClientIP(t *testing.T) {
	s := newTestSite(t, `{}`, nil)
	s.page("https://shop.example.com/")
	s.do(http.MethodGet, "https://shop.example.com/", nil, "Accept", "text/html", "X-Forwarded-For", "198.51.100.99")
	rec := s.visitor(s.jar["_capi_vid"])
	if rec.User.IP != testClientIP {
		t.Fatalf("visitor IP = %q, want Caddy's client IP %s", rec.User.IP, testClientIP)
	}
}

func TestEdgeRefusesHostileClickIDs(t *testing.T) {
	s := newTestSite(t, `{}`, nil)
	before := counterValue(t, edgeStats().clickIDsRejected)
	hostile := `%22%3E%3Cscript%3Ealert(1)%3C/script%3E`
	res := s.page("https://shop.example.com/?fbclid=" + hostile + "&gclid=" + strings.Repeat("a", 501))
	if c := res.cookie("_fbc"); c != nil {
		t.Errorf("a hostile fbclid became _fbc=%s", c.Value)
	}
	if c := res.cookie("_gcl_aw"); c != nil {
		t.Errorf("an oversized gclid became _gcl_aw=%s", c.Value)
	}
	if _, ok := s.gotRepl["capi.fbclid"]; ok {
		t.Error("a hostile fbclid was set as a placeholder")
	}
	if strings.Contains(res.Body.String(), "alert(1)") || strings.Contains(strings.Join(res.Header().Values("Set-Cookie"), ";"), "script") {
		t.Error("the hostile value was echoed into the page or a header")
	}
	if got := counterValue(t, edgeStats().clickIDsRejected) - before; got != 2 {
		t.Errorf("rejected click IDs counted %v, want 2", got)
	}
	s.page("https://shop.example.com/next")
	rec := s.visitor(res.cookie("_capi_vid").Value)
	if len(rec.Clicks) != 0 {
		t.Errorf("hostile click IDs were stored: %+v", rec.Clicks)
	}
}

func TestEdgeInjectsSnippetWithPageEventID(t *testing.T) {
	s := newTestSite(t, `{"collect":"/capi/collect"}`, nil)
	res := s.page("https://shop.example.com/")
	cfg := snippetOf(t, res.Body.String())
	if cfg == nil {
		t.Fatalf("no snippet injected:\n%s", res.Body.String())
	}
	eventID, _ := cfg["eventId"].(string)
	if !conversion.ValidEventID(eventID) || eventID != s.gotRepl["capi.event_id"] {
		t.Errorf("page event ID %q; want a valid ID equal to {capi.event_id} %q", eventID, s.gotRepl["capi.event_id"])
	}
	vid := res.cookie("_capi_vid").Value
	if cfg["externalId"] != sha256Hex(vid) {
		t.Errorf("externalId = %v, want the SHA-256 of the visitor ID", cfg["externalId"])
	}
	if cfg["collect"] != "/capi/collect" || cfg["meta"] == nil || cfg["tiktok"] == nil || cfg["google"] == nil {
		t.Errorf("snippet config %v; want every configured pixel and the collect path", cfg)
	}
	if res.Header().Get("Content-Length") != "" || res.Header().Get("ETag") != "" {
		t.Error("validators of the changed body were kept")
	}
	if !strings.HasPrefix(res.Body.String(), "<!doctype html><html><head>") || !strings.HasSuffix(res.Body.String(), "<title>Shop</title></head><body>hello</body></html>") {
		t.Errorf("the page around the snippet changed:\n%s", res.Body.String())
	}
	if s.got.Header.Get("Accept-Encoding") != "identity" {
		t.Error("the upstream was not asked for an identity body")
	}

	second := s.page("https://shop.example.com/")
	if id := snippetOf(t, second.Body.String())["eventId"]; id == eventID {
		t.Error("two page views got the same event ID")
	}
	if len(s.events()) != 0 {
		t.Errorf("browser-only page views were sent server-side: %+v", s.events())
	}
}

func TestEdgeLeavesAssetsAlone(t *testing.T) {
	s := newTestSite(t, `{}`, nil)
	s.upstream = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css")
		w.Header().Set("Content-Length", "9")
		io.WriteString(w, "body{x:1}")
	}
	res := s.do(http.MethodGet, "https://shop.example.com/app.css", nil, "Accept", "text/css", "Sec-Fetch-Dest", "style")
	if len(res.Header().Values("Set-Cookie")) != 0 {
		t.Errorf("an asset got cookies: %v", res.Header().Values("Set-Cookie"))
	}
	if res.Body.String() != "body{x:1}" || res.Header().Get("Content-Length") != "9" {
		t.Errorf("the asset changed: %q %v", res.Body.String(), res.Header())
	}
}

func TestEdgePageViewServerSendsTheInjectedPagesEventID(t *testing.T) {
	s := newTestSite(t, `{"page_view":"server"}`, nil)
	res := s.page("https://shop.example.com/landing?fbclid=IwAR1pv")
	eventID := snippetOf(t, res.Body.String())["eventId"]
	s.settle()
	sent := s.events()
	if len(sent) != 1 {
		t.Fatalf("enqueued %d events, want the one PageView", len(sent))
	}
	e := sent[0]
	if e.event.Name != "PageView" || e.event.ID != eventID || strings.Join(e.platforms, ",") != "meta,tiktok" || e.added != 2 {
		t.Errorf("PageView %s %s to %v (%d new); want ID %v to meta and tiktok", e.event.Name, e.event.ID, e.platforms, e.added, eventID)
	}
	if !strings.HasSuffix(e.event.User.FBC, ".IwAR1pv") || e.event.User.IP != testClientIP {
		t.Errorf("PageView user = %+v", e.event.User)
	}

	s.upstream = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "{}")
	}
	s.page("https://shop.example.com/api")
	s.settle()
	if len(s.events()) != 1 {
		t.Error("a response that was not injected sent a PageView")
	}
}

// thankYou is a site whose /thank-you page completes a Purchase.
const thankYou = `{"conversions":[{"event":"Purchase","path":"/thank-you","value":"{http.request.uri.query.total}",
	"currency":"USD","order_id":"{http.request.uri.query.order}","content_ids":"{http.request.uri.query.sku}"}]}`

func TestEdgeConversionFiresOncePerOrderWithTheBrowsersEventID(t *testing.T) {
	s := newTestSite(t, thankYou, nil)
	s.page("https://shop.example.com/?fbclid=IwAR1conv&gclid=Cj0conv&ttclid=ttconv")
	res := s.page("https://shop.example.com/thank-you?order=1001&total=49.90&sku=SKU-1,SKU-2")
	if res.err != nil {
		t.Fatal(res.err)
	}
	wantID := conversion.EventID(installKey(t, s.app.storage), "Purchase", "1001")
	sent := s.events()
	if len(sent) != 1 {
		t.Fatalf("enqueued %d times, want once", len(sent))
	}
	e := sent[0]
	if e.event.ID != wantID || strings.Join(e.platforms, ",") != "meta,tiktok,google" || e.added != 3 {
		t.Fatalf("Purchase %s to %v (%d new); want %s to meta, tiktok and google", e.event.ID, e.platforms, e.added, wantID)
	}
	if e.event.Value != "49.90" || e.event.Currency != "USD" || e.event.OrderID != "1001" || strings.Join(e.event.ContentIDs, ",") != "SKU-1,SKU-2" {
		t.Errorf("Purchase data = %+v", e.event)
	}
	u := e.event.User
	if u.GCLID != "Cj0conv" || u.TTCLID != "ttconv" || !strings.HasSuffix(u.FBC, ".IwAR1conv") || u.FBP == "" || u.IP != testClientIP ||
		u.UserAgent != testUserAgent || u.ExternalID != sha256Hex(s.jar["_capi_vid"]) {
		t.Errorf("the event lacks the visitor's profile: %+v", u)
	}
	if s.gotRepl["capi.event_id"] != wantID {
		t.Errorf("{capi.event_id} = %q, want the conversion's %s", s.gotRepl["capi.event_id"], wantID)
	}

	cfg := snippetOf(t, res.Body.String())
	convs, _ := cfg["conversions"].([]any)
	if len(convs) != 1 {
		t.Fatalf("the page fires %d conversions, want the Purchase: %v", len(convs), cfg)
	}
	c := convs[0].(map[string]any)
	data := c["data"].(map[string]any)
	if c["name"] != "Purchase" || c["eventId"] != wantID || data["order_id"] != "1001" || data["currency"] != "USD" {
		t.Errorf("browser copy = %v; want Purchase with the server's event ID %s", c, wantID)
	}
	if len(res.Header().Values("Set-Cookie")) == 0 || res.cookie(carriedCookie) != nil && res.cookie(carriedCookie).MaxAge >= 0 {
		t.Errorf("an HTML conversion page left the carrying cookie set: %v", res.Header().Values("Set-Cookie"))
	}

	reload := s.page("https://shop.example.com/thank-you?order=1001&total=49.90&sku=SKU-1,SKU-2")
	if n := len(s.events()); n != 1 {
		t.Errorf("a reload enqueued again: %d enqueues", n)
	}
	if convs := snippetOf(t, reload.Body.String())["conversions"]; convs != nil {
		t.Errorf("a reload fired the browser copy again: %v", convs)
	}
	// The queue's own dedup refuses the order's event too, whatever the store remembers.
	if n, err := s.app.storage.queue.Enqueue(context.Background(), "meta", e.event); err != nil || n != 0 {
		t.Errorf("the queue took a second copy of the order: %d, %v", n, err)
	}

	other := s.page("https://shop.example.com/thank-you?order=1002&total=5")
	if len(s.events()) != 2 || snippetOf(t, other.Body.String())["conversions"] == nil {
		t.Error("a second order did not fire")
	}
}

func TestEdgeConversionWaitsForTheAppToStart(t *testing.T) {
	s := newUnstartedTestSite(t, thankYou, nil)
	done := make(chan response)
	go func() { done <- s.page("https://shop.example.com/thank-you?order=early&total=1&gclid=Cj0early") }() // a gclid: Google takes it too
	time.Sleep(200 * time.Millisecond)                                                                      // the http app serving before the capi app has started
	if err := s.app.Start(); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil || len(s.events()) != 1 || s.events()[0].added != 3 {
		t.Fatalf("the conversion of a request served before Start was lost: %v %+v", res.err, s.events())
	}
}

func TestEdgeConversionNeedsASuccessfulAnswer(t *testing.T) {
	s := newTestSite(t, thankYou, nil)
	s.upstream = func(w http.ResponseWriter, r *http.Request) { http.Error(w, "gone", http.StatusNotFound) }
	s.page("https://shop.example.com/thank-you?order=7")
	s.upstream = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "<html><head></head></html>")
	}
	if len(s.events()) != 0 {
		t.Fatal("a 404 fired the conversion")
	}
	s.page("https://shop.example.com/thank-you?order=7")
	if len(s.events()) != 1 {
		t.Fatal("the order was marked counted by the failed request")
	}
}

func TestEdgeRedirectConversionFiresOnTheNextPage(t *testing.T) {
	s := newTestSite(t, `{"conversions":[{"event":"Lead","path":"/signup","method":"POST","value":"10","currency":"EUR","order_id":"{http.request.uri.query.ref}"}]}`, nil)
	s.page("https://shop.example.com/")
	s.upstream = func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/welcome", http.StatusSeeOther)
	}
	res := s.do(http.MethodPost, "https://shop.example.com/signup?ref=L-42", strings.NewReader("a=b"),
		"Content-Type", "application/x-www-form-urlencoded", "Accept", "text/html", "Sec-Fetch-Dest", "document")
	if res.Code != http.StatusSeeOther {
		t.Fatalf("status %d", res.Code)
	}
	carried := res.cookie(carriedCookie)
	wantID := conversion.EventID(installKey(t, s.app.storage), "Lead", "L-42")
	if carried == nil || carried.MaxAge <= 0 || carried.MaxAge > 600 || !carried.HttpOnly {
		t.Fatalf("the redirect did not carry the conversion in a short-lived cookie: %v", res.Header().Values("Set-Cookie"))
	}
	if got := parseCarried(carried.Value, func(n string) bool { return n == "Lead" }); len(got) != 1 || got[0].EventID != wantID {
		t.Fatalf("carried %+v, want Lead %s", got, wantID)
	}
	if sent := s.events(); len(sent) != 1 || sent[0].event.ID != wantID || strings.Join(sent[0].platforms, ",") != "meta,tiktok" {
		t.Fatalf("server copy %+v; want Lead %s to meta and tiktok (Google has no Lead action)", sent, wantID)
	}

	s.upstream = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<html><head></head><body>welcome</body></html>")
	}
	next := s.page("https://shop.example.com/welcome")
	convs, _ := snippetOf(t, next.Body.String())["conversions"].([]any)
	if len(convs) != 1 || convs[0].(map[string]any)["eventId"] != wantID || convs[0].(map[string]any)["name"] != "Lead" {
		t.Fatalf("the next page fires %v; want the carried Lead %s", convs, wantID)
	}
	if c := next.cookie(carriedCookie); c == nil || c.MaxAge >= 0 {
		t.Errorf("the page that fired the conversion did not clear the cookie: %v", next.Header().Values("Set-Cookie"))
	}
	after := s.page("https://shop.example.com/welcome")
	if snippetOf(t, after.Body.String())["conversions"] != nil {
		t.Error("the carried conversion fired twice")
	}
}

func TestEdgeCaptureMergesHashedFieldsAndPassesTheBodyThrough(t *testing.T) {
	s := newTestSite(t, `{"capture":["/checkout"]}`, nil)
	s.page("https://shop.example.com/")
	vid := s.jar["_capi_vid"]
	form := "checkout%5Bemail%5D=Jane.Doe%40Example.com&checkout%5Bphone%5D=%2B1+650+555+0123&first_name=Jane&last_name=Doe" +
		"&billing_address%5Bzip%5D=94025&billing_address%5Bcity%5D=Menlo+Park&state=CA&country=US&x=%00%ff"
	res := s.do(http.MethodPost, "https://shop.example.com/checkout", strings.NewReader(form),
		"Content-Type", "application/x-www-form-urlencoded", "Accept", "text/html", "Sec-Fetch-Dest", "document")
	if res.err != nil {
		t.Fatal(res.err)
	}
	if string(s.gotBody) != form || s.got.ContentLength != int64(len(form)) {
		t.Fatalf("the upstream got %q (length %d); want the body byte for byte", s.gotBody, s.got.ContentLength)
	}
	rec := s.visitor(vid)
	if got := rec.User.Meta.Emails; len(got) != 1 || got[0] != sha256Hex("jane.doe@example.com") {
		t.Errorf("Meta emails = %v, want the hash of the normalized address", got)
	}
	if rec.User.Meta.FirstName != sha256Hex("jane") || rec.User.Meta.Zip != sha256Hex("94025") || len(rec.User.Meta.Phones) != 1 {
		t.Errorf("Meta profile = %+v", rec.User.Meta)
	}
	raw, _ := json.Marshal(rec)
	for _, plain := range []string{"Jane", "jane.doe", "6505550123"} {
		if strings.Contains(string(raw), plain) {
			t.Errorf("plaintext %q reached the visitor record", plain)
		}
	}

	before := counterValue(t, edgeStats().captures.WithLabelValues("oversized"))
	big := "email=big%40example.com&pad=" + strings.Repeat("x", defaultCaptureLimit)
	s.do(http.MethodPost, "https://shop.example.com/checkout", strings.NewReader(big), "Content-Type", "application/x-www-form-urlencoded")
	if string(s.gotBody) != big {
		t.Fatal("an oversized body did not reach the upstream intact")
	}
	if counterValue(t, edgeStats().captures.WithLabelValues("oversized"))-before != 1 {
		t.Error("the oversized body was not counted")
	}
	if got := s.visitor(vid).User.Meta.Emails; len(got) != 1 || got[0] != sha256Hex("jane.doe@example.com") {
		t.Errorf("an oversized body was captured: %v", got)
	}
}

func TestEdgeCaptureBodyUnchangedWhenUnknownOrChunked(t *testing.T) {
	s := newTestSite(t, `{"capture":["/api/*"]}`, nil)
	body := `{"customer":{"email":"a@b.co"},"items":[1,2,3]}`
	r := strings.NewReader(body)
	res := s.do(http.MethodPost, "https://shop.example.com/api/cart", io.NopCloser(r), "Content-Type", "application/json")
	if res.err != nil || string(s.gotBody) != body {
		t.Fatalf("upstream body %q, err %v", s.gotBody, res.err)
	}
	rec := s.visitor(res.cookie("_capi_vid").Value)
	if len(rec.User.Meta.Emails) != 1 {
		t.Errorf("JSON email not captured: %+v", rec.User.Meta)
	}
	bin := "\x00\x01binary"
	s.do(http.MethodPost, "https://shop.example.com/api/upload", strings.NewReader(bin), "Content-Type", "application/octet-stream")
	if string(s.gotBody) != bin {
		t.Errorf("an unsupported body changed: %q", s.gotBody)
	}
}

func TestEdgeCollect(t *testing.T) {
	s := newTestSite(t, `{"collect":"/capi/collect","conversions":[{"event":"Subscribed","path":"/sub"}]}`, nil)
	s.page("https://shop.example.com/")
	good := `{"name":"AddToCart","event_id":"0123456789abcdef0123456789abcdef","data":{"value":19.9,"currency":"usd","content_ids":["SKU-1",7]},"url":"https://shop.example.com/p/1","referrer":"https://www.google.com/"}`
	post := s.collect
	tests := []struct {
		name    string
		method  string
		body    string
		headers []string
		status  int
	}{
		{"cross-site fetch", "", good, []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"foreign origin", "", good, []string{"Sec-Fetch-Site", "", "Origin", "https://evil.example"}, http.StatusForbidden},
		{"no origin at all", "", good, []string{"Sec-Fetch-Site", ""}, http.StatusForbidden},
		{"GET", http.MethodGet, "", nil, http.StatusMethodNotAllowed},
		{"form body", "", good, []string{"Content-Type", "application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType},
		{"oversized", "", `{"name":"Lead","pad":"` + strings.Repeat("x", maxCollectBody) + `"}`, nil, http.StatusRequestEntityTooLarge},
		{"not JSON", "", `name=Lead`, nil, http.StatusBadRequest},
		{"unknown name", "", `{"name":"Hack","event_id":"0123456789abcdef"}`, nil, http.StatusUnprocessableEntity},
		{"PageView from the browser", "", `{"name":"PageView","event_id":"0123456789abcdef"}`, nil, http.StatusUnprocessableEntity},
		{"bad event ID", "", `{"name":"Lead","event_id":"x'><script>"}`, nil, http.StatusUnprocessableEntity},
		{"short event ID", "", `{"name":"Lead","event_id":"1"}`, nil, http.StatusUnprocessableEntity},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var res response
			if tc.method == http.MethodGet {
				res = s.do(http.MethodGet, "https://shop.example.com/capi/collect", nil, "Sec-Fetch-Site", "same-origin")
			} else {
				res = post(tc.body, tc.headers...)
			}
			if res.err != nil || res.Code != tc.status || !strings.Contains(res.Body.String(), `"error":`) {
				t.Fatalf("got %d %q, %v; want status %d with a JSON message", res.Code, res.Body.String(), res.err, tc.status)
			}
			if s.got != nil {
				t.Error("the refused post reached the upstream")
			}
		})
	}
	if len(s.events()) != 0 {
		t.Fatalf("refused posts were enqueued: %+v", s.events())
	}

	res := post(good)
	if res.err != nil || res.Code != http.StatusNoContent {
		t.Fatalf("valid post: %d %v", res.Code, res.err)
	}
	sent := s.events()
	if len(sent) != 1 {
		t.Fatalf("enqueued %d, want 1", len(sent))
	}
	e := sent[0].event
	if e.Name != "AddToCart" || e.ID != "0123456789abcdef0123456789abcdef" || e.Value != "19.9" || e.Currency != "USD" ||
		strings.Join(e.ContentIDs, ",") != "SKU-1,7" || e.SourceURL != "https://shop.example.com/p/1" || e.User.IP != testClientIP {
		t.Errorf("collected event = %+v", e)
	}
	if strings.Join(sent[0].platforms, ",") != "meta,tiktok" {
		t.Errorf("platforms %v", sent[0].platforms)
	}
	if res := post(`{"name":"Subscribed","event_id":"abcdefgh12345678"}`); res.err != nil {
		t.Errorf("a configured conversion name was refused: %v", res.err)
	}
}

func TestEdgeCollectRateLimitsAVisitor(t *testing.T) {
	s := newTestSite(t, `{"collect":"/capi/collect"}`, nil)
	s.page("https://shop.example.com/")
	var limited int
	for i := range collectPerMinute + 5 {
		body := `{"name":"ViewContent","event_id":"` + strings.Repeat("a", 10) + itoa(i) + `"}`
		res := s.collect(body)
		if res.err != nil {
			t.Fatalf("post %d: %v", i, res.err)
		}
		if res.Code == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited != 5 {
		t.Fatalf("%d posts limited, want the 5 beyond %d a minute", limited, collectPerMinute)
	}
}

// A visitor cookie is the client's to choose: rotating forged ones must not lift the limit. Each
// post below carries a new well-formed visitor ID from the same address.
func TestEdgeCollectRateLimitsAnAddressWhateverItsCookies(t *testing.T) {
	s := newTestSite(t, `{"collect":"/capi/collect"}`, nil)
	clock := time.Now() // stopped, so that no token comes back during the test
	s.h.edge.now = func() time.Time { return clock }
	var limited int
	for i := range collectPerAddressMinute + 7 {
		s.jar["_capi_vid"] = fmt.Sprintf("forged%018d", i)
		body := `{"name":"ViewContent","event_id":"` + strings.Repeat("b", 10) + itoa(i) + `"}`
		res := s.collect(body)
		if res.err != nil {
			t.Fatalf("post %d: %v", i, res.err)
		}
		switch res.Code {
		case http.StatusTooManyRequests:
			limited++
			if !strings.Contains(res.Body.String(), "address") {
				t.Fatalf("post %d: %s; want the address limit named", i, res.Body)
			}
		case http.StatusNoContent, http.StatusOK, http.StatusAccepted:
		default:
			t.Fatalf("post %d: status %d %s", i, res.Code, res.Body)
		}
	}
	if limited != 7 {
		t.Fatalf("%d posts limited, want the 7 beyond %d a minute from one address", limited, collectPerAddressMinute)
	}
}

// Without consent on an opt-in site, a post to the collect path is the handler's to refuse: the
// upstream has no such path, and nothing is recorded.
func TestEdgeCollectWithoutConsentIsRefusedHere(t *testing.T) {
	s := newTestSite(t, `{"collect":"/capi/collect","consent":{"require":{"cookie":"cookie_consent","pattern":"^all$"}}}`, nil)
	res := s.collect(`{"name":"ViewContent","event_id":"abcdefgh12345678"}`)
	if res.err != nil {
		t.Fatal(res.err)
	}
	if res.Code != http.StatusForbidden || !strings.Contains(res.Body.String(), `"code":"no_consent"`) {
		t.Fatalf("status %d %s; want 403 no_consent", res.Code, res.Body)
	}
	if s.got != nil || len(s.events()) != 0 || len(res.Header().Values("Set-Cookie")) != 0 {
		t.Fatalf("upstream reached %v, events %d, cookies %v", s.got != nil, len(s.events()), res.Header().Values("Set-Cookie"))
	}
}

func TestEdgeConsentGatesTracking(t *testing.T) {
	site := `{"consent":{"require":{"cookie":"cookie_consent","pattern":"^(all|marketing)$"}},"conversions":[{"event":"Purchase","path":"/thank-you","order_id":"{http.request.uri.query.order}"}]}`
	s := newTestSite(t, site, nil)
	page := "<!doctype html><html><head><title>Shop</title></head><body>hello</body></html>"
	res := s.page("https://shop.example.com/thank-you?order=9&fbclid=IwAR1x")
	if len(res.Header().Values("Set-Cookie")) != 0 || res.Body.String() != page || len(s.events()) != 0 {
		t.Fatalf("without consent: cookies %v, body changed %v, events %d", res.Header().Values("Set-Cookie"), res.Body.String() != page, len(s.events()))
	}
	if s.got.Header.Get("Accept-Encoding") == "identity" {
		t.Error("without consent the request was changed")
	}
	s.jar["cookie_consent"] = "necessary"
	if res := s.page("https://shop.example.com/"); res.cookie("_capi_vid") != nil {
		t.Fatal("a consent cookie that does not match let tracking in")
	}
	s.jar["cookie_consent"] = "marketing"
	res = s.page("https://shop.example.com/thank-you?order=9")
	if res.cookie("_capi_vid") == nil || snippetOf(t, res.Body.String()) == nil || len(s.events()) != 1 {
		t.Fatal("with consent the page was not tracked")
	}
}

func TestEdgeGlobalPrivacyControlLimitsDataUse(t *testing.T) {
	s := newTestSite(t, thankYou, nil)
	res := s.do(http.MethodGet, "https://shop.example.com/thank-you?order=5", nil, "Accept", "text/html", "Sec-GPC", "1")
	if snippetOf(t, res.Body.String())["ldu"] != true {
		t.Error("the pixels were not told to limit data use")
	}
	if sent := s.events(); len(sent) != 1 || !sent[0].event.Consent.LimitedDataUse || !sent[0].event.Consent.AdUserDataDenied {
		t.Errorf("the event's consent = %+v", sent)
	}
	// Recorded for the orders that come back later by postback; a later visit without GPC clears it.
	vid := s.jar["_capi_vid"]
	if rec := s.visitor(vid); !rec.Consent.LimitedDataUse || !rec.Consent.AdUserDataDenied {
		t.Errorf("the visitor record's consent = %+v", rec.Consent)
	}
	s.do(http.MethodGet, "https://shop.example.com/", nil, "Accept", "text/html")
	if rec := s.visitor(vid); rec.Consent != (event.Consent{}) {
		t.Errorf("after a visit without GPC the record's consent = %+v", rec.Consent)
	}

	off := newTestSite(t, `{"consent":{"gpc":false}}`, nil)
	res = off.do(http.MethodGet, "https://shop.example.com/", nil, "Accept", "text/html", "Sec-GPC", "1")
	if snippetOf(t, res.Body.String())["ldu"] == true {
		t.Error("gpc off still limited data use")
	}
}

func TestEdgeLinkRedirectsWithPlaceholders(t *testing.T) {
	s := newTestSite(t, `{"links":[{"path":"/go/offer","target":"https://vendor.example/buy?tid={capi.visitor_id}&c={capi.gclid}&h={http.request.header.X-Note}"}]}`, nil)
	res := s.do(http.MethodGet, "https://shop.example.com/go/offer?gclid=Cj0link", nil, "X-Note", "a&b=c d")
	if res.err != nil || res.Code != http.StatusFound {
		t.Fatalf("status %d, %v", res.Code, res.err)
	}
	vid := res.cookie("_capi_vid")
	if vid == nil {
		t.Fatal("the redirect did not set the visitor cookie")
	}
	want := "https://vendor.example/buy?tid=" + vid.Value + "&c=Cj0link&h=a%26b%3Dc+d"
	if got := res.Header().Get("Location"); got != want {
		t.Fatalf("Location = %s\nwant       %s", got, want)
	}
	if res.Header().Get("Cache-Control") != "no-store" || s.got != nil {
		t.Error("the redirect was cacheable or went upstream")
	}
	// A visitor known only through the link has a page of the site to join a postback to.
	if rec := s.visitor(vid.Value); rec.LastPageURL != "https://shop.example.com/go/offer?gclid=Cj0link" || rec.Clicks[store.ClickGCLID].Value != "Cj0link" {
		t.Errorf("the link recorded page %q and gclid %q", rec.LastPageURL, rec.Clicks[store.ClickGCLID].Value)
	}
}

func TestEdgeLeavesPostbackRoutesToTheirReceivers(t *testing.T) {
	s := newTestSite(t, `{"postbacks":[{"source":"generic","path":"/capi/pb","token":"0123456789abcdef"}],
		"conversions":[{"event":"Purchase","path":"/capi/*"}]}`, nil)
	res := s.do(http.MethodPost, "https://shop.example.com/capi/pb?gclid=Cj0pb", strings.NewReader("a=1"), "Accept", "text/html")
	if len(res.Header().Values("Set-Cookie")) != 0 {
		t.Errorf("the edge set cookies on a postback route: %v", res.Header().Values("Set-Cookie"))
	}
	if len(s.events()) != 0 || snippetOf(t, res.Body.String()) != nil {
		t.Error("the edge fired a conversion or injected tags on a postback route")
	}
}

func TestEdgeWritesTheVisitorOnlyWhenSomethingChanged(t *testing.T) {
	s := newTestSite(t, `{}`, nil)
	s.page("https://shop.example.com/?fbclid=IwAR1")
	vid := s.jar["_capi_vid"]
	first := s.visitor(vid)
	s.do(http.MethodGet, "https://shop.example.com/", nil, "Accept", "text/html")
	if got := s.visitor(vid); !got.Updated.Equal(first.Updated) {
		t.Fatal("an unchanged visit rewrote the visitor record")
	}
	s.page("https://shop.example.com/?gclid=Cj0new")
	if got := s.visitor(vid); got.Updated.Equal(first.Updated) || got.Clicks[store.ClickGCLID].Value != "Cj0new" {
		t.Fatal("a new click ID was not written")
	}
}

// A cookie-less first page without click IDs, cart or conversion leaves no record (a crawler's
// request would otherwise add one every time); the visitor's next request, with the cookies, does.
// A first page from an ad click, and a tracking link, are recorded at once.
func TestEdgeRecordsAFirstVisitOnlyWithSignals(t *testing.T) {
	s := newTestSite(t, `{"links":[{"path":"/go/offer","target":"https://vendor.example.net/?tid={capi.visitor_id}"}]}`, nil)
	res := s.page("https://shop.example.com/")
	vid := res.cookie("_capi_vid").Value
	s.settle()
	if _, found, _ := s.app.storage.visitors.Get(context.Background(), vid); found {
		t.Fatal("a cookie-less first page without signals was recorded")
	}
	s.page("https://shop.example.com/product")
	if rec := s.visitor(vid); rec.User.FBP != s.jar["_fbp"] || rec.LastPageURL != "https://shop.example.com/product" {
		t.Fatalf("the second page did not record the visitor: %+v", rec)
	}

	s.jar = map[string]string{}
	res = s.page("https://shop.example.com/?gclid=Cj0ad")
	if rec := s.visitor(res.cookie("_capi_vid").Value); rec.Clicks[store.ClickGCLID].Value != "Cj0ad" {
		t.Fatalf("a first page from an ad click was not recorded: %+v", rec.Clicks)
	}

	s.jar = map[string]string{}
	res = s.do(http.MethodGet, "https://shop.example.com/go/offer", nil)
	if res.Code != http.StatusFound {
		t.Fatalf("link answered %d", res.Code)
	}
	s.visitor(res.cookie("_capi_vid").Value)
}

// asHandlerError is errors.As for caddyhttp.HandlerError, which is a value type.
func asHandlerError(err error, target *caddyhttp.HandlerError) bool {
	he, ok := err.(caddyhttp.HandlerError)
	if ok {
		*target = he
	}
	return ok
}

// counterValue reads the current value of a counter.
func counterValue(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// FuzzEdgeNavigation sends navigations with arbitrary queries and Cookie headers through a
// provisioned site: nothing panics, every cookie the edge sets is well formed, the page is the
// upstream's page with exactly one snippet inserted, and the placeholders hold only valid values.
func FuzzEdgeNavigation(f *testing.F) {
	s := newTestSite(f, thankYou, nil)
	const upstreamPage = "<!doctype html><html><head><title>Shop</title></head><body>hello</body></html>"
	f.Add("fbclid=IwAR1&gclid=Cj0&ttclid=E.C.P", "_capi_vid=abcdefghijklmnopqrstuvwx; _fbp=fb.1.1700000000000.123")
	f.Add("fbclid=%22%3E%3Cscript%3E", `_fbc="fb.1.1.x"; _capi_evt=Purchase|0123456789abcdef|1|USD|o`)
	f.Add("order=1%00&total=-1", "_capi_evt=%ZZ!|||||; _ttp=<x>")
	f.Fuzz(func(t *testing.T, query, cookie string) {
		if strings.ContainsAny(cookie, "\r\n\x00") {
			return
		}
		s.t = t
		s.jar = map[string]string{}
		path := "/"
		if strings.HasPrefix(query, "order=") {
			path = "/thank-you"
		}
		res := s.do(http.MethodGet, "https://shop.example.com"+path+"?"+url.PathEscape(query), nil,
			"Accept", "text/html", "Cookie", cookie)
		if res.err != nil {
			t.Fatal(res.err)
		}
		for _, line := range res.Header().Values("Set-Cookie") {
			c, err := http.ParseSetCookie(line)
			if err != nil || strings.ContainsAny(c.Value, "<>\"'; ,\\") {
				t.Fatalf("malformed Set-Cookie %q: %v", line, err)
			}
		}
		body := res.Body.String()
		start, end := strings.Index(body, "<script"), strings.LastIndex(body, "</script>")
		if start < 0 || end < start || body[:start]+body[end+len("</script>"):] != upstreamPage {
			t.Fatalf("the page is not the upstream's plus one snippet:\n%s", body)
		}
		for k, v := range s.gotRepl {
			ok := identity.ValidClickID(v)
			switch k {
			case "capi.visitor_id":
				ok = identity.ValidVisitorID(v)
			case "capi.event_id":
				ok = conversion.ValidEventID(v)
			}
			if !ok {
				t.Fatalf("%s = %q", k, v)
			}
		}
	})
}

func TestEdgeSnippetFollowsTheResponsesCSP(t *testing.T) {
	s := newTestSite(t, `{}`, nil)
	s.upstream = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Security-Policy", "script-src 'self' 'nonce-Q2FkZHlDYXBp'; connect-src 'self'")
		io.WriteString(w, "<html><head></head><body></body></html>")
	}
	res := s.page("https://shop.example.com/")
	if !strings.Contains(res.Body.String(), `<script nonce="Q2FkZHlDYXBp">`) {
		t.Errorf("the snippet does not reuse the page's nonce:\n%s", res.Body.String())
	}
	csp := res.Header().Get("Content-Security-Policy")
	for _, host := range []string{"https://connect.facebook.net", "https://analytics.tiktok.com", "https://www.googletagmanager.com"} {
		if !strings.Contains(csp, host) {
			t.Errorf("CSP %q does not allow %s", csp, host)
		}
	}
}

func TestEdgeConversionsOfFetchesRideToTheNextPage(t *testing.T) {
	s := newTestSite(t, `{"conversions":[{"event":"AddToCart","path":"/cart/add","method":"POST","value":"{http.request.uri.query.price}","currency":"USD"},
		{"event":"InitiateCheckout","path":"/checkout","method":"POST"}]}`, nil)
	s.page("https://shop.example.com/")
	s.upstream = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	}
	res := s.do(http.MethodPost, "https://shop.example.com/cart/add?price=12.5", strings.NewReader("{}"),
		"Content-Type", "application/json", "Sec-Fetch-Dest", "empty")
	if res.Body.String() != `{"ok":true}` || res.cookie(carriedCookie) == nil {
		t.Fatalf("the JSON answer changed or carries no conversion: %q %v", res.Body.String(), res.Header().Values("Set-Cookie"))
	}
	s.upstream = func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/pay", http.StatusSeeOther) }
	s.do(http.MethodPost, "https://shop.example.com/checkout", strings.NewReader("a=1"),
		"Content-Type", "application/x-www-form-urlencoded", "Accept", "text/html", "Sec-Fetch-Dest", "document")
	s.upstream = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<html><head></head><body>pay</body></html>")
	}
	page := s.page("https://shop.example.com/pay")
	convs, _ := snippetOf(t, page.Body.String())["conversions"].([]any)
	sent := s.events()
	if len(convs) != 2 || len(sent) != 2 {
		t.Fatalf("the page fires %v after %d server events; want both conversions", convs, len(sent))
	}
	for i, c := range convs {
		m := c.(map[string]any)
		if m["name"] != sent[i].event.Name || m["eventId"] != sent[i].event.ID {
			t.Errorf("browser copy %v, server copy %s %s", m, sent[i].event.Name, sent[i].event.ID)
		}
	}
	if d := convs[0].(map[string]any)["data"].(map[string]any); d["value"] != 12.5 || d["currency"] != "USD" {
		t.Errorf("the carried AddToCart lost its value: %v", d)
	}
}

func TestEdgeRecordsTheShopifyCartToken(t *testing.T) {
	s := newTestSite(t, `{}`, nil)
	s.jar["cart"] = "Z2NwLXVzLWVhc3QxOjAxSjk4%3Fkey%3Dabc123"
	res := s.page("https://shop.example.com/")
	rec := s.visitor(res.cookie("_capi_vid").Value)
	if len(rec.CartTokens) != 1 || rec.CartTokens[0] != "Z2NwLXVzLWVhc3QxOjAxSjk4" {
		t.Fatalf("cart tokens = %q; want the token without its key", rec.CartTokens)
	}
	found, ok, err := s.app.storage.visitors.FindByCartToken(context.Background(), "Z2NwLXVzLWVhc3QxOjAxSjk4")
	if err != nil || !ok || found.ID != rec.ID {
		t.Fatalf("the visitor is not findable by its cart token: %v %v", ok, err)
	}
}
