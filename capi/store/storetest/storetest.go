// Package storetest is the behavioural test suite every store.Store implementation passes: records,
// indexes, expiry, idempotency keys and concurrency, as the handler and the postback receivers rely
// on them. Implementations call Run from their own tests; it must not know any implementation.
package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/store"
)

// Factory returns a fresh, empty store configured with opts (whose Now is the suite's clock, which
// the store must use for every expiry decision). The factory registers its own cleanup with t.
type Factory func(t *testing.T, opts store.Options) store.Store

// Clock is a settable time source for tests.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock starts a clock at a fixed instant.
func NewClock() *Clock {
	return &Clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Hash is the lowercase hex SHA-256 of s, the form profile values take.
func Hash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

const ttl = 24 * time.Hour

// Run runs the suite against the stores newStore makes.
func Run(t *testing.T, newStore Factory) {
	open := func(t *testing.T) (store.Store, *Clock) {
		c := NewClock()
		return newStore(t, store.Options{TTL: ttl, Now: c.Now}), c
	}
	t.Run("GetUnknownIsNotFound", func(t *testing.T) {
		s, _ := open(t)
		_, ok, err := s.Get(context.Background(), "nobody")
		if err != nil || ok {
			t.Fatalf("Get(unknown) = found %v, err %v; want not found, nil", ok, err)
		}
	})
	t.Run("UpdateCreatesAndGetReturnsIt", func(t *testing.T) { testCreate(t, open) })
	t.Run("UpdateEditsExistingRecord", func(t *testing.T) { testEdit(t, open) })
	t.Run("UpdateFunctionErrorWritesNothing", func(t *testing.T) { testFnError(t, open) })
	t.Run("RefusesBadInput", func(t *testing.T) { testBadInput(t, open) })
	t.Run("RefusesPlaintextProfile", func(t *testing.T) { testPlaintext(t, open) })
	t.Run("ReturnedRecordsAreCopies", func(t *testing.T) { testCopies(t, open) })
	t.Run("FindByIndexes", func(t *testing.T) { testFind(t, open) })
	t.Run("IndexFollowsChanges", func(t *testing.T) { testIndexChange(t, open) })
	t.Run("IndexValueOwnedByLatestVisitor", func(t *testing.T) { testIndexOwnership(t, open) })
	t.Run("EraseRemovesRecordAndIndexes", func(t *testing.T) { testErase(t, open) })
	t.Run("ExpiresAfterTTLSinceUpdate", func(t *testing.T) { testExpiry(t, open) })
	t.Run("ExpiredRecordDoesNotComeBack", func(t *testing.T) { testNoResurrection(t, open) })
	t.Run("MarkSeen", func(t *testing.T) { testMarkSeen(t, open) })
	t.Run("ConcurrentMarkSeenCountsEachKeyOnce", func(t *testing.T) { testMarkSeenConcurrent(t, open) })
	t.Run("ConcurrentUpdatesLoseNothing", func(t *testing.T) { testConcurrent(t, open) })
	t.Run("CancelledContextIsAnError", func(t *testing.T) { testCancelled(t, open) })
}

type opener func(t *testing.T) (store.Store, *Clock)

// sample is a visitor as the handler builds it: click IDs, browser IDs, hashed profiles.
func sample(now time.Time) func(*store.Visitor) error {
	return func(v *store.Visitor) error {
		v.User.ExternalID = Hash("v1")
		v.User.IP = "203.0.113.7"
		v.User.UserAgent = "Mozilla/5.0"
		v.User.FBP = "fb.1.1700000000000.123456789"
		v.User.Meta.Emails = []string{Hash("alice@example.com")}
		v.User.Meta.Phones = []string{Hash("15551234567")}
		v.User.Google.City = "paris"
		v.User.Google.Emails = []string{Hash("alice@example.com")}
		v.Clicks = map[string]store.Click{
			store.ClickFBCLID: {Value: "IwAR0abc", FirstSeen: now, LastSeen: now},
			store.ClickGCLID:  {Value: "Cj0KCQgclid", FirstSeen: now, LastSeen: now},
		}
		v.CartTokens = []string{"cart-1"}
		v.LastPageURL = "https://shop.example/thanks"
		return nil
	}
}

func mustUpdate(t *testing.T, s store.Store, id string, fn func(*store.Visitor) error) store.Visitor {
	t.Helper()
	v, err := s.Update(context.Background(), id, fn)
	if err != nil {
		t.Fatalf("Update(%q): %v", id, err)
	}
	return v
}

func mustGet(t *testing.T, s store.Store, id string) store.Visitor {
	t.Helper()
	v, ok, err := s.Get(context.Background(), id)
	if err != nil || !ok {
		t.Fatalf("Get(%q) = found %v, err %v; want found", id, ok, err)
	}
	return v
}

func wantMissing(t *testing.T, what string, _ store.Visitor, ok bool, err error) {
	t.Helper()
	if err != nil || ok {
		t.Fatalf("%s = found %v, err %v; want not found", what, ok, err)
	}
}

func wantVisitor(t *testing.T, what string, v store.Visitor, ok bool, err error, id string) {
	t.Helper()
	if err != nil || !ok || v.ID != id {
		t.Fatalf("%s = %q found %v, err %v; want %q", what, v.ID, ok, err, id)
	}
}

func testCreate(t *testing.T, open opener) {
	s, clock := open(t)
	now := clock.Now()
	got := mustUpdate(t, s, "v1", sample(now))
	if got.ID != "v1" || !got.Created.Equal(now) || !got.Updated.Equal(now) {
		t.Fatalf("created record ID %q Created %v Updated %v; want v1 and %v", got.ID, got.Created, got.Updated, now)
	}
	stored := mustGet(t, s, "v1")
	if !equal(stored, got) {
		t.Fatalf("Get after Update:\n got %+v\nwant %+v", stored, got)
	}
	if stored.User.IP != "203.0.113.7" || stored.Clicks[store.ClickFBCLID].Value != "IwAR0abc" ||
		len(stored.User.Meta.Emails) != 1 || stored.LastPageURL != "https://shop.example/thanks" {
		t.Fatalf("stored record lost fields: %+v", stored)
	}
}

func testEdit(t *testing.T, open opener) {
	s, clock := open(t)
	created := clock.Now()
	mustUpdate(t, s, "v1", sample(created))
	clock.Advance(time.Hour)
	var seen store.Visitor
	got := mustUpdate(t, s, "v1", func(v *store.Visitor) error {
		seen = *v
		v.LastPageURL = "https://shop.example/cart"
		v.ID = "someone-else" // the store keeps the key it was given
		return nil
	})
	if seen.Clicks[store.ClickGCLID].Value != "Cj0KCQgclid" {
		t.Fatalf("update function did not see the current record: %+v", seen)
	}
	if got.ID != "v1" || !got.Created.Equal(created) || !got.Updated.Equal(created.Add(time.Hour)) {
		t.Fatalf("edited record ID %q Created %v Updated %v", got.ID, got.Created, got.Updated)
	}
	if v := mustGet(t, s, "v1"); v.LastPageURL != "https://shop.example/cart" || v.User.FBP == "" {
		t.Fatalf("edit not stored or other fields lost: %+v", v)
	}
	_, ok, _ := s.Get(context.Background(), "someone-else")
	if ok {
		t.Fatal("changing ID in the update function created another record")
	}
}

func testFnError(t *testing.T, open opener) {
	s, clock := open(t)
	mustUpdate(t, s, "v1", sample(clock.Now()))
	boom := errors.New("boom")
	_, err := s.Update(context.Background(), "v1", func(v *store.Visitor) error {
		v.CartTokens = append(v.CartTokens, "cart-2")
		v.Clicks = nil
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update error = %v; want it to wrap the function's error", err)
	}
	v := mustGet(t, s, "v1")
	if len(v.CartTokens) != 1 || len(v.Clicks) != 2 {
		t.Fatalf("failed update changed the record: %+v", v)
	}
	got, ok, err := s.FindByCartToken(context.Background(), "cart-2")
	wantMissing(t, "FindByCartToken(cart-2) after failed update", got, ok, err)
	_, err = s.Update(context.Background(), "v2", func(*store.Visitor) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("Update error = %v; want boom", err)
	}
	if _, ok, _ := s.Get(context.Background(), "v2"); ok {
		t.Fatal("failed create left a record")
	}
}

func testBadInput(t *testing.T, open opener) {
	s, _ := open(t)
	ctx := context.Background()
	if _, err := s.Update(ctx, "", func(*store.Visitor) error { return nil }); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Update(empty ID) error = %v; want ErrInvalid", err)
	}
	if err := s.Erase(ctx, ""); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Erase(empty ID) error = %v; want ErrInvalid", err)
	}
	for _, d := range []time.Duration{0, -time.Second} {
		if _, err := s.MarkSeen(ctx, "k", d); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("MarkSeen(ttl %v) error = %v; want ErrInvalid", d, err)
		}
	}
	if _, err := s.MarkSeen(ctx, "", time.Hour); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("MarkSeen(empty key) error = %v; want ErrInvalid", err)
	}
	if _, err := s.Update(ctx, "v1", func(v *store.Visitor) error {
		v.Clicks = map[string]store.Click{"utm_source": {Value: "x"}}
		return nil
	}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Update(click of unknown kind) error = %v; want ErrInvalid", err)
	}
	if _, err := s.Update(ctx, "v1", func(v *store.Visitor) error {
		v.Clicks = map[string]store.Click{store.ClickGCLID: {Value: "a\xadb"}}
		return nil
	}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Update(click ID not UTF-8) error = %v; want ErrInvalid", err)
	}
	if _, ok, _ := s.Get(ctx, "v1"); ok {
		t.Error("refused updates created a record")
	}
	for _, tc := range []struct{ kind, value string }{{"", "x"}, {"fbclid", ""}, {"fbclid", "a\x00"}, {"utm_source", "x"}} {
		got, ok, err := s.FindByClickID(ctx, tc.kind, tc.value)
		wantMissing(t, fmt.Sprintf("FindByClickID(%q, %q)", tc.kind, tc.value), got, ok, err)
	}
	if err := s.Erase(ctx, "unknown"); err != nil {
		t.Errorf("Erase(unknown) = %v; want nil", err)
	}
}

