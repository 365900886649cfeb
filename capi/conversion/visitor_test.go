package conversion

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/capture"
	"github.com/caddy-capi/caddy-capi/capi/identity"
	"github.com/caddy-capi/caddy-capi/capi/postback"
	"github.com/caddy-capi/caddy-capi/capi/signal"
	"github.com/caddy-capi/caddy-capi/capi/store"
)

func TestApplyIdentityKeepsClicksAndPages(t *testing.T) {
	st := newStore(t)
	resolve := func(rawURL string, at time.Time) identity.Result {
		r := httptest.NewRequest(http.MethodGet, rawURL, nil)
		r.AddCookie(&http.Cookie{Name: identity.CookieVisitorID, Value: buyerVID})
		return identity.Resolve(r, identity.Options{Now: func() time.Time { return at }})
	}
	apply := func(rawURL string, html bool, at time.Time) store.Visitor {
		id := resolve(rawURL, at)
		return put(t, st, buyerVID, func(v *store.Visitor) {
			ApplyIdentity(v, id, Request{URL: rawURL, IP: "::ffff:192.0.2.1", UserAgent: "UA", HTML: html}, at)
		})
	}

	v := apply("https://shop.example/?gclid=first", true, t0)
	eq(t, "gclid", v.Clicks[store.ClickGCLID], store.Click{Value: "first", FirstSeen: t0, LastSeen: t0})
	eq(t, "external_id", v.User.ExternalID, signal.ExternalID(buyerVID))
	eq(t, "IPv4-mapped IP unmapped", v.User.IP, "192.0.2.1")
	eq(t, "last page", v.LastPageURL, "https://shop.example/?gclid=first")

	t1 := t0.Add(time.Hour)
	v = apply("https://shop.example/product?gclid=first", true, t1)
	eq(t, "same click moves last seen", v.Clicks[store.ClickGCLID], store.Click{Value: "first", FirstSeen: t0, LastSeen: t1})

	t2 := t1.Add(time.Hour)
	v = apply("https://shop.example/api/cart.js?gclid=second", false, t2)
	eq(t, "a later click replaces", v.Clicks[store.ClickGCLID], store.Click{Value: "second", FirstSeen: t2, LastSeen: t2})
	eq(t, "gclid signal", v.User.GCLID, "second")
	eq(t, "non-HTML responses leave the last page", v.LastPageURL, "https://shop.example/product?gclid=first")

	// The visitor is findable by the new click, not the replaced one.
	if found, ok, _ := st.FindByClickID(context.Background(), store.ClickGCLID, "second"); !ok || found.ID != buyerVID {
		t.Error("not findable by the new click")
	}
	if _, ok, _ := st.FindByClickID(context.Background(), store.ClickGCLID, "first"); ok {
		t.Error("still findable by the replaced click")
	}
}

func TestApplyCaptureJoinsFormToVisitor(t *testing.T) {
	st := newStore(t)
	var drops []Drop
	opt := Options{DefaultCountry: "US", Now: fixedNow, Dropped: func(d Drop) { drops = append(drops, d) }}
	put(t, st, buyerVID, func(v *store.Visitor) {
		ApplyCapture(v, capture.Submission{
			Customer:  capture.Customer{Emails: []string{"Jane@Example.com", "not an email"}, Zip: "94105-1234"},
			CartToken: " cart-1 ",
		}, opt)
	})
	v := put(t, st, buyerVID, func(v *store.Visitor) {
		ApplyCapture(v, capture.Submission{Customer: capture.Customer{Emails: []string{"jane@work.example"}}, CartToken: "cart-2"}, opt)
	})
	eq(t, "emails, newest first", v.User.Meta.Emails, []string{signal.Hash("jane@work.example"), signal.Hash("jane@example.com")})
	eq(t, "zip kept", v.User.Meta.Zip, signal.Hash("94105"))
	eq(t, "cart tokens", v.CartTokens, []string{"cart-1", "cart-2"})
	if len(drops) != 1 || drops[0].Field != "email" {
		t.Errorf("drops = %v, want the invalid email", drops)
	}

	// The captured email and cart token join a later webhook to this visitor.
	for _, j := range []struct {
		join   postback.Join
		emails []string
		by     string
	}{
		{postback.Join{CartToken: "cart-1"}, nil, JoinedByCartToken},
		{postback.Join{}, []string{signal.Hash("jane@example.com")}, JoinedByEmail},
	} {
		got, by, ok, err := Join(context.Background(), st, j.join, j.emails)
		if err != nil || !ok || got.ID != buyerVID || by != j.by {
			t.Errorf("Join(%+v) = (%q, %q, %v, %v)", j.join, got.ID, by, ok, err)
		}
	}
}

func TestApplyCaptureKeepsNewestCartTokens(t *testing.T) {
	v := store.Visitor{ID: buyerVID}
	for i := range maxCartTokens + 3 {
		ApplyCapture(&v, capture.Submission{CartToken: fmt.Sprintf("cart-%d", i)}, Options{})
	}
	ApplyCapture(&v, capture.Submission{CartToken: "cart-5"}, Options{}) // seen again: newest
	ApplyCapture(&v, capture.Submission{CartToken: "bad\x00token"}, Options{})
	if len(v.CartTokens) != maxCartTokens || v.CartTokens[0] != "cart-3" || v.CartTokens[maxCartTokens-1] != "cart-5" {
		t.Errorf("cart tokens = %v", v.CartTokens)
	}
}
