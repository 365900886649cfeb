package store_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/caddy-capi/caddy-capi/capi/store"
	"github.com/caddy-capi/caddy-capi/capi/store/storetest"
)

func openDB(t testing.TB, path string) *bbolt.DB {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	return db
}

func openBolt(t testing.TB, path string, opts store.Options) (*store.Bolt, *bbolt.DB) {
	t.Helper()
	db := openDB(t, path)
	s, err := store.OpenBolt(db, opts)
	if err != nil {
		db.Close()
		t.Fatalf("OpenBolt: %v", err)
	}
	t.Cleanup(func() {
		s.Close()
		db.Close()
	})
	return s, db
}

func TestBoltSuite(t *testing.T) {
	storetest.Run(t, func(t *testing.T, opts store.Options) store.Store {
		s, _ := openBolt(t, filepath.Join(t.TempDir(), "capi.db"), opts)
		return s
	})
}

func TestBoltSuiteWithoutCache(t *testing.T) {
	storetest.Run(t, func(t *testing.T, opts store.Options) store.Store {
		opts.CacheSize = -1
		s, _ := openBolt(t, filepath.Join(t.TempDir(), "capi.db"), opts)
		return s
	})
}

func TestOpenBoltRefusesNilDatabase(t *testing.T) {
	if _, err := store.OpenBolt(nil, store.Options{}); err == nil {
		t.Fatal("OpenBolt(nil) succeeded")
	}
}