func testPlaintext(t *testing.T, open opener) {
	s, clock := open(t)
	mustUpdate(t, s, "v1", sample(clock.Now()))
	cases := map[string]func(*event.User){
		"meta email":     func(u *event.User) { u.Meta.Emails = append(u.Meta.Emails, "alice@example.com") },
		"tiktok phone":   func(u *event.User) { u.TikTok.Phones = []string{"+15551234567"} },
		"google name":    func(u *event.User) { u.Google.FirstName = "Alice" },
		"meta city":      func(u *event.User) { u.Meta.City = "paris" },
		"uppercase hash": func(u *event.User) { u.Meta.LastName = "A" + Hash("x")[1:] },
		"google street":  func(u *event.User) { u.Google.Street = "1 rue de la paix" },
	}
	for name, spoil := range cases {
		_, err := s.Update(context.Background(), "v1", func(v *store.Visitor) error {
			spoil(&v.User)
			return nil
		})
		if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: Update error = %v; want ErrInvalid", name, err)
		}
	}
	v := mustGet(t, s, "v1")
	if !reflect.DeepEqual(v.User.Meta.Emails, []string{Hash("alice@example.com")}) || v.User.Google.FirstName != "" {
		t.Fatalf("refused updates changed the record: %+v", v.User)
	}
	// Google and TikTok take city, region, postal code and country plain.
	mustUpdate(t, s, "v1", func(v *store.Visitor) error {
		v.User.TikTok.City, v.User.Google.Zip, v.User.Google.Country = "paris", "75002", "fr"
		return nil
	})
}

