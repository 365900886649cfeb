package queue_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/queue"
	"github.com/caddy-capi/caddy-capi/capi/queue/queuetest"
)

// openAt opens the queue on the bbolt file at path, returning the error instead of failing.
func openAt(t *testing.T, path string, opts queue.Options) (*queue.Bolt, *bbolt.DB, error) {
	t.Helper()
	db := openDB(t, path)
	q, err := queue.OpenBolt(db, opts)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return q, db, nil
}

// leaseAll leases every due event of the platform and returns their IDs in lease order.
func leaseAll(t *testing.T, q queue.Queue, platformName string) []string {
	t.Helper()
	items, err := q.Lease(context.Background(), platformName, 1<<20)
	if err != nil {
		t.Fatalf("Lease: %v", err)
	}
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.Event.ID
	}
	return ids
}

// ackAll leases every due event of the platform and acknowledges it, as a delivery that succeeds.
func ackAll(t *testing.T, q queue.Queue, platformName string) {
	t.Helper()
	ctx := context.Background()
	items, err := q.Lease(ctx, platformName, 1<<20)
	if err != nil {
		t.Fatalf("Lease: %v", err)
	}
	ss := make([]queue.Settlement, len(items))
	for i, it := range items {
		ss[i] = queue.Settlement{Receipt: it.Receipt, Outcome: queue.Ack}
	}
	if err := q.Settle(ctx, platformName, ss...); err != nil {
		t.Fatalf("Settle: %v", err)
	}
}

// catchUp does now what the queue's background loops do in their time: a dedup flush, a checkpoint
// and, past the log's limit, a move of waiting events into bbolt.
func catchUp(t *testing.T, q *queue.Bolt) {
	t.Helper()
	if err := q.FlushDedup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := q.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if err := q.Evacuate(); err != nil {
		t.Fatal(err)
	}
}

// loggedOnly enqueues one event per ID, one call each, and abandons the queue as a crash would: the
// events exist only in the write-ahead log.
func loggedOnly(t *testing.T, path string, opts queue.Options, ids ...string) {
	t.Helper()
	q, db, err := openAt(t, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if n, err := q.Enqueue(context.Background(), "meta", queuetest.Event(id)); err != nil || n != 1 {
			t.Fatalf("Enqueue %s = %d, %v", id, n, err)
		}
	}
	q.Abandon()
	db.Close()
}

// lastSegment returns the path of the log segment written last and where its records end.
func lastSegment(t *testing.T, dbPath string) (string, int) {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(queue.LogDir(dbPath), "0*.wal"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no log segments: %v", err)
	}
	slices.Sort(segs)
	data, err := os.ReadFile(segs[len(segs)-1])
	if err != nil {
		t.Fatal(err)
	}
	return segs[len(segs)-1], len(bytes.TrimRight(data, "\x00"))
}

func TestReopenReplaysEverythingLogged(t *testing.T) {
	for _, closed := range []bool{true, false} {
		name := map[bool]string{true: "after Close", false: "after an abandoned queue"}[closed]
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "capi.db")
			q, db, err := openAt(t, path, queue.Options{})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			var want []string
			for i := range 30 {
				want = append(want, fmt.Sprint("ev-", i))
				if _, err := q.Enqueue(ctx, "meta", queuetest.Event(want[i])); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := q.Enqueue(ctx, "tiktok", queuetest.Event("t1"), queuetest.Event("t2")); err != nil {
				t.Fatal(err)
			}
			if st, _ := q.Stats(ctx); st["meta"].Depth != 30 || st["tiktok"].Depth != 2 {
				t.Fatalf("Stats before reopen = %+v: logged events are not counted", st)
			}
			if closed {
				if err := q.Close(); err != nil {
					t.Fatalf("Close = %v", err)
				}
				var inBolt int
				db.View(func(tx *bbolt.Tx) error {
					if b := tx.Bucket([]byte("queue.ready.meta")); b != nil {
						inBolt = b.Stats().KeyN
					}
					return nil
				})
				if inBolt != 0 {
					t.Fatalf("after Close bbolt holds %d meta events, want none: they wait in the log", inBolt)
				}
			} else {
				q.Abandon()
			}
			db.Close()

			q, db, err = openAt(t, path, queue.Options{})
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			defer db.Close()
			defer q.Close()
			if got := leaseAll(t, q, "meta"); !slices.Equal(got, want) {
				t.Fatalf("meta after reopen: %v", got)
			}
			if got := leaseAll(t, q, "tiktok"); !slices.Equal(got, []string{"t1", "t2"}) {
				t.Fatalf("tiktok after reopen: %v", got)
			}
			if st, _ := q.Stats(ctx); st["meta"].Depth != 30 || st["tiktok"].Depth != 2 {
				t.Fatalf("Stats after reopen = %+v", st)
			}
		})
	}
}

