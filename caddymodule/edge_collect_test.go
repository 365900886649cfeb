package caddymodule

import (
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