func testCopies(t *testing.T, open opener) {
	s, clock := open(t)
	got := mustUpdate(t, s, "v1", sample(clock.Now()))
	got.CartTokens[0] = "mutated"
	got.Clicks[store.ClickFBCLID] = store.Click{Value: "mutated"}
	for range 2 { // the second Get is served by the cache where there is one
		v := mustGet(t, s, "v1")
		if v.CartTokens[0] != "cart-1" || v.Clicks[store.ClickFBCLID].Value != "IwAR0abc" {
			t.Fatalf("mutating a returned record changed the store: %+v", v)
		}
		v.User.Meta.Emails[0] = "mutated"
		v.CartTokens[0] = "mutated"
	}
}

func testFind(t *testing.T, open opener) {
	s, clock := open(t)
	ctx := context.Background()
	mustUpdate(t, s, "v1", sample(clock.Now()))
	mustUpdate(t, s, "v2", func(v *store.Visitor) error {
		v.Clicks = map[string]store.Click{store.ClickTTCLID: {Value: "E.C.P.tt"}, store.ClickWBRAID: {Value: "wb"}, store.ClickGBRAID: {Value: "gb"}}
		return nil
	})
	cases := []struct {
		name   string
		find   func() (store.Visitor, bool, error)
		wantID string
	}{
		{"fbclid", func() (store.Visitor, bool, error) { return s.FindByClickID(ctx, store.ClickFBCLID, "IwAR0abc") }, "v1"},
		{"gclid", func() (store.Visitor, bool, error) { return s.FindByClickID(ctx, store.ClickGCLID, "Cj0KCQgclid") }, "v1"},
		{"ttclid", func() (store.Visitor, bool, error) { return s.FindByClickID(ctx, store.ClickTTCLID, "E.C.P.tt") }, "v2"},
		{"wbraid", func() (store.Visitor, bool, error) { return s.FindByClickID(ctx, store.ClickWBRAID, "wb") }, "v2"},
		{"gbraid", func() (store.Visitor, bool, error) { return s.FindByClickID(ctx, store.ClickGBRAID, "gb") }, "v2"},
		{"email hash", func() (store.Visitor, bool, error) { return s.FindByEmailHash(ctx, Hash("alice@example.com")) }, "v1"},
		{"cart token", func() (store.Visitor, bool, error) { return s.FindByCartToken(ctx, "cart-1") }, "v1"},
		{"click value under another kind", func() (store.Visitor, bool, error) { return s.FindByClickID(ctx, store.ClickGCLID, "IwAR0abc") }, ""},
		{"click ID is case-sensitive", func() (store.Visitor, bool, error) { return s.FindByClickID(ctx, store.ClickFBCLID, "iwar0abc") }, ""},
		{"unknown email", func() (store.Visitor, bool, error) { return s.FindByEmailHash(ctx, Hash("bob@example.com")) }, ""},
		{"plaintext email is not a key", func() (store.Visitor, bool, error) { return s.FindByEmailHash(ctx, "alice@example.com") }, ""},
		{"empty email hash", func() (store.Visitor, bool, error) { return s.FindByEmailHash(ctx, "") }, ""},
		{"unknown cart", func() (store.Visitor, bool, error) { return s.FindByCartToken(ctx, "cart-9") }, ""},
	}
	for _, tc := range cases {
		v, ok, err := tc.find()
		if tc.wantID == "" {
			wantMissing(t, tc.name, v, ok, err)
		} else {
			wantVisitor(t, tc.name, v, ok, err, tc.wantID)
		}
	}
}

