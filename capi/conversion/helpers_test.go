package conversion

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/caddy-capi/caddy-capi/capi/store"
)

// t0 is the tests' clock.
var t0 = time.Date(2026, 11, 20, 15, 4, 5, 0, time.UTC)

func fixedNow() time.Time { return t0 }

// testIDKey is the tests' installation key: the bytes 0x00 to 0x1f, the key of the golden vectors
// in testdata/event_ids.golden.json.
var testIDKey = func() IDKey {
	var k IDKey
	for i := range k {
		k[i] = byte(i)
	}
	return k
}()

// newStore opens the real bbolt visitor store on a file in a temporary directory.
func newStore(t testing.TB) store.Store {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "capi.db"), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.OpenBolt(db, store.Options{Now: fixedNow})
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		db.Close()
	})
	return s
}

// put writes a visitor record through Update, as the handler does.
func put(t testing.TB, st store.Store, id string, fn func(*store.Visitor)) store.Visitor {
	t.Helper()
	v, err := st.Update(context.Background(), id, func(v *store.Visitor) error {
		fn(v)
		return nil
	})
	if err != nil {
		t.Fatalf("store visitor %s: %v", id, err)
	}
	return v
}

func fmtEvent(e any) string {
	b, _ := json.Marshal(e)
	return string(b)
}
