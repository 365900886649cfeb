package queue

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"path/filepath"
	"strings"
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
	db := writeLog(t, path,
		encodeLoggedV1(purchaseBatch(t, "v1-a", enqueued)),
		encodeLoggedV1(purchaseBatch(t, "v1-b", enqueued)))
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

// Files left by the design before events waited in the log (an applier copied each logged event
// into the ready bucket and moved queue.log/applied past its record) open as they are: the events
// in the ready bucket and those logged beyond the applied record are all leased once, oldest first,
// counted once, and gone once acknowledged, across a reopen.
func TestFilesOfTheApplierDesignOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capi.db")
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC).UnixNano()
	batch := func(id string, at int64) loggedBatch { return purchaseBatch(t, id, at) }
	// Records 1 and 2 were applied (their events are in the ready bucket, their keys flushed);
	// record 3 was logged but not applied when the old version stopped.
	db := writeLog(t, path, batch("old-a", t0).encode(), batch("old-b", t0+1).encode(), batch("old-c", t0+2).encode())
	err := db.Update(func(tx *bbolt.Tx) error {
		ready, err := tx.CreateBucketIfNotExists([]byte(readyPrefix + "meta"))
		if err != nil {
			return err
		}
		index, err := tx.CreateBucketIfNotExists(dedupBucket)
		if err != nil {
			return err
		}
		for i, id := range []string{"old-a", "old-b"} {
			b := batch(id, t0+int64(i))
			if err := ready.Put(readyKey(b.enqueued, uint64(i+1)), record{enqueued: b.enqueued, event: b.events[0]}.encode()); err != nil {
				return err
			}
			if err := index.Put(b.keys[0], binary.BigEndian.AppendUint64(nil, uint64(b.enqueued+int64(DedupWindow)))); err != nil {
				return err
			}
		}
		if _, err := ready.NextSequence(); err != nil {
			return err
		}
		logged, err := tx.CreateBucketIfNotExists(logBucket)
		if err != nil {
			return err
		}
		if err := logged.Put(appliedKey, binary.BigEndian.AppendUint64(nil, 2)); err != nil {
			return err
		}
		return logged.Put(dedupFlushedKey, binary.BigEndian.AppendUint64(nil, 2))
	})
	if err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return time.Unix(0, t0).Add(time.Minute) }
	q, err := OpenBolt(db, Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if st, _ := q.Stats(ctx); st["meta"].Depth != 3 {
		t.Fatalf("depth %d after the upgrade, want 3", st["meta"].Depth)
	}
	items, err := q.Lease(ctx, "meta", 10)
	if err != nil || len(items) != 3 {
		t.Fatalf("Lease = %d items, %v; want 3", len(items), err)
	}
	var acks []Settlement
	for i, want := range []string{"old-a", "old-b", "old-c"} {
		if items[i].Event.ID != want || items[i].Enqueued.UnixNano() != t0+int64(i) {
			t.Fatalf("item %d = %s enqueued %v, want %s", i, items[i].Event.ID, items[i].Enqueued, want)
		}
		acks = append(acks, Settlement{Receipt: items[i].Receipt, Outcome: Ack})
	}
	if n, err := q.Enqueue(ctx, "meta", event.Event{Name: "Purchase", ID: "old-a"}, event.Event{Name: "Purchase", ID: "old-c"}); err != nil || n != 0 {
		t.Fatalf("Enqueue of the old IDs = %d, %v; want duplicates", n, err)
	}
	if err := q.Settle(ctx, "meta", acks...); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q, err = OpenBolt(db, Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if items, err := q.Lease(ctx, "meta", 10); err != nil || len(items) != 0 {
		t.Fatalf("after acknowledging everything and a reopen, leased %d, %v", len(items), err)
	}
	if st, _ := q.Stats(ctx); st["meta"].Depth != 0 {
		t.Fatalf("depth %d after acknowledging everything and a reopen", st["meta"].Depth)
	}
}

// purchaseBatch is a logged batch of one Purchase for meta, enqueued at the given time.
func purchaseBatch(t *testing.T, id string, enqueued int64) loggedBatch {
	t.Helper()
	data, err := json.Marshal(event.Event{Name: "Purchase", ID: id, Time: time.Unix(0, enqueued).UTC(), ActionSource: event.ActionWebsite})
	if err != nil {
		t.Fatal(err)
	}
	return loggedBatch{platform: "meta", enqueued: enqueued, keys: [][]byte{[]byte(dedupKey("meta", "Purchase", id))}, events: [][]byte{data}}
}

// writeLog writes records to the log of the queue on the bbolt file at path, as an older version
// left them, and opens that file.
func writeLog(t *testing.T, path string, records ...[]byte) *bbolt.DB {
	t.Helper()
	log, err := wal.Open(LogDir(path), 0, func(uint64, []byte) error { return nil }, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range records {
		if _, err := log.Append(r); err != nil {
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
	t.Cleanup(func() { db.Close() })
	return db
}

// A stored event whose bytes are damaged (its JSON, or its record's header) does not stop the
// partition: Lease hands out the others and moves it to the dead letters with a reason saying so,
// where it is listed and can be dropped.
func TestADamagedStoredEventBecomesADeadLetter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capi.db")
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC).UnixNano()
	db := writeLog(t, path, purchaseBatch(t, "logged", t0+3).encode())
	err := db.Update(func(tx *bbolt.Tx) error {
		ready, err := tx.CreateBucketIfNotExists([]byte(readyPrefix + "meta"))
		if err != nil {
			return err
		}
		good := purchaseBatch(t, "stored", t0)
		if err := ready.Put(readyKey(t0, 1), record{enqueued: t0, event: good.events[0]}.encode()); err != nil {
			return err
		}
		if err := ready.Put(readyKey(t0+1, 2), record{enqueued: t0 + 1, event: []byte(`{"event_name":`)}.encode()); err != nil {
			return err
		}
		_, err = ready.NextSequence()
		if err == nil {
			_, err = ready.NextSequence()
		}
		if err != nil {
			return err
		}
		return ready.Put(readyKey(t0+2, 3), []byte{9, 9, 9})
	})
	if err != nil {
		t.Fatal(err)
	}
	q, err := OpenBolt(db, Options{Now: func() time.Time { return time.Unix(0, t0).Add(time.Minute) }})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	items, err := q.Lease(ctx, "meta", 10)
	if err != nil || len(items) != 2 || items[0].Event.ID != "stored" || items[1].Event.ID != "logged" {
		t.Fatalf("Lease over two damaged events = %v, %v; want the two intact ones", items, err)
	}
	st, _ := q.Stats(ctx)
	if st["meta"].Depth != 2 || st["meta"].DeadLetters != 2 || st["meta"].Leased != 2 {
		t.Fatalf("stats = %+v, want depth 2, 2 dead letters, 2 leased", st["meta"])
	}
	dead, err := q.DeadLetters(ctx, "meta", "", 10)
	if err != nil || len(dead) != 2 {
		t.Fatalf("DeadLetters = %d, %v", len(dead), err)
	}
	for _, d := range dead {
		if !strings.HasPrefix(d.Reason, damagedReason) {
			t.Errorf("dead letter %s has reason %q, want it to say the stored event is damaged", d.ID, d.Reason)
		}
	}
	if n, err := q.Drop(ctx, "meta"); err != nil || n != 2 {
		t.Fatalf("Drop = %d, %v", n, err)
	}
}