func TestDedupHoldsAcrossRestartWhileEventsAreOnlyInTheLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capi.db")
	loggedOnly(t, path, queue.Options{}, "a", "b")
	q := openBolt(t, path, queue.Options{})
	ctx := context.Background()
	if n, err := q.Enqueue(ctx, "meta", queuetest.Event("a"), queuetest.Event("b"), queuetest.Event("c")); err != nil || n != 1 {
		t.Fatalf("Enqueue a, b, c after restart = %d, %v; want only c new", n, err)
	}
	if got := leaseAll(t, q, "meta"); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("leased %v", got)
	}
}

func TestTornLogTailReopensWithEveryCompleteEvent(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, seg string, end int)
		want   []string
	}{
		{"last record cut mid-way", func(t *testing.T, seg string, end int) {
			if err := os.Truncate(seg, int64(end-40)); err != nil {
				t.Fatal(err)
			}
		}, []string{"a", "b"}},
		{"garbage after the last record", func(t *testing.T, seg string, end int) {
			garbage := make([]byte, 512)
			for i := range garbage {
				garbage[i] = byte(rand.IntN(256))
			}
			writeFileAt(t, seg, end+64, garbage)
		}, []string{"a", "b", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "capi.db")
			loggedOnly(t, path, queue.Options{}, "a", "b", "c")
			seg, end := lastSegment(t, path)
			tt.damage(t, seg, end)
			q := openBolt(t, path, queue.Options{})
			if got := leaseAll(t, q, "meta"); !slices.Equal(got, tt.want) {
				t.Fatalf("leased %v, want %v", got, tt.want)
			}
			// The discarded event was never acknowledged: enqueueing it again stores it.
			if n, err := q.Enqueue(context.Background(), "meta", queuetest.Event("c")); err != nil || n != 3-len(tt.want) {
				t.Fatalf("Enqueue c again = %d, %v", n, err)
			}
		})
	}
}

// TestDamagedAcknowledgedLogRecordIsRefused: a record followed by later ones was acknowledged, so
// its damage is not a crash's. OpenBolt refuses to start (rather than drop acknowledged events)
// with an error naming the segment and offset, and the files are left as they were.
func TestDamagedAcknowledgedLogRecordIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capi.db")
	loggedOnly(t, path, queue.Options{}, "a", "b", "c")
	seg, _ := lastSegment(t, path)
	before, _ := os.ReadFile(seg)
	writeFileAt(t, seg, 40, []byte{before[40] ^ 0x01}) // inside the first record's payload
	_, _, err := openAt(t, path, queue.Options{})
	var corrupt *queue.CorruptLogError
	if !errors.As(err, &corrupt) {
		t.Fatalf("OpenBolt = %v, want a CorruptLogError", err)
	}
	if !strings.Contains(err.Error(), filepath.Base(seg)) || !strings.Contains(err.Error(), "offset 0") {
		t.Fatalf("the error does not name the segment and offset: %v", err)
	}
	// Fixing the byte (restoring the file) brings every event back.
	writeFileAt(t, seg, 40, before[40:41])
	q := openBolt(t, path, queue.Options{})
	if got := leaseAll(t, q, "meta"); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("after restoring the file leased %v", got)
	}
}