func testIndexChange(t *testing.T, open opener) {
	s, clock := open(t)
	ctx := context.Background()
	mustUpdate(t, s, "v1", sample(clock.Now()))
	mustUpdate(t, s, "v1", func(v *store.Visitor) error {
		v.Clicks[store.ClickFBCLID] = store.Click{Value: "IwAR0new", FirstSeen: clock.Now(), LastSeen: clock.Now()}
		delete(v.Clicks, store.ClickGCLID)
		v.User.Meta.Emails = []string{Hash("alice@work.example")}
		v.CartTokens = []string{"cart-2"}
		return nil
	})
	v, ok, err := s.FindByClickID(ctx, store.ClickFBCLID, "IwAR0abc")
	wantMissing(t, "old fbclid", v, ok, err)
	v, ok, err = s.FindByClickID(ctx, store.ClickGCLID, "Cj0KCQgclid")
	wantMissing(t, "removed gclid", v, ok, err)
	v, ok, err = s.FindByEmailHash(ctx, Hash("alice@example.com"))
	wantMissing(t, "old email", v, ok, err)
	v, ok, err = s.FindByCartToken(ctx, "cart-1")
	wantMissing(t, "old cart", v, ok, err)
	v, ok, err = s.FindByClickID(ctx, store.ClickFBCLID, "IwAR0new")
	wantVisitor(t, "new fbclid", v, ok, err, "v1")
	v, ok, err = s.FindByEmailHash(ctx, Hash("alice@work.example"))
	wantVisitor(t, "new email", v, ok, err, "v1")
	v, ok, err = s.FindByCartToken(ctx, "cart-2")
	wantVisitor(t, "new cart", v, ok, err, "v1")
}

func testIndexOwnership(t *testing.T, open opener) {
	s, clock := open(t)
	ctx := context.Background()
	shared := Hash("alice@example.com")
	mustUpdate(t, s, "phone", func(v *store.Visitor) error {
		v.User.Meta.Emails = []string{shared}
		return nil
	})
	clock.Advance(time.Minute)
	mustUpdate(t, s, "laptop", func(v *store.Visitor) error {
		v.User.Meta.Emails = []string{shared}
		return nil
	})
	v, ok, err := s.FindByEmailHash(ctx, shared)
	wantVisitor(t, "email claimed by two visitors", v, ok, err, "laptop")
	// The earlier visitor dropping the value must not unlink the later one.
	mustUpdate(t, s, "phone", func(v *store.Visitor) error {
		v.User.Meta.Emails = nil
		return nil
	})
	if err := s.Erase(ctx, "phone"); err != nil {
		t.Fatal(err)
	}
	v, ok, err = s.FindByEmailHash(ctx, shared)
	wantVisitor(t, "email after the other visitor dropped it", v, ok, err, "laptop")
}

