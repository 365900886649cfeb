package caddymodule

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/caddy-capi/caddy-capi/capi/conversion"
)

// installKey returns the event ID key of an open storage, as the edge and the postbacks get it.
func installKey(t testing.TB, s *sharedStorage) conversion.IDKey {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	key, err := s.eventIDKey(ctx)
	if err != nil {
		t.Fatalf("event ID key: %v", err)
	}
	return key
}

// openTestStorage opens a shared storage on path as the first App.Start does, and closes it when the
// test ends unless the test closed it first.
func openTestStorage(t testing.TB, path string) *sharedStorage {
	t.Helper()
	s := newSharedStorage(path)
	if err := s.open(time.Second, time.Hour); err != nil {
		t.Fatalf("opening %s: %v", path, err)
	}
	t.Cleanup(func() { s.Destruct() })
	return s
}

// TestEventIDKeySurvivesARestart: after the storage is closed and opened again (a restart, an
// upgrade), an order's event ID is the one it had before, so a webhook after the restart
// deduplicates against the thank-you page before it.
func TestEventIDKeySurvivesARestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capi.db")
	first := openTestStorage(t, path)
	key := installKey(t, first)
	if key.IsZero() {
		t.Fatal("the storage opened with the zero key")
	}
	before := conversion.EventID(key, "Purchase", "1001")
	if err := first.Destruct(); err != nil {
		t.Fatal(err)
	}
	if _, err := first.eventIDKey(context.Background()); err == nil {
		t.Error("a released storage still hands out its key")
	}

	again := openTestStorage(t, path)
	if after := conversion.EventID(installKey(t, again), "Purchase", "1001"); after != before {
		t.Fatalf("order 1001's Purchase was %s before the restart and %s after", before, after)
	}
	if err := again.Destruct(); err != nil {
		t.Fatal(err)
	}

	// The key is where the storage says it keeps it, in its own bucket, as 32 raw bytes.
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(installBucket)
		if b == nil || len(b.Get(eventIDKeyName)) != conversion.IDKeySize || string(b.Get(eventIDKeyName)) != string(key[:]) {
			t.Errorf("bucket %s key %s does not hold the installation's key", installBucket, eventIDKeyName)
		}
		return nil
	})
}

// TestEventIDKeyDiffersBetweenStorages: two installations draw their own keys, so one shop's order
// numbers say nothing about another's event IDs.
func TestEventIDKeyDiffersBetweenStorages(t *testing.T) {
	a := openTestStorage(t, filepath.Join(t.TempDir(), "a.db"))
	b := openTestStorage(t, filepath.Join(t.TempDir(), "b.db"))
	ka, kb := installKey(t, a), installKey(t, b)
	if ka == kb {
		t.Fatal("two storages drew the same key")
	}
	if conversion.EventID(ka, "Purchase", "1001") == conversion.EventID(kb, "Purchase", "1001") {
		t.Fatal("two installations give order 1001 the same event ID")
	}
}

// TestEventIDKeyOfTheWrongSizeIsRefused: a damaged key stops the storage from opening with an error
// that names the file, and is left in place: a silently redrawn key would give every order in
// flight a second event ID.
func TestEventIDKeyOfTheWrongSizeIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capi.db")
	damaged := []byte("0123456789abcdef")
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(installBucket)
		if err != nil {
			return err
		}
		return b.Put(eventIDKeyName, damaged)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	s := newSharedStorage(path)
	err = s.open(time.Second, time.Hour)
	if err == nil {
		s.Destruct()
		t.Fatal("opened a storage whose event ID key is 16 bytes")
	}
	if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "event ID key") ||
		strings.Contains(msg, string(damaged)) || strings.Contains(msg, hex.EncodeToString(damaged)) {
		t.Errorf("error %q should name the file and the key, and never show its bytes", msg)
	}
	s.Destruct()
	if got := storedKeyBytes(t, path); got != string(damaged) {
		t.Errorf("the damaged key was replaced by %d bytes", len(got))
	}
}

// storedKeyBytes returns the bytes stored as the event ID key in a closed storage file.
func storedKeyBytes(t testing.TB, path string) string {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v string
	db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(installBucket); b != nil {
			v = string(b.Get(eventIDKeyName))
		}
		return nil
	})
	return v
}

// TestStorageStatusNeverShowsTheEventIDKey: the admin API's view of a storage carries no trace of
// the key, in any encoding.
func TestStorageStatusNeverShowsTheEventIDKey(t *testing.T) {
	s := openTestStorage(t, filepath.Join(t.TempDir(), "capi.db"))
	key := installKey(t, s)
	st, err := s.status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, enc := range []string{hex.EncodeToString(key[:]), strings.ToUpper(hex.EncodeToString(key[:]))} {
		if strings.Contains(string(out), enc) {
			t.Fatalf("storage status shows the event ID key: %s", out)
		}
	}
	keyJSON, _ := json.Marshal(key[:]) // base64, as a []byte field would be encoded
	if strings.Contains(string(out), strings.Trim(string(keyJSON), `"`)) {
		t.Fatalf("storage status shows the event ID key in base64: %s", out)
	}
}
