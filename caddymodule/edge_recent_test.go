package caddymodule

import (
	"sync"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/store"
)

// TestEdgeSkipsTheWriterForAnUnchangedReturningVisitor: once the writer has found a visitor's
// signals recorded, pages with the same signals within pageURLRefresh are not handed to it, while
// a new click ID, a new IP, or the page URL after pageURLRefresh still reach the record.
func TestEdgeSkipsTheWriterForAnUnchangedReturningVisitor(t *testing.T) {
	s := newTestSite(t, `{}`, nil)
	var mu sync.Mutex
	clock := time.Now()
	s.h.edge.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }

	s.page("https://shop.example.com/?fbclid=IwAR1")
	vid := s.jar["_capi_vid"]
	first := s.visitor(vid)
	recent := s.h.edge.writer.recent
	recent.cache.Wait()

	// The same signals a few seconds later: noted as recorded, so no job at all.
	advance(5 * time.Second)
	if e, ok := recent.cache.Get(vid); !ok || !recent.unchanged(vid, e.fingerprint, clock) {
		t.Fatalf("the visitor's recorded signals were not remembered after the first page: %+v, %v", e, ok)
	}
	s.page("https://shop.example.com/product")
	if got := s.visitor(vid); !got.Updated.Equal(first.Updated) || got.LastPageURL != first.LastPageURL {
		t.Fatalf("an unchanged visit within %s rewrote the record", pageURLRefresh)
	}

	// A new click ID changes the fingerprint and is written at once.
	advance(time.Second)
	s.page("https://shop.example.com/?gclid=Cj0new")
	got := s.visitor(vid)
	if got.Clicks[store.ClickGCLID].Value != "Cj0new" {
		t.Fatal("a new click ID on a returning visitor's page was not written")
	}
	recent.cache.Wait()

	// After pageURLRefresh the page URL is written again.
	advance(pageURLRefresh + time.Second)
	s.page("https://shop.example.com/cart")
	if got := s.visitor(vid); got.LastPageURL != "https://shop.example.com/cart" {
		t.Fatalf("last page URL %q after %s, want the cart page", got.LastPageURL, pageURLRefresh)
	}
}

func TestVisitFingerprintSeparatesFields(t *testing.T) {
	a, b := &visit{}, &visit{}
	a.req.IP, a.req.UserAgent = "203.0.113.1", "x"
	b.req.IP, b.req.UserAgent = "203.0.113.1x", ""
	if visitFingerprint(a) == visitFingerprint(b) {
		t.Fatal("moving a byte from one field to the next kept the fingerprint")
	}
	c := *a
	c.consent.LimitedDataUse = true
	if visitFingerprint(a) == visitFingerprint(&c) {
		t.Fatal("consent is not part of the fingerprint")
	}
}
