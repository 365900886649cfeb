package caddymodule

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
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
		res := s.do(http.MethodPost, "https://shop.example.com/capi/collect", strings.NewReader(body),
			"Content-Type", "application/json", "Sec-Fetch-Site", "same-origin")
		if res.err != nil || res.Code != http.StatusNoContent {
			t.Fatalf("post with %s: %d %v", what, res.Code, res.err)
		}
	}
	if n := len(s.events()); n != len(forged) {
		t.Fatalf("enqueued %d forged Purchases, want %d", n, len(forged))
	}

	s.jar = map[string]string{} // the buyer's own browser
	s.page("https://shop.example.com/?fbclid=IwAR1buyer")
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
// caddyhttp.Error, or yield a known name and a valid event ID; nothing panics.
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
		ev, err := readCollect(httptest.NewRecorder(), r, known)
		if err != nil {
			var he caddyhttp.HandlerError
			if !asHandlerError(err, &he) || he.StatusCode < 400 || he.StatusCode > 499 {
				t.Fatalf("refusal %v is not a 4xx caddyhttp.Error", err)
			}
			return
		}
		if !known(ev.Name) || !conversion.ValidEventID(ev.EventID) || len(body) > maxCollectBody {
			t.Fatalf("accepted %+v", ev)
		}
	})
}
