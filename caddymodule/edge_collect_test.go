package caddymodule

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-capi/caddy-capi/capi/conversion"
)

func TestSameOrigin(t *testing.T) {
	tests := []struct {
		name         string
		site, origin string
		want         bool
	}{
		{"same-origin fetch", "same-origin", "", true},
		{"same-site subdomain", "same-site", "https://shop.example.com", false},
		{"cross-site", "cross-site", "https://shop.example.com", false},
		{"typed URL", "none", "", false},
		{"origin of this host", "", "https://shop.example.com", true},
		{"origin with another port", "", "https://shop.example.com:8443", false},
		{"origin in another case", "", "https://SHOP.example.com", true},
		{"foreign origin", "", "https://shop.example.com.evil.example", false},
		{"opaque origin", "", "null", false},
		{"origin with a path", "", "https://shop.example.com/x", false},
		{"neither header", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "https://shop.example.com/capi/collect", nil)
			if tc.site != "" {
				r.Header.Set("Sec-Fetch-Site", tc.site)
			}
			if tc.origin != "" {
				r.Header.Set("Origin", tc.origin)
			}
			if got := sameOrigin(r); got != tc.want {
				t.Fatalf("sameOrigin = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestEdgeCollectCannotPreemptARealPurchase is the attack the event ID key closes: someone guesses
// the shop's next order number and posts its Purchase to collect first, with every event ID they
// could compute without the installation's key. Each post is accepted as the browser event it
// claims to be, and still the real thank-you page for that order is enqueued as new on every
// platform, under an ID none of the posts used: the queue's dedup (and the platforms') drops
// nothing real.
func TestEdgeCollectCannotPreemptARealPurchase(t *testing.T) {
	site := strings.Replace(thankYou, "{", `{"collect":"/capi/collect",`, 1)
	s := newTestSite(t, site, nil)
	const order = "1001"
	unkeyedV1 := sha256.Sum256([]byte("capi-event-v1\x00Purchase\x00" + order))
	zeroKey := hmac.New(sha256.New, make([]byte, conversion.IDKeySize))
	zeroKey.Write([]byte("capi-event-v2\x00Purchase\x00" + order))
	var guessed conversion.IDKey
	copy(guessed[:], "shop.example.com")
	forged := map[string]string{
		"the unkeyed scheme":  hex.EncodeToString(unkeyedV1[:16]),
		"HMAC under zero key": hex.EncodeToString(zeroKey.Sum(nil)[:16]),
		"a guessed key":       conversion.EventID(guessed, "Purchase", order),
		"the order number":    "order-" + order,
	}

	s.page("https://shop.example.com/")
	for what, id := range forged {
		body := fmt.Sprintf(`{"name":"Purchase","event_id":%q,"data":{"value":"1","currency":"USD","order_id":%q}}`, id, order)
		res := s.collect(body)
		if res.err != nil || res.Code != http.StatusNoContent {
			t.Fatalf("post with %s: %d %v", what, res.Code, res.err)
		}
	}
	if n := len(s.events()); n != len(forged) {
		t.Fatalf("enqueued %d forged Purchases, want %d", n, len(forged))
	}

	s.jar = map[string]string{}                                          // the buyer's own browser
	s.page("https://shop.example.com/?fbclid=IwAR1buyer&gclid=Cj0buyer") // a Google click too, so Google takes the Purchase
	if res := s.page("https://shop.example.com/thank-you?order=" + order + "&total=49.90&sku=SKU-1"); res.err != nil {
		t.Fatal(res.err)
	}
	sent := s.events()
	if len(sent) != len(forged)+1 {
		t.Fatalf("the real Purchase was not enqueued: %d events", len(sent))
	}
	real := sent[len(sent)-1]
	if real.event.Name != "Purchase" || real.event.OrderID != order || real.added != 3 {
		t.Fatalf("the real Purchase was enqueued as new on %d of 3 platforms: %+v", real.added, real.event)
	}
	if want := conversion.EventID(installKey(t, s.app.storage), "Purchase", order); real.event.ID != want {
		t.Errorf("real Purchase ID %s, want the keyed derivation %s", real.event.ID, want)
	}
	for what, id := range forged {
		if real.event.ID == id {
			t.Errorf("the ID from %s is the real Purchase's", what)
		}
	}
}

func TestVisitorLimiterRefillsOverAMinute(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newVisitorLimiter(30, 2, func() time.Time { return now })
	for i := range 30 {
		if !l.allow("a") {
			t.Fatalf("post %d refused within the allowance", i)
		}
	}
	if l.allow("a") {
		t.Fatal("the 31st post in a minute was allowed")
	}
	if !l.allow("b") {
		t.Fatal("one visitor's limit held back another")
	}
	now = now.Add(2 * time.Second)
	if !l.allow("a") || l.allow("a") {
		t.Fatal("two seconds should refill exactly one post")
	}
	if l.allow("c") {
		t.Fatal("a third key was admitted past maxKeys")
	}
	now = now.Add(2 * time.Minute)
	if !l.allow("c") {
		t.Fatal("full buckets were not pruned after a minute")
	}
}

// FuzzReadCollect: any body and headers a browser or an attacker posts either are refused with a
// caddyhttp.Error that answerCollect turns into a JSON answer, or yield a known name and a valid event ID; nothing panics.
func FuzzReadCollect(f *testing.F) {
	f.Add(`{"name":"Lead","event_id":"0123456789abcdef","data":{"value":"9.5","content_ids":[1,"a"]}}`, "application/json", "same-origin")
	f.Add(`{"name":"Lead","event_id":"0123456789abcdef","data":{"value":true}}`, "application/json", "same-origin")
	f.Add(`{"name":"Purchase","event_id":"x","data":null,"url":7}`, "application/json; charset=utf-8", "same-origin")
	f.Add("name=Lead", "text/plain", "cross-site")
	known := func(name string) bool { return name == "Lead" || name == "Purchase" }
	f.Fuzz(func(t *testing.T, body, contentType, site string) {
		r := httptest.NewRequest(http.MethodPost, "https://shop.example.com/capi/collect", strings.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		r.Header.Set("Sec-Fetch-Site", site)
		w := httptest.NewRecorder()
		ev, err := readCollect(w, r, known)
		if err != nil {
			var he caddyhttp.HandlerError
			if !asHandlerError(err, &he) || he.StatusCode < 400 || he.StatusCode > 499 {
				t.Fatalf("refusal %v is not a 4xx caddyhttp.Error", err)
			}
			var answer collectAnswer
			if answerCollect(w, err) != nil || w.Code != he.StatusCode || json.Unmarshal(w.Body.Bytes(), &answer) != nil || answer.Code == "" {
				t.Fatalf("refusal %v answered %d %q", err, w.Code, w.Body.String())
			}
			return
		}
		if !known(ev.Name) || !conversion.ValidEventID(ev.EventID) || len(body) > maxCollectBody {
			t.Fatalf("accepted %+v", ev)
		}
	})
}

// collectRefusalCase is one post the collect endpoint refuses, with the status and the JSON code
// its script is answered with.
type collectRefusalCase struct {
	name    string
	method  string
	body    string
	headers []string
	status  int
	code    string
}

func collectRefusalCases() []collectRefusalCase {
	good := `{"name":"Lead","event_id":"0123456789abcdef"}`
	return []collectRefusalCase{
		{"GET", http.MethodGet, "", nil, http.StatusMethodNotAllowed, "method"},
		{"cross-site fetch", "", good, []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden, "cross_origin"},
		{"no origin at all", "", good, []string{"Sec-Fetch-Site", ""}, http.StatusForbidden, "cross_origin"},
		{"form body", "", good, []string{"Content-Type", "application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType, "content_type"},
		{"oversized", "", `{"name":"Lead","pad":"` + strings.Repeat("x", maxCollectBody) + `"}`, nil, http.StatusRequestEntityTooLarge, "too_large"},
		{"not JSON", "", `name=Lead`, nil, http.StatusBadRequest, "bad_json"},
		{"unknown name", "", `{"name":"<script>","event_id":"0123456789abcdef"}`, nil, http.StatusUnprocessableEntity, "unknown_name"},
		{"bad event ID", "", `{"name":"Lead","event_id":"x'><script>"}`, nil, http.StatusUnprocessableEntity, "bad_event_id"},
	}
}

// checkCollectAnswer checks what a script reads of a refusal: the status, a JSON body with the
// outcome as code and a message, and headers that keep the answer out of caches and sniffers.
func checkCollectAnswer(t *testing.T, w *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if w.Code != status {
		t.Errorf("status %d, want %d", w.Code, status)
	}
	for name, want := range map[string]string{
		"Content-Type":           "application/json",
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
	} {
		if got := w.Header().Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	var body map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q is not a JSON object of strings: %v", w.Body.String(), err)
	}
	if len(body) != 2 || body["code"] != code || body["error"] == "" || strings.HasPrefix(body["error"], "capi collect") {
		t.Errorf("body %q, want {\"error\": <message>, \"code\": %q}", w.Body.String(), code)
	}
	if strings.ContainsAny(w.Body.String(), "<>") {
		t.Errorf("body %q carries raw markup characters", w.Body.String())
	}
}

// TestCollectRefusalsAreAnsweredAsJSON: each refusal reaches the posting script as its status and
// a JSON body {"error", "code"} with the outcome it is counted under in
// caddy_capi_collect_requests_total, without the site configuring handle_errors.
func TestCollectRefusalsAreAnsweredAsJSON(t *testing.T) {
	known := func(name string) bool { return name == "Lead" }
	for _, tc := range collectRefusalCases() {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			r := httptest.NewRequest(method, "https://shop.example.com/capi/collect", strings.NewReader(tc.body))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Sec-Fetch-Site", "same-origin")
			for i := 0; i+1 < len(tc.headers); i += 2 {
				r.Header.Set(tc.headers[i], tc.headers[i+1])
			}
			counted := edgeStats().collected.WithLabelValues(tc.code)
			before := counterValue(t, counted)
			w := httptest.NewRecorder()
			_, err := readCollect(w, r, known)
			if err == nil {
				t.Fatal("the post was accepted")
			}
			if err := answerCollect(w, err); err != nil {
				t.Fatalf("answerCollect left %v to Caddy", err)
			}
			checkCollectAnswer(t, w, tc.status, tc.code)
			if got := counterValue(t, counted) - before; got != 1 {
				t.Errorf("outcome %s counted %v times, want once", tc.code, got)
			}
			if tc.status == http.StatusMethodNotAllowed && w.Header().Get("Allow") != http.MethodPost {
				t.Errorf("Allow: %q, want POST", w.Header().Get("Allow"))
			}
		})
	}
}

// TestCollectAnswersRateLimitAndQueueFailuresAsJSON: the refusals decided after the body is read
// (the visitor's rate, an event the queue could not take) are answered the same way, with the
// outcome the metrics count them under.
func TestCollectAnswersRateLimitAndQueueFailuresAsJSON(t *testing.T) {
	s := newTestSite(t, `{"collect":"/capi/collect"}`, nil)
	s.page("https://shop.example.com/")
	var limited response
	for i := range collectPerMinute + 1 {
		body := `{"name":"ViewContent","event_id":"` + strings.Repeat("b", 10) + itoa(i) + `"}`
		limited = s.collect(body)
	}
	// What the handler does with serveCollect's error once handler.go answers collect through
	// answerCollect; until then the error is still returned, and answered here the same way.
	if err := answerCollect(limited.ResponseRecorder, limited.err); err != nil {
		t.Fatal(err)
	}
	checkCollectAnswer(t, limited.ResponseRecorder, http.StatusTooManyRequests, "rate_limited")
	if limited.Header().Get("Retry-After") != "60" {
		t.Errorf("Retry-After: %q, want 60", limited.Header().Get("Retry-After"))
	}

	for name, tc := range map[string]struct {
		err    error
		status int
		code   string
	}{
		"queue unavailable": {caddyhttp.Error(http.StatusServiceUnavailable, errors.New("capi collect: the event could not be queued; try again")), http.StatusServiceUnavailable, "failed"},
		"event not built":   {collectError(http.StatusUnprocessableEntity, "invalid", "conversion: bad event name"), http.StatusUnprocessableEntity, "invalid"},
		"any other error":   {errors.New("boom"), http.StatusInternalServerError, "failed"},
	} {
		t.Run(name, func(t *testing.T) {
			w := httptest.NewRecorder()
			if err := answerCollect(w, tc.err); err != nil {
				t.Fatal(err)
			}
			checkCollectAnswer(t, w, tc.status, tc.code)
			if strings.Contains(w.Body.String(), "boom") {
				t.Errorf("an internal error's text reached the browser: %s", w.Body.String())
			}
		})
	}
	if w := httptest.NewRecorder(); answerCollect(w, nil) != nil || w.Body.Len() != 0 || len(w.Header()) != 0 {
		t.Error("answerCollect wrote for an accepted post")
	}
}

// TestHandlerAnswersCollectRefusalsItself runs the refusals through ServeHTTP: the handler must
// answer them (no error left to Caddy, whose default answer is an empty body).
func TestHandlerAnswersCollectRefusalsItself(t *testing.T) {
	s := newTestSite(t, `{"collect":"/capi/collect"}`, nil)
	s.page("https://shop.example.com/")
	for _, tc := range collectRefusalCases() {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			h := append([]string{"Content-Type", "application/json", "Sec-Fetch-Site", "same-origin"}, tc.headers...)
			res := s.do(method, "https://shop.example.com/capi/collect", strings.NewReader(tc.body), h...)
			if res.err != nil {
				t.Fatalf("the refusal was left to Caddy: %v", res.err)
			}
			checkCollectAnswer(t, res.ResponseRecorder, tc.status, tc.code)
			if s.got != nil {
				t.Error("the refused post reached the upstream")
			}
		})
	}
}