func TestBoltReopenKeepsEverything(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "capi.db")
	clock := storetest.NewClock()
	opts := store.Options{TTL: time.Hour, Now: clock.Now}

	db := openDB(t, path)
	s, err := store.OpenBolt(db, opts)
	if err != nil {
		t.Fatal(err)
	}
	want, err := s.Update(ctx, "v1", func(v *store.Visitor) error {
		v.Clicks = map[string]store.Click{store.ClickGCLID: {Value: "gc", FirstSeen: clock.Now(), LastSeen: clock.Now()}}
		v.User.Meta.Emails = []string{storetest.Hash("a@example.com")}
		v.CartTokens = []string{"cart-1"}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := s.MarkSeen(ctx, "order:1", time.Hour); err != nil || !first {
		t.Fatalf("MarkSeen = %v, %v", first, err)
	}
	s.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s2, _ := openBolt(t, path, opts)
	got, ok, err := s2.Get(ctx, "v1")
	if err != nil || !ok || !got.Updated.Equal(want.Updated) || got.Clicks[store.ClickGCLID].Value != "gc" {
		t.Fatalf("after reopen Get = %+v, %v, %v", got, ok, err)
	}
	for name, find := range map[string]func() (store.Visitor, bool, error){
		"click": func() (store.Visitor, bool, error) { return s2.FindByClickID(ctx, store.ClickGCLID, "gc") },
		"email": func() (store.Visitor, bool, error) { return s2.FindByEmailHash(ctx, storetest.Hash("a@example.com")) },
		"cart":  func() (store.Visitor, bool, error) { return s2.FindByCartToken(ctx, "cart-1") },
	} {
		if v, ok, err := find(); err != nil || !ok || v.ID != "v1" {
			t.Errorf("after reopen find by %s = %q, %v, %v", name, v.ID, ok, err)
		}
	}
	if first, err := s2.MarkSeen(ctx, "order:1", time.Hour); err != nil || first {
		t.Fatalf("after reopen MarkSeen(seen key) = %v, %v; want false", first, err)
	}
}

func TestBoltSharesFileWithQueue(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capi.db")
	db := openDB(t, path)
	defer db.Close()
	err := db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("queue_meta"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("event"))
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.OpenBolt(db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var names []string
	err = db.View(func(tx *bbolt.Tx) error {
		if got := tx.Bucket([]byte("queue_meta")).Get([]byte("k")); string(got) != "event" {
			return fmt.Errorf("queue bucket changed: %q", got)
		}
		return tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
			names = append(names, string(name))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if n != "queue_meta" && !bytes.HasPrefix([]byte(n), []byte("visitor")) {
			t.Errorf("store created bucket %q outside the visitor prefix", n)
		}
	}
	if s.Close() != nil {
		t.Fatal("Close failed")
	}
	// Close leaves the shared handle open for the queue.
	if err := db.View(func(*bbolt.Tx) error { return nil }); err != nil {
		t.Fatalf("database closed by store Close: %v", err)
	}
}

// The file on disk must never hold personal data in plaintext: profile values arrive hashed, plaintext
// ones are refused, and idempotency keys are stored hashed.
func TestBoltFileHasNoPlaintextPersonalData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "capi.db")
	s, db := openBolt(t, path, store.Options{})
	emails := []string{"alice.plaintext@example.com", "bob.plaintext@example.org"}
	phones := []string{"+15557654321", "15557654321"}
	_, err := s.Update(ctx, "v1", func(v *store.Visitor) error {
		for _, e := range emails {
			v.User.Meta.Emails = append(v.User.Meta.Emails, storetest.Hash(e))
			v.User.TikTok.Emails = append(v.User.TikTok.Emails, storetest.Hash(e))
		}
		for _, p := range phones {
			v.User.Meta.Phones = append(v.User.Meta.Phones, storetest.Hash(p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Refused: would have written plaintext.
	if _, err := s.Update(ctx, "v2", func(v *store.Visitor) error {
		v.User.Google.Emails = []string{emails[1]}
		v.User.Google.Phones = []string{phones[0]}
		return nil
	}); err == nil {
		t.Fatal("plaintext email accepted")
	}
	if _, err := s.MarkSeen(ctx, "lead:"+emails[0], time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := db.Sync(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(storetest.Hash(emails[0]))) {
		t.Fatal("the hashed email is not in the file: the scan is not reading what was written")
	}
	for _, secret := range append(emails, phones...) {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("database file contains plaintext %q", secret)
		}
	}
}

func TestBoltSweepDeletesExpiredInBatches(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock()
	s, db := openBolt(t, filepath.Join(t.TempDir(), "capi.db"), store.Options{TTL: time.Hour, Now: clock.Now})
	const old = 600 // more than one sweep batch
	for i := range old {
		id := fmt.Sprintf("old%03d", i)
		if _, err := s.Update(ctx, id, func(v *store.Visitor) error {
			v.Clicks = map[string]store.Click{store.ClickFBCLID: {Value: "fb" + id}}
			v.CartTokens = []string{"cart-" + id}
			v.User.Meta.Emails = []string{storetest.Hash(id + "@example.com")}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.MarkSeen(ctx, "k"+id, 30*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(59 * time.Minute)
	if _, err := s.Update(ctx, "live", func(v *store.Visitor) error {
		v.CartTokens = []string{"cart-live"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MarkSeen(ctx, "live-key", time.Hour); err != nil {
		t.Fatal(err)
	}
	// Nothing is past its TTL yet except the idempotency keys.
	n, err := s.Sweep(ctx)
	if err != nil || n != old {
		t.Fatalf("first Sweep = %d, %v; want %d expired keys", n, err, old)
	}
	clock.Advance(time.Minute)
	n, err = s.Sweep(ctx)
	if err != nil || n != old {
		t.Fatalf("Sweep = %d, %v; want %d expired visitors", n, err, old)
	}
	if n, err := s.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("second Sweep = %d, %v; want 0", n, err)
	}
	counts := map[string]int{}
	err = db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			counts[string(name)] = b.Stats().KeyN
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{
		"visitor": 1, "visitor_by_cart": 1, "visitor_by_click": 0, "visitor_by_email": 0,
		"visitor_by_updated": 1, "visitor_seen": 1, "visitor_seen_by_expiry": 1,
	}
	for name, n := range want {
		if counts[name] != n {
			t.Errorf("bucket %s holds %d keys after sweep; want %d", name, counts[name], n)
		}
	}
	if _, ok, err := s.FindByCartToken(ctx, "cart-live"); err != nil || !ok {
		t.Fatalf("live visitor lost by sweep: %v, %v", ok, err)
	}
	if first, err := s.MarkSeen(ctx, "live-key", time.Hour); err != nil || first {
		t.Fatalf("live key lost by sweep: %v, %v", first, err)
	}
}

func TestBoltSweepStopsOnCancel(t *testing.T) {
	s, _ := openBolt(t, filepath.Join(t.TempDir(), "capi.db"), store.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Sweep(ctx); err == nil {
		t.Fatal("Sweep with a cancelled context returned no error")
	}
}

func benchStore(b *testing.B, cacheSize int) *store.Bolt {
	s, _ := openBolt(b, filepath.Join(b.TempDir(), "capi.db"), store.Options{CacheSize: cacheSize})
	ctx := context.Background()
	for i := range 1000 {
		if _, err := s.Update(ctx, fmt.Sprintf("visitor%04d", i), func(v *store.Visitor) error {
			v.User.IP = "203.0.113.7"
			v.User.UserAgent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"
			v.User.Meta.Emails = []string{storetest.Hash(fmt.Sprint(i))}
			v.Clicks = map[string]store.Click{store.ClickFBCLID: {Value: fmt.Sprintf("IwAR%04d", i)}}
			v.CartTokens = []string{fmt.Sprintf("cart%04d", i)}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

func benchGet(b *testing.B, s *store.Bolt) {
	ctx := context.Background()
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = fmt.Sprintf("visitor%04d", i)
	}
	for _, id := range ids { // fill the cache where there is one
		s.Get(ctx, id)
	}
	time.Sleep(10 * time.Millisecond) // let ristretto admit the buffered sets
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, ok, err := s.Get(ctx, ids[i%len(ids)]); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkBoltGetCached(b *testing.B)   { benchGet(b, benchStore(b, 0)) }
func BenchmarkBoltGetUncached(b *testing.B) { benchGet(b, benchStore(b, -1)) }

func BenchmarkBoltUpdate(b *testing.B) {
	s := benchStore(b, 0)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := s.Update(ctx, fmt.Sprintf("visitor%04d", i%1000), func(v *store.Visitor) error {
			v.LastPageURL = fmt.Sprintf("https://shop.example/p/%d", i)
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzBoltIndexes: whatever IDs, click values and tokens arrive, an accepted update is found under
// every value it carries, a refused one changes nothing, and erasing leaves no index entry behind.
func FuzzBoltIndexes(f *testing.F) {
	f.Add("visitor1", "IwAR0abc", "cart-1", uint8(0))
	f.Add("v\x00x", "a\x00b", "", uint8(4))
	f.Add("", "x", "t", uint8(2))
	db := openDB(f, filepath.Join(f.TempDir(), "fuzz.db"))
	f.Cleanup(func() { db.Close() })
	s, err := store.OpenBolt(db, store.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	kinds := []string{store.ClickFBCLID, store.ClickGCLID, store.ClickGBRAID, store.ClickWBRAID, store.ClickTTCLID}
	f.Fuzz(func(t *testing.T, id, click, token string, k uint8) {
		ctx := context.Background()
		kind := kinds[int(k)%len(kinds)]
		before, existed, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Update(ctx, id, func(v *store.Visitor) error {
			v.Clicks = map[string]store.Click{kind: {Value: click}}
			v.CartTokens = []string{token}
			return nil
		})
		if err != nil {
			after, ok, gerr := s.Get(ctx, id)
			if gerr != nil || ok != existed || ok && !after.Updated.Equal(before.Updated) {
				t.Fatalf("refused update (%v) changed the record", err)
			}
			return
		}
		if click != "" {
			if v, ok, err := s.FindByClickID(ctx, kind, click); err != nil || !ok || v.ID != id {
				t.Fatalf("FindByClickID(%q, %q) = %q, %v, %v; want %q", kind, click, v.ID, ok, err, id)
			}
		}
		if token != "" {
			if v, ok, err := s.FindByCartToken(ctx, token); err != nil || !ok || v.ID != id {
				t.Fatalf("FindByCartToken(%q) = %q, %v, %v; want %q", token, v.ID, ok, err, id)
			}
		}
		if err := s.Erase(ctx, id); err != nil {
			t.Fatal(err)
		}
		err = db.View(func(tx *bbolt.Tx) error {
			for _, name := range []string{"visitor_by_click", "visitor_by_cart", "visitor_by_email"} {
				if err := tx.Bucket([]byte(name)).ForEach(func(k, v []byte) error {
					if string(v) == id {
						return fmt.Errorf("%s still maps %q to the erased visitor", name, k)
					}
					return nil
				}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// A record damaged on disk neither stops Sweep nor outlives its TTL: Sweep deletes it by its key
// (its own ID field cannot be trusted) and goes on with the others.
func TestSweepDeletesADamagedRecordAndGoesOn(t *testing.T) {
	// Also: a key in an expiry index too short to be one the store writes does not stop it.
	clock := storetest.NewClock()
	s, db := openBolt(t, filepath.Join(t.TempDir(), "capi.db"), store.Options{TTL: time.Hour, Now: clock.Now})
	ctx := context.Background()
	for _, id := range []string{"damaged", "expired", "live"} {
		if id == "live" {
			clock.Advance(30 * time.Minute)
		}
		if _, err := s.Update(ctx, id, func(v *store.Visitor) error { v.User.IP = "203.0.113.9"; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	// The ID field of "damaged" now names "live", as one flipped byte could make it do, and the
	// expiry indexes hold a key too short to be one of theirs, which sorts first.
	if err := db.Update(func(tx *bbolt.Tx) error {
		for _, b := range []string{"visitor_by_updated", "visitor_seen_by_expiry"} {
			if err := tx.Bucket([]byte(b)).Put([]byte{1}, nil); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte("visitor")).Put([]byte("damaged"), []byte(`{"id":"live","user":{"ip":"203.0.113.9"}}`))
	}); err != nil {
		t.Fatal(err)
	}
	if _, found, err := s.Get(ctx, "damaged"); found || err != nil {
		t.Fatalf("Get of the damaged record = %v, %v; want absent", found, err)
	}
	clock.Advance(45 * time.Minute) // "damaged" and "expired" are past their TTL, "live" is not
	if n, err := s.Sweep(ctx); err != nil || n != 2 {
		t.Fatalf("Sweep = %d, %v; want the damaged and the expired record", n, err)
	}
	if _, found, err := s.Get(ctx, "live"); !found || err != nil {
		t.Fatalf("the live record went with the damaged one that named it: %v, %v", found, err)
	}
	if err := db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket([]byte("visitor")).Get([]byte("damaged")) != nil {
			t.Error("Sweep left the damaged record")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