func writeFileAt(t *testing.T, path string, off int, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, int64(off)); err != nil {
		t.Fatal(err)
	}
}

func TestLogSegmentsRollOverAndAreRecycled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capi.db")
	opts := queue.Options{LogSegmentSize: 16 << 10} // about 16 events a segment
	q, db, err := openAt(t, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	want := idRange("ev", 0, 400)
	enqueueEachOn(t, q, "meta", want...)
	// Delivered events leave the log's records to their dedup keys, kept until they are flushed.
	items, err := q.Lease(ctx, "meta", 1000)
	if err != nil || len(items) != len(want) {
		t.Fatalf("leased %d of %d: %v", len(items), len(want), err)
	}
	for i, it := range items {
		if it.Event.ID != want[i] {
			t.Fatalf("leased %s at %d, want %s", it.Event.ID, i, want[i])
		}
	}
	var acks []queue.Settlement
	for _, it := range items[:300] {
		acks = append(acks, queue.Settlement{Receipt: it.Receipt, Outcome: queue.Ack})
	}
	if err := q.Settle(ctx, "meta", acks...); err != nil {
		t.Fatal(err)
	}
	if err := q.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	first := filepath.Join(queue.LogDir(path), fmt.Sprintf("%020d.wal", 1))
	if _, err := os.Stat(first); err != nil {
		t.Fatalf("before any dedup flush the log released its first segment (%v): it dropped records whose keys are only in memory", err)
	}
	files, _ := filepath.Glob(filepath.Join(queue.LogDir(path), "*.wal"))
	if err := q.FlushDedup(ctx); err != nil {
		t.Fatal(err)
	}
	before := len(files)
	// About 16 events a segment: the 100 events not delivered keep 7 or 8 segments.
	live := q.Segments()
	if live > 10 {
		t.Fatalf("%d log segments (%d files before the flush) after 300 of 400 events were delivered and their keys flushed: delivered segments are not released", live, before)
	}
	files, _ = filepath.Glob(filepath.Join(queue.LogDir(path), "*.wal"))
	if len(files) > live+queue.LogSpares+1 {
		t.Fatalf("%d log files for %d live segments: released segments are kept beyond the %d spares", len(files), live, queue.LogSpares)
	}
	q.Close()
	db.Close()
	q = openBolt(t, path, opts)
	if got := leaseAll(t, q, "meta"); !slices.Equal(got, want[300:]) {
		t.Fatalf("after reopen leased %d events, want the %d not delivered", len(got), len(want)-300)
	}
}

