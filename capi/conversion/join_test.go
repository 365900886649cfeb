package conversion

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/caddy-capi/caddy-capi/capi/capture"
	"github.com/caddy-capi/caddy-capi/capi/postback"
	"github.com/caddy-capi/caddy-capi/capi/signal"
	"github.com/caddy-capi/caddy-capi/capi/store"
)

const (
	vidTracked = "k3j9x0a1b2c3d4e5f6g7h8i9" // found by tracking ID
	vidCart    = "c4rt0000000000000000000a"
	vidClick   = "c11ck000000000000000000b"
	vidEmail   = "ema11000000000000000000c"
	vidTTCLID  = "ttc11d00000000000000000d"
)

// seedVisitors stores one visitor per join key, each distinct, so a test can tell which key won.
func seedVisitors(t *testing.T) store.Store {
	st := newStore(t)
	put(t, st, vidTracked, func(v *store.Visitor) { v.LastPageURL = "https://shop.example/landing" })
	put(t, st, vidCart, func(v *store.Visitor) { v.CartTokens = []string{"cart-abc", "chk-xyz"} })
	put(t, st, vidClick, func(v *store.Visitor) {
		v.Clicks = map[string]store.Click{store.ClickFBCLID: {Value: "IwAR_FbClick-1", FirstSeen: t0, LastSeen: t0}}
	})
	put(t, st, vidTTCLID, func(v *store.Visitor) {
		v.Clicks = map[string]store.Click{store.ClickTTCLID: {Value: "E.C.P.tt1", FirstSeen: t0, LastSeen: t0}}
	})
	put(t, st, vidEmail, func(v *store.Visitor) {
		v.User.Meta.Emails = []string{signal.Hash("buyer@example.com")}
	})
	return st
}

func TestJoinTriesKeysInOrder(t *testing.T) {
	st := seedVisitors(t)
	email := []string{signal.Hash("buyer@example.com")}
	tests := []struct {
		name   string
		j      postback.Join
		emails []string
		wantID string
		wantBy string
	}{
		{
			name:   "tracking ID wins over every other key, email included",
			j:      postback.Join{TrackingIDs: []string{vidTracked}, CartToken: "cart-abc", FBCLID: "IwAR_FbClick-1"},
			emails: email, wantID: vidTracked, wantBy: JoinedByTrackingID,
		},
		{
			name:   "upper-cased tracking ID (ClickBank) is lower-cased",
			j:      postback.Join{TrackingIDs: []string{strings.ToUpper(vidTracked)}},
			emails: email, wantID: vidTracked, wantBy: JoinedByTrackingID,
		},
		{
			name:   "a lower-case candidate is tried before one that needed folding",
			j:      postback.Join{TrackingIDs: []string{strings.ToUpper(vidCart), vidTracked}},
			wantID: vidTracked, wantBy: JoinedByTrackingID,
		},
		{
			name:   "candidates not shaped like a visitor ID are skipped",
			j:      postback.Join{TrackingIDs: []string{"affiliate_summer_sale", vidTracked + "x", " " + vidTracked + " "}},
			wantID: vidTracked, wantBy: JoinedByTrackingID,
		},
		{
			name:   "unknown tracking ID falls through to the cart token",
			j:      postback.Join{TrackingIDs: []string{"zzzzzzzzzzzzzzzzzzzzzzzz"}, CartToken: "cart-abc", FBCLID: "IwAR_FbClick-1"},
			emails: email, wantID: vidCart, wantBy: JoinedByCartToken,
		},
		{
			name:   "checkout token after the cart token",
			j:      postback.Join{CartToken: "cart-unknown", CheckoutToken: "chk-xyz", FBCLID: "IwAR_FbClick-1"},
			wantID: vidCart, wantBy: JoinedByCheckoutToken,
		},
		{
			name:   "click ID before email",
			j:      postback.Join{FBCLID: "IwAR_FbClick-1"},
			emails: email, wantID: vidClick, wantBy: JoinedByFBCLID,
		},
		{
			name:   "ttclid",
			j:      postback.Join{GCLID: "unknown-gclid", TTCLID: "E.C.P.tt1"},
			wantID: vidTTCLID, wantBy: JoinedByTTCLID,
		},
		{
			name:   "fbclid inside a stored _fbc value",
			j:      postback.Join{FBC: "fb.1.1700000000000.IwAR_FbClick-1"},
			wantID: vidClick, wantBy: JoinedByFBC,
		},
		{
			name:   "hashed email last",
			j:      postback.Join{FBCLID: "unknown"},
			emails: email, wantID: vidEmail, wantBy: JoinedByEmail,
		},
		{
			name:   "plaintext email is never looked up",
			emails: []string{"buyer@example.com", strings.ToUpper(email[0])},
		},
		{
			name: "invalid click IDs are skipped",
			j:    postback.Join{FBCLID: "IwAR_FbClick-1<script>", GCLID: strings.Repeat("a", 501)},
		},
		{name: "nothing to join by"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, by, found, err := Join(context.Background(), st, tt.j, tt.emails)
			if err != nil {
				t.Fatal(err)
			}
			if found != (tt.wantID != "") || v.ID != tt.wantID || by != tt.wantBy {
				t.Errorf("Join = (%q, %q, %v), want (%q, %q, %v)", v.ID, by, found, tt.wantID, tt.wantBy, tt.wantID != "")
			}
		})
	}
}

// failingStore fails every lookup, like a store whose disk went away.
type failingStore struct{ store.Store }

var errDisk = errors.New("disk gone")

func (failingStore) Get(context.Context, string) (store.Visitor, bool, error) {
	return store.Visitor{}, false, errDisk
}

func TestJoinReportsStoreErrors(t *testing.T) {
	_, by, found, err := Join(context.Background(), failingStore{}, postback.Join{TrackingIDs: []string{vidTracked}}, nil)
	if !errors.Is(err, errDisk) || found || by != "" {
		t.Fatalf("Join = (%q, %v, %v), want the store's error", by, found, err)
	}
	if !strings.Contains(err.Error(), JoinedByTrackingID) {
		t.Errorf("error %q does not say which key failed", err)
	}
}

func TestEmailHashesMatchTheStoredProfile(t *testing.T) {
	got := EmailHashes([]string{" Buyer@Example.com ", "not an email", ""})
	want := []string{signal.Hash("buyer@example.com")}
	eq(t, "hashes", got, want)
	// The captured profile of the same buyer holds the same hash, so the join works.
	v := store.Visitor{ID: buyerVID}
	ApplyCapture(&v, capture.Submission{Customer: capture.Customer{Emails: []string{"buyer@example.com"}}}, Options{})
	eq(t, "profile", v.User.Meta.Emails, want)
}