func testErase(t *testing.T, open opener) {
	s, clock := open(t)
	ctx := context.Background()
	mustUpdate(t, s, "v1", sample(clock.Now()))
	mustGet(t, s, "v1") // warm any cache
	if err := s.Erase(ctx, "v1"); err != nil {
		t.Fatalf("Erase: %v", err)
	}
	v, ok, err := s.Get(ctx, "v1")
	wantMissing(t, "Get after Erase", v, ok, err)
	v, ok, err = s.FindByClickID(ctx, store.ClickFBCLID, "IwAR0abc")
	wantMissing(t, "fbclid after Erase", v, ok, err)
	v, ok, err = s.FindByEmailHash(ctx, Hash("alice@example.com"))
	wantMissing(t, "email after Erase", v, ok, err)
	v, ok, err = s.FindByCartToken(ctx, "cart-1")
	wantMissing(t, "cart after Erase", v, ok, err)
	// A new record under the same ID starts empty.
	got := mustUpdate(t, s, "v1", func(v *store.Visitor) error {
		if len(v.Clicks) != 0 || len(v.CartTokens) != 0 || !v.Created.IsZero() {
			return fmt.Errorf("erased data visible to the next update: %+v", v)
		}
		return nil
	})
	if got.ID != "v1" {
		t.Fatalf("record after erase has ID %q", got.ID)
	}
}

func testExpiry(t *testing.T, open opener) {
	s, clock := open(t)
	ctx := context.Background()
	mustUpdate(t, s, "v1", sample(clock.Now()))
	clock.Advance(ttl / 2)
	mustUpdate(t, s, "v1", func(v *store.Visitor) error { v.LastPageURL = "https://shop.example/p"; return nil })
	clock.Advance(ttl - time.Second) // 1.5 TTL after creation, TTL-1s after the last update
	mustGet(t, s, "v1")
	v, ok, err := s.FindByCartToken(ctx, "cart-1")
	wantVisitor(t, "cart token before expiry", v, ok, err, "v1")
	clock.Advance(time.Second)
	v, ok, err = s.Get(ctx, "v1")
	wantMissing(t, "Get at TTL after update", v, ok, err)
	v, ok, err = s.FindByClickID(ctx, store.ClickFBCLID, "IwAR0abc")
	wantMissing(t, "fbclid of expired record", v, ok, err)
	v, ok, err = s.FindByEmailHash(ctx, Hash("alice@example.com"))
	wantMissing(t, "email of expired record", v, ok, err)
	v, ok, err = s.FindByCartToken(ctx, "cart-1")
	wantMissing(t, "cart of expired record", v, ok, err)
}

func testNoResurrection(t *testing.T, open opener) {
	s, clock := open(t)
	ctx := context.Background()
	mustUpdate(t, s, "v1", sample(clock.Now()))
	clock.Advance(ttl)
	got := mustUpdate(t, s, "v1", func(v *store.Visitor) error {
		if len(v.Clicks) != 0 || v.User.IP != "" {
			return fmt.Errorf("expired data visible to the update: %+v", v)
		}
		v.CartTokens = []string{"cart-new"}
		return nil
	})
	if !got.Created.Equal(clock.Now()) {
		t.Fatalf("record after expiry Created %v; want %v", got.Created, clock.Now())
	}
	v, ok, err := s.FindByClickID(ctx, store.ClickFBCLID, "IwAR0abc")
	wantMissing(t, "fbclid of the expired record", v, ok, err)
	v, ok, err = s.FindByCartToken(ctx, "cart-1")
	wantMissing(t, "cart of the expired record", v, ok, err)
	v, ok, err = s.FindByCartToken(ctx, "cart-new")
	wantVisitor(t, "cart of the new record", v, ok, err, "v1")
}