// TestCrashLosesNothingAcknowledged kills a process enqueueing from many goroutines with SIGKILL,
// three times over the same files. The child prints each event ID once its Enqueue has returned 1;
// after every kill, each printed ID must be in the queue exactly once, and enqueueing any of them
// again must be refused. Each round re-enqueues the IDs of the rounds before, so an ID printed twice
// would be dedup failing across a crash. The child flushes its dedup keys every few hundred, so the
// kills also land in flushes, and keys are found in the log, in memory and in the index.
func TestCrashLosesNothingAcknowledged(t *testing.T) {
	if dir := os.Getenv("CAPI_QUEUE_CRASH_DIR"); dir != "" {
		crashChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("kills child processes")
	}
	dir := t.TempDir()
	acked := make(map[string]int)
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashLosesNothingAcknowledged$")
		cmd.Env = append(os.Environ(), "CAPI_QUEUE_CRASH_DIR="+dir)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1<<16)
		go func() {
			defer close(lines)
			s := bufio.NewScanner(out)
			for s.Scan() {
				lines <- s.Text()
			}
		}()
		var got []string
		deadline := time.After(20 * time.Second)
	wait:
		for len(got) < 2000*(round+1) {
			select {
			case l, ok := <-lines:
				if !ok {
					break wait
				}
				got = append(got, l)
			case <-deadline:
				break wait
			}
		}
		time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond)
		cmd.Process.Kill()
		for l := range lines {
			got = append(got, l)
		}
		cmd.Wait()
		for _, id := range got {
			acked[id]++
		}
		if len(got) == 0 {
			t.Fatalf("round %d: the child acknowledged nothing", round)
		}

		q, db, err := openAt(t, filepath.Join(dir, "capi.db"), queue.Options{})
		if err != nil {
			t.Fatalf("round %d: reopen after kill -9: %v", round, err)
		}
		stored := make(map[string]int)
		for _, id := range leaseAll(t, q, "meta") {
			stored[id]++
		}
		st, _ := q.Stats(context.Background())
		ids := make([]event.Event, 0, len(acked))
		for id := range acked {
			ids = append(ids, queuetest.Event(id))
		}
		for chunk := range slices.Chunk(ids, 1000) {
			if n, err := q.Enqueue(context.Background(), "meta", chunk...); err != nil || n != 0 {
				t.Fatalf("round %d: re-enqueueing %d acknowledged IDs after the kill stored %d (%v): dedup lost keys in the crash", round, len(chunk), n, err)
			}
		}
		q.Close()
		db.Close()
		for id, n := range acked {
			if n != 1 {
				t.Fatalf("round %d: %s acknowledged %d times: dedup failed across a crash", round, id, n)
			}
			if stored[id] != 1 {
				t.Fatalf("round %d: acknowledged %s is stored %d times", round, id, stored[id])
			}
		}
		for id, n := range stored {
			if n != 1 {
				t.Fatalf("round %d: %s stored %d times", round, id, n)
			}
		}
		if st["meta"].Depth != len(stored) {
			t.Fatalf("round %d: depth %d, %d events stored", round, st["meta"].Depth, len(stored))
		}
		t.Logf("round %d: %d acknowledged in this run, %d stored (%d never acknowledged)", round, len(got), len(stored), len(stored)-len(acked))
	}
}

