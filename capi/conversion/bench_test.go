package conversion

import (
	"context"
	"crypto/sha256"
	"testing"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/postback"
	"github.com/caddy-capi/caddy-capi/capi/signal"
	"github.com/caddy-capi/caddy-capi/capi/store"
)

// BenchmarkEventID compares the event ID with a bare SHA-256 of the same bytes; HMAC-SHA256 hashes
// twice (inner and outer) plus the key pads, so about twice the baseline is its floor.
func BenchmarkEventID(b *testing.B) {
	b.Run("baseline=sha256", func(b *testing.B) {
		b.ReportAllocs()
		in := []byte(eventIDDomain + "Purchase\x00ORDER-100234")
		for b.Loop() {
			sha256.Sum256(in)
		}
	})
	b.Run("EventID", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			EventID(testIDKey, "Purchase", "ORDER-100234")
		}
	})
	b.Run("RandomEventID", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			RandomEventID(nil)
		}
	})
}

// BenchmarkFromNotification measures building a joined postback's event; signal.Normalize of the
// same customer alone is the baseline, since normalization dominates.
func BenchmarkFromNotification(b *testing.B) {
	n := clickBankSale()
	v := &store.Visitor{ID: buyerVID, LastPageURL: "https://shop.example/thank-you", User: event.User{UserAgent: browserUA, IP: "203.0.113.7"}}
	b.Run("baseline=signal.Normalize", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			signal.Normalize(signal.Customer(n.Customer), signal.Options{Now: fixedNow})
		}
	})
	b.Run("FromNotification", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := FromNotification(n, v, Options{IDKey: testIDKey, Now: fixedNow}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkJoin measures the join on the real bbolt store: found by the first key (tracking ID),
// against found by the last (email) after every other key missed.
func BenchmarkJoin(b *testing.B) {
	st := newStore(b)
	email := signal.Hash("buyer@example.com")
	put(b, st, buyerVID, func(v *store.Visitor) { v.User.Meta.Emails = []string{email} })
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		j    postback.Join
	}{
		{"baseline=tracking_id", postback.Join{TrackingIDs: []string{buyerVID}}},
		{"email_after_misses", postback.Join{TrackingIDs: []string{"zzzzzzzzzzzzzzzzzzzzzzzz"}, CartToken: "c", FBCLID: "f", GCLID: "g", TTCLID: "t"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, ok, err := Join(ctx, st, bc.j, []string{email}); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
}
