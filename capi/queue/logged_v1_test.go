package queue

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/internal/wal"
)

// A log left by a version that logged the events' JSON (batch version 1), say by a crash just
// before an upgrade, is replayed by this one: its events are queued once, as enqueued, and their
// keys are duplicates afterwards.
func TestLogOfVersion1BatchesIsReplayed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capi.db")
	enqueued := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC).UnixNano()
	log, err := wal.Open(LogDir(path), 0, func(uint64, []byte) error { return nil }, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"v1-a", "v1-b"} {
		data, err := json.Marshal(event.Event{Name: "Purchase", ID: id, Time: time.Unix(0, enqueued).UTC(), ActionSource: event.ActionWebsite})
		if err != nil {
			t.Fatal(err)
		}
		b := loggedBatch{platform: "meta", enqueued: enqueued, keys: [][]byte{[]byte(dedupKey("meta", "Purchase", id))}, events: [][]byte{data}}
		if _, err := log.Append(encodeLoggedV1(b)); err != nil {
			t.Fatal(err)
		}
	}
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}

	db, err := bbolt.Open(path, 0o600, BoltOptions(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q, err := OpenBolt(db, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	items, err := q.Lease(ctx, "meta", 10)
	if err != nil || len(items) != 2 {
		t.Fatalf("lease after replay: %d items, %v; want the 2 logged", len(items), err)
	}
	for i, want := range []string{"v1-a", "v1-b"} {
		if items[i].Event.ID != want || items[i].Enqueued.UnixNano() != enqueued || items[i].Attempts != 0 {
			t.Errorf("item %d = %s enqueued %v attempts %d; want %s as logged", i, items[i].Event.ID, items[i].Enqueued, items[i].Attempts, want)
		}
	}
	n, err := q.Enqueue(ctx, "meta", event.Event{Name: "Purchase", ID: "v1-a"}, event.Event{Name: "Purchase", ID: "v1-b"})
	if err != nil || n != 0 {
		t.Fatalf("Enqueue of the replayed IDs = %d, %v; want duplicates", n, err)
	}
}