// crashChild enqueues until it is killed, printing each new event's ID once Enqueue returned.
func crashChild(dir string) {
	db, err := bbolt.Open(filepath.Join(dir, "capi.db"), 0o600, queue.BoltOptions(10*time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// Small segments, so the kill also lands in rollovers and recycling.
	q, err := queue.OpenBolt(db, queue.Options{LogSegmentSize: 256 << 10, DedupFlushKeys: 300})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("p%02d-%06d", w, i)
				n, err := q.Enqueue(context.Background(), "meta", queuetest.Event(id))
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				if n == 1 {
					mu.Lock()
					os.Stdout.WriteString(id + "\n")
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
}

// Settlements of events leased from the log survive a restart exactly: a rescheduled event comes
// back once, when due, with its attempts; a buried one is a dead letter once; an acknowledged one
// and one settled out of order are gone; the one never settled is due again.
func TestSettlementsOfLogResidentEventsSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capi.db")
	clock := queuetest.NewClock(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))
	opts := queue.Options{Now: clock.Now}
	q, db, err := openAt(t, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := q.Enqueue(ctx, "meta", queuetest.Event("a"), queuetest.Event("b"), queuetest.Event("c"), queuetest.Event("d"), queuetest.Event("e")); err != nil {
		t.Fatal(err)
	}
	items, err := q.Lease(ctx, "meta", 10)
	if err != nil || len(items) != 5 {
		t.Fatalf("Lease = %d, %v", len(items), err)
	}
	// a stays leased and unsettled: everything after it is settled out of order.
	err = q.Settle(ctx, "meta",
		queue.Settlement{Receipt: items[1].Receipt, Outcome: queue.Reschedule, NotBefore: clock.Now().Add(time.Minute), Attempts: 2, Reason: "503"},
		queue.Settlement{Receipt: items[2].Receipt, Outcome: queue.Bury, Attempts: 1, Reason: "Invalid parameter"},
		queue.Settlement{Receipt: items[3].Receipt, Outcome: queue.Ack},
	)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Settle(ctx, "meta", queue.Settlement{Receipt: items[4].Receipt, Outcome: queue.Ack}); err != nil {
		t.Fatal(err)
	}
	q.Abandon()
	db.Close()

	q, db, err = openAt(t, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	defer q.Close()
	if st, _ := q.Stats(ctx); st["meta"].Depth != 2 || st["meta"].DeadLetters != 1 {
		t.Fatalf("after reopen stats = %+v, want depth 2 (a, and b rescheduled), 1 dead letter", st["meta"])
	}
	if got := leaseAll(t, q, "meta"); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after reopen leased %v, want [a]: settled events came back from the log", got)
	}
	clock.Advance(time.Minute)
	got, err := q.Lease(ctx, "meta", 10)
	if err != nil || len(got) != 1 || got[0].Event.ID != "b" || got[0].Attempts != 2 || got[0].LastReason != "503" {
		t.Fatalf("after its not-before leased %+v, %v; want b once with 2 attempts", got, err)
	}
	dead, err := q.DeadLetters(ctx, "meta", "", 10)
	if err != nil || len(dead) != 1 || dead[0].Event.ID != "c" || dead[0].Reason != "Invalid parameter" {
		t.Fatalf("dead letters = %+v, %v", dead, err)
	}
}

// A platform that nobody delivers for (not configured any more, or a worker stuck) must not keep
// the log growing: past the limit its oldest waiting events move into bbolt, in order and intact,
// and the log is released. An event leased meanwhile (a partial batch waiting for its flush
// interval) moves too and stays leased: not leased again, and settled under the receipt its holder
// has.
func TestWaitingEventsMoveOutOfALogPastItsLimit(t *testing.T) {
	queue.SetMaxLogSegments(t, 4)
	path := filepath.Join(t.TempDir(), "capi.db")
	opts := queue.Options{LogSegmentSize: 16 << 10} // about 16 events a segment
	q, db, err := openAt(t, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	want := idRange("ev", 0, 200)
	enqueueEachOn(t, q, "tiktok", want...)
	// The first event is being sent.
	held, err := q.Lease(ctx, "tiktok", 1)
	if err != nil || len(held) != 1 {
		t.Fatalf("Lease = %d, %v", len(held), err)
	}
	if err := q.FlushDedup(ctx); err != nil {
		t.Fatal(err)
	}
	before := q.Segments()
	if err := q.Evacuate(); err != nil {
		t.Fatal(err)
	}
	if n := q.Stored("tiktok"); n < 100 {
		t.Fatalf("%d events moved out of a log of %d segments with a limit of 4", n, before)
	}
	if n := q.Segments(); n > 4 {
		t.Fatalf("the log holds %d segments after the move (%d before), limit 4", n, before)
	}
	if st, _ := q.Stats(ctx); st["tiktok"].Depth != 200 || st["tiktok"].Leased != 1 {
		t.Fatalf("stats after the move = %+v, want depth 200 with 1 leased", st["tiktok"])
	}
	// The moved copy of the leased event is not leased again.
	items, err := q.Lease(ctx, "tiktok", 1000)
	if err != nil || len(items) != 199 || items[0].Event.ID != want[1] {
		t.Fatalf("leased %d (first %v) besides the held event, %v; want the 199 others", len(items), ids(items), err)
	}
	var release []string
	for _, it := range items {
		release = append(release, it.Receipt)
	}
	q.Release("tiktok", release...)
	if err := q.Settle(ctx, "tiktok", queue.Settlement{Receipt: held[0].Receipt, Outcome: queue.Ack}); err != nil {
		t.Fatal(err)
	}
	if st, _ := q.Stats(ctx); st["tiktok"].Depth != 199 || st["tiktok"].Leased != 0 {
		t.Fatalf("stats after the held event was acknowledged = %+v, want depth 199, none leased", st["tiktok"])
	}
	q.Close()
	db.Close()
	q = openBolt(t, path, opts)
	items, err = q.Lease(ctx, "tiktok", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 199 {
		t.Fatalf("leased %d after the move and a reopen, want 199", len(items))
	}
	for i, it := range items {
		if it.Event.ID != want[i+1] || it.Attempts != 0 || !reflect.DeepEqual(it.Event, queuetest.Event(want[i+1])) {
			t.Fatalf("item %d after the move and a reopen: %s with %d attempts, want %s intact", i, it.Event.ID, it.Attempts, want[i+1])
		}
	}
}

func ids(items []queue.Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.Event.ID
	}
	return out
}

// A partition with nothing waiting does not hold the log back, even if it never reads again: the
// checkpoint moves it past what the other platforms logged.
func TestAnIdlePlatformDoesNotHoldTheLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capi.db")
	opts := queue.Options{LogSegmentSize: 16 << 10}
	q, db, err := openAt(t, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	defer q.Close()
	ctx := context.Background()
	if _, err := q.Enqueue(ctx, "google", queuetest.Event("g")); err != nil {
		t.Fatal(err)
	}
	ackAll(t, q, "google")
	enqueueEachOn(t, q, "meta", idRange("m", 0, 200)...)
	ackAll(t, q, "meta")
	catchUp(t, q)
	if n := q.Segments(); n > 2 {
		t.Fatalf("%d log segments with every event delivered: an idle platform holds the log", n)
	}
	if n, err := q.Enqueue(ctx, "google", queuetest.Event("g2")); err != nil || n != 1 {
		t.Fatalf("Enqueue g2 = %d, %v", n, err)
	}
	if got := leaseAll(t, q, "google"); !slices.Equal(got, []string{"g2"}) {
		t.Fatalf("google leased %v after the checkpoint moved it, want [g2]", got)
	}
}

// One event of a quiet platform held for its batch's flush interval must not hold back the log
// that a busy platform, delivered as fast as it comes, writes meanwhile.
func TestAHeldLeaseOfAQuietPlatformDoesNotPinTheLog(t *testing.T) {
	queue.SetMaxLogSegments(t, 4)
	path := filepath.Join(t.TempDir(), "capi.db")
	q := openBolt(t, path, queue.Options{LogSegmentSize: 16 << 10})
	ctx := context.Background()
	if _, err := q.Enqueue(ctx, "google", queuetest.Event("g")); err != nil {
		t.Fatal(err)
	}
	held, err := q.Lease(ctx, "google", 100)
	if err != nil || len(held) != 1 {
		t.Fatalf("Lease = %d, %v", len(held), err)
	}
	for round := range 5 {
		enqueueEachOn(t, q, "meta", idRange(fmt.Sprint("m", round), 0, 200)...)
		ackAll(t, q, "meta")
		catchUp(t, q)
		if n := q.Segments(); n > 4 {
			t.Fatalf("after %d delivered meta events, %d log segments with a limit of 4: google's held event pins the log", 200*(round+1), n)
		}
	}
	if err := q.Settle(ctx, "google", queue.Settlement{Receipt: held[0].Receipt, Outcome: queue.Ack}); err != nil {
		t.Fatal(err)
	}
	if st, _ := q.Stats(ctx); st["google"].Depth != 0 || st["google"].Leased != 0 {
		t.Fatalf("google after its held event was acknowledged: %+v", st["google"])
	}
	if got := leaseAll(t, q, "google"); len(got) != 0 {
		t.Fatalf("google leased %v after its only event was acknowledged", got)
	}
}