func testMarkSeen(t *testing.T, open opener) {
	s, clock := open(t)
	ctx := context.Background()
	steps := []struct {
		advance time.Duration
		key     string
		ttl     time.Duration
		first   bool
	}{
		{0, "clickbank:R123", time.Hour, true},
		{0, "clickbank:R123", time.Hour, false},
		{0, "clickbank:R124", time.Hour, true},
		{59 * time.Minute, "clickbank:R123", time.Hour, false},
		{time.Minute, "clickbank:R123", time.Hour, true},
		// A repeat inside the window neither counts nor extends it.
		{0, "clickbank:R123", 48 * time.Hour, false},
		{time.Hour, "clickbank:R123", time.Hour, true},
		{0, "clickbank:R124", time.Hour, true},
	}
	for i, st := range steps {
		clock.Advance(st.advance)
		// Seen answers what MarkSeen is about to find, and claims nothing.
		for range 2 {
			if seen, err := s.Seen(ctx, st.key); err != nil || seen == st.first {
				t.Fatalf("step %d: Seen(%q) = %v, %v; want %v", i, st.key, seen, err, !st.first)
			}
		}
		first, err := s.MarkSeen(ctx, st.key, st.ttl)
		if err != nil || first != st.first {
			t.Fatalf("step %d: MarkSeen(%q, %v) = %v, %v; want %v", i, st.key, st.ttl, first, err, st.first)
		}
		if seen, err := s.Seen(ctx, st.key); err != nil || !seen {
			t.Fatalf("step %d: Seen(%q) after MarkSeen = %v, %v; want true", i, st.key, seen, err)
		}
	}
	if _, err := s.Seen(ctx, ""); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Seen(empty key) error = %v; want ErrInvalid", err)
	}
}

// testMarkSeenConcurrent: however concurrent callers are grouped into writes, each key has exactly
// one first sighting, the answer holds once the call returns, and a key is not confused with another.
func testMarkSeenConcurrent(t *testing.T, open opener) {
	s, _ := open(t)
	ctx := context.Background()
	const keys, callers = 50, 8
	var firsts [keys]atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range keys {
				k := (i + c*7) % keys // callers race on the same keys in different orders
				first, err := s.MarkSeen(ctx, fmt.Sprintf("conversion/Purchase/order-%d", k), time.Hour)
				if err != nil {
					errs <- err
					return
				}
				if first {
					firsts[k].Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for k := range keys {
		if n := firsts[k].Load(); n != 1 {
			t.Errorf("key %d: %d of %d concurrent callers were told first; want exactly 1", k, n, callers)
		}
		if first, err := s.MarkSeen(ctx, fmt.Sprintf("conversion/Purchase/order-%d", k), time.Hour); err != nil || first {
			t.Errorf("key %d after the race: MarkSeen = %v, %v; want false, nil", k, first, err)
		}
	}
}

func testConcurrent(t *testing.T, open opener) {
	s, _ := open(t)
	ctx := context.Background()
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				_, err := s.Update(ctx, "v1", func(v *store.Visitor) error {
					v.CartTokens = append(v.CartTokens, fmt.Sprintf("w%d-%d", w, i))
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
				if _, _, err := s.Get(ctx, "v1"); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	v := mustGet(t, s, "v1")
	if len(v.CartTokens) != workers*each {
		t.Fatalf("after %d concurrent updates the record has %d tokens (lost updates)", workers*each, len(v.CartTokens))
	}
	for w := range workers {
		tok := fmt.Sprintf("w%d-%d", w, each-1)
		got, ok, err := s.FindByCartToken(ctx, tok)
		wantVisitor(t, "FindByCartToken("+tok+")", got, ok, err, "v1")
	}
}

func testCancelled(t *testing.T, open opener) {
	s, _ := open(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := s.Get(ctx, "v1"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get error = %v; want context.Canceled", err)
	}
	if _, err := s.Update(ctx, "v1", func(*store.Visitor) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Update error = %v; want context.Canceled", err)
	}
	if _, err := s.MarkSeen(ctx, "k", time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("MarkSeen error = %v; want context.Canceled", err)
	}
	if _, ok, _ := s.Get(context.Background(), "v1"); ok {
		t.Error("update with a cancelled context wrote a record")
	}
}

// equal compares records with times compared as instants (storage may drop the monotonic reading or
// the location).
func equal(a, b store.Visitor) bool {
	if !a.Created.Equal(b.Created) || !a.Updated.Equal(b.Updated) || len(a.Clicks) != len(b.Clicks) {
		return false
	}
	for k, c := range a.Clicks {
		d, ok := b.Clicks[k]
		if !ok || c.Value != d.Value || !c.FirstSeen.Equal(d.FirstSeen) || !c.LastSeen.Equal(d.LastSeen) {
			return false
		}
	}
	a.Created, a.Updated, b.Created, b.Updated = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	a.Clicks, b.Clicks = nil, nil
	return reflect.DeepEqual(a, b)
}
