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
	jobs := s.h.edge.writer.accepted.Load()
	s.page("https://shop.example.com/product")
	if n := s.h.edge.writer.accepted.Load() - jobs; n != 0 {
		t.Fatalf("an unchanged returning visit handed %d jobs to the background writer; want none", n)
	}
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

// TestVisitFingerprintCoversWhatVisitChangesCompares: every signal visitChanges writes a record
// for changes the fingerprint, so the recent-visit shortcut never skips a real change.
func TestVisitFingerprintCoversWhatVisitChangesCompares(t *testing.T) {
	base := visit{}
	base.id.VisitorID = "abcdefghijklmnopqrstuvwx"
	base.req.IP, base.req.UserAgent, base.req.AcceptLanguage = "203.0.113.1", "Mozilla/5.0", "en-US"
	for name, change := range map[string]func(v *visit){
		"fbclid":          func(v *visit) { v.id.Known.FBCLID = "IwAR2" },
		"gclid":           func(v *visit) { v.id.Known.GCLID = "Cj0b" },
		"gbraid":          func(v *visit) { v.id.Known.GBRAID = "0AAb" },
		"wbraid":          func(v *visit) { v.id.Known.WBRAID = "Cl0b" },
		"ttclid":          func(v *visit) { v.id.Known.TTCLID = "E.C.P.b" },
		"_fbc":            func(v *visit) { v.id.FBC = "fb.1.1.IwAR2" },
		"_fbp":            func(v *visit) { v.id.FBP = "fb.1.1.2" },
		"_ttp":            func(v *visit) { v.id.TTP = "ttp2" },
		"ttclid cookie":   func(v *visit) { v.id.TTCLID = "E.C.P.c" },
		"_gcl_aw":         func(v *visit) { v.id.GCLAW = "GCL.1.Cj0c" },
		"_gcl_gb":         func(v *visit) { v.id.GCLGB = "GCL.1.0AAc" },
		"_gcl_wb":         func(v *visit) { v.id.GCLWB = "GCL.1.Cl0c" },
		"ip":              func(v *visit) { v.req.IP = "203.0.113.2" },
		"user agent":      func(v *visit) { v.req.UserAgent = "Mozilla/5.1" },
		"accept-language": func(v *visit) { v.req.AcceptLanguage = "de-DE" },
		"cart":            func(v *visit) { v.cart = "c2" },
		"ad user data":    func(v *visit) { v.consent.AdUserDataDenied = true },
	} {
		changed := base
		change(&changed)
		if visitFingerprint(&changed) == visitFingerprint(&base) {
			t.Errorf("a new %s leaves the fingerprint unchanged", name)
		}
	}
}
