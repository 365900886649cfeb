package queue

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"go.etcd.io/bbolt"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/internal/boltcommit"
)

// Bucket names. Every bucket of the queue starts with "queue" because the bbolt file is shared with
// the visitor store, whose buckets start with "visitor".
const (
	readyPrefix = "queue.ready." // + platform: (not-before, seq) → record
	deadPrefix  = "queue.dead."  // + platform: seq → record
)

// dedupBucket maps dedupKey → expiry (unix ns). It has no expiry-ordered twin: the sweep scans it
// every SweepInterval instead, which costs a sequential read where a second index would cost a
// write per event on the request path.
var dedupBucket = []byte("queue.dedup")

// maxIDLen bounds an event's name and ID so that the dedup key stays far below bbolt's key limit;
// real IDs are UUIDs or 64-character hashes.
const maxIDLen = 512

// maxGroup bounds how many writes share one bbolt transaction.
const maxGroup = 4096

// sweepChunk bounds how many expired dedup entries one write deletes, so that a sweep never holds
// the writer long enough to show in enqueue latency.
const sweepChunk = 2000

// Options tune a Bolt queue. The zero value is ready to use.
type Options struct {
	// Now returns the current time. Default: time.Now.
	Now func() time.Time
	// DedupCacheSize is how many recent dedup keys are kept in memory in front of the on-disk index.
	// Default: 65536.
	DedupCacheSize int64
	// SweepInterval is how often expired dedup entries are deleted from disk. Default: 10 minutes.
	SweepInterval time.Duration
}

// Bolt is the embedded Queue on a bbolt database.
//
// Every write (appends, settlements, dead-letter moves, dedup sweeps) goes through one group
// committer (boltcommit) that gathers whatever is pending into one bbolt transaction, so concurrent
// Enqueue calls share one fsync; while that fsync runs the next group gathers. Waiting events live only on
// disk: memory holds the leases, the partition counters and a bounded dedup cache.
type Bolt struct {
	db    *bbolt.DB
	now   func() time.Time
	dedup *ristretto.Cache[string, int64]

	committer *boltcommit.Committer
	sweepStop chan struct{}
	sweepDone chan struct{}

	partsMu sync.Mutex
	parts   map[string]*partition
}

// partition is the in-memory state of one platform's events.
type partition struct {
	ready, dead []byte // bucket names
	depth       atomic.Int64
	deadCount   atomic.Int64

	// mu serializes lease scans with the end of leases: a lease ends only after its settlement is
	// committed, so a scan never sees an event both unleased and in its old place.
	mu     sync.Mutex
	leased map[uint64]struct{}
}

// OpenBolt opens the queue on an already-open bbolt database, creating its buckets. The database
// stays the caller's: Close does not close it.
//
// Open the file with BoltOptions, or at least a non-zero bbolt.Options.Timeout, so a second process
// (`caddy validate` beside a running server) fails instead of hanging on the file lock.
func OpenBolt(db *bbolt.DB, opts Options) (*Bolt, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.DedupCacheSize <= 0 {
		opts.DedupCacheSize = 1 << 16
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = 10 * time.Minute
	}
	cache, err := ristretto.NewCache(&ristretto.Config[string, int64]{
		NumCounters: opts.DedupCacheSize * 10,
		MaxCost:     opts.DedupCacheSize,
		BufferItems: 64,
	})
	if err != nil {
		return nil, fmt.Errorf("queue: dedup cache: %w", err)
	}
	q := &Bolt{
		db:        db,
		now:       opts.Now,
		dedup:     cache,
		sweepStop: make(chan struct{}),
		sweepDone: make(chan struct{}),
		parts:     make(map[string]*partition),
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(dedupBucket); err != nil {
			return err
		}
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			n := int64(b.Stats().KeyN)
			switch {
			case bytes.HasPrefix(name, []byte(readyPrefix)):
				q.partition(string(name[len(readyPrefix):])).depth.Store(n)
			case bytes.HasPrefix(name, []byte(deadPrefix)):
				q.partition(string(name[len(deadPrefix):])).deadCount.Store(n)
			}
			return nil
		})
	})
	if err != nil {
		cache.Close()
		return nil, fmt.Errorf("queue: open buckets in %s: %w", db.Path(), err)
	}
	q.committer = boltcommit.New(db, boltcommit.Options{MaxGroup: maxGroup, Closed: ErrClosed})
	go q.sweepLoop(opts.SweepInterval)
	return q, nil
}

func (q *Bolt) partition(name string) *partition {
	q.partsMu.Lock()
	defer q.partsMu.Unlock()
	p, ok := q.parts[name]
	if !ok {
		p = &partition{
			ready:  []byte(readyPrefix + name),
			dead:   []byte(deadPrefix + name),
			leased: make(map[uint64]struct{}),
		}
		q.parts[name] = p
	}
	return p
}

// Enqueue implements Queue.
func (q *Bolt) Enqueue(ctx context.Context, platformName string, events ...event.Event) (int, error) {
	if platformName == "" {
		return 0, errors.New("queue: enqueue without a platform")
	}
	for i, ev := range events {
		if ev.Name == "" || ev.ID == "" {
			return 0, fmt.Errorf("queue: enqueue %s event %d of %d: name and ID are required", platformName, i+1, len(events))
		}
		if len(ev.Name) > maxIDLen || len(ev.ID) > maxIDLen {
			return 0, fmt.Errorf("queue: enqueue %s event %d of %d: name or ID longer than %d bytes", platformName, i+1, len(events), maxIDLen)
		}
	}
	now := q.now().UnixNano()
	type pending struct {
		key string
		rec []byte
	}
	fresh := make([]pending, 0, len(events))
	for _, ev := range events {
		key := dedupKey(platformName, ev.Name, ev.ID)
		if exp, ok := q.dedup.Get(key); ok && exp > now {
			continue
		}
		data, err := json.Marshal(ev)
		if err != nil {
			return 0, fmt.Errorf("queue: enqueue %s event %s: %w", platformName, ev.ID, err)
		}
		fresh = append(fresh, pending{key: key, rec: record{enqueued: now, event: data}.encode()})
	}
	if len(fresh) == 0 {
		return 0, nil
	}
	p := q.partition(platformName)
	expiry := now + int64(DedupWindow)
	var added int
	seen := make([]int64, len(fresh)) // expiry of each key as committed, for the cache
	err := q.submit(ctx, boltcommit.Write{
		Apply: func(tx *bbolt.Tx) error {
			added = 0
			ready, err := tx.CreateBucketIfNotExists(p.ready)
			if err != nil {
				return err
			}
			index := tx.Bucket(dedupBucket)
			// The partition grows at its end (time-ordered keys): packing its pages full halves
			// the pages each commit writes.
			ready.FillPercent = 1
			for i, f := range fresh {
				k := []byte(f.key)
				if v := index.Get(k); len(v) == 8 {
					if old := int64(binary.BigEndian.Uint64(v)); old > now {
						seen[i] = old
						continue
					}
				}
				if err := index.Put(k, binary.BigEndian.AppendUint64(nil, uint64(expiry))); err != nil {
					return err
				}
				seq, err := ready.NextSequence()
				if err != nil {
					return err
				}
				if err := ready.Put(readyKey(now, seq), f.rec); err != nil {
					return err
				}
				seen[i] = expiry
				added++
			}
			return nil
		},
		Committed: func() {
			p.depth.Add(int64(added))
			for i, f := range fresh {
				q.dedup.Set(f.key, seen[i], 1)
			}
		},
	}, true)
	if err != nil {
		return 0, fmt.Errorf("queue: enqueue %d %s events: %w", len(events), platformName, err)
	}
	return added, nil
}

// Lease implements Queue.
func (q *Bolt) Lease(ctx context.Context, platformName string, max int) ([]Item, error) {
	if err := q.checkOpen(ctx); err != nil {
		return nil, err
	}
	if max <= 0 {
		return nil, nil
	}
	p := q.partition(platformName)
	now := q.now().UnixNano()
	p.mu.Lock()
	defer p.mu.Unlock()
	var items []Item
	var seqs []uint64
	err := q.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(p.ready)
		if b == nil {
			return nil
		}
		// Items are large: growing the slice would copy them over and over.
		n := min(max, int(p.depth.Load()))
		items, seqs = make([]Item, 0, n), make([]uint64, 0, n)
		c := b.Cursor()
		for k, v := c.First(); k != nil && len(items) < max; k, v = c.Next() {
			if len(k) != 16 {
				return fmt.Errorf("%w: key of %d bytes", errBadRecord, len(k))
			}
			if int64(binary.BigEndian.Uint64(k)) > now {
				break
			}
			seq := binary.BigEndian.Uint64(k[8:])
			if _, ok := p.leased[seq]; ok {
				continue
			}
			r, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("event %d: %w", seq, err)
			}
			it := Item{
				Receipt:    string(k),
				Enqueued:   fromUnixNano(r.enqueued),
				Attempts:   int(r.attempts),
				LastReason: r.reason,
			}
			if err := json.Unmarshal(r.event, &it.Event); err != nil {
				return fmt.Errorf("event %d: %w", seq, err)
			}
			items = append(items, it)
			seqs = append(seqs, seq)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: lease %s events: %w", platformName, err)
	}
	for _, s := range seqs {
		p.leased[s] = struct{}{}
	}
	return items, nil
}

// Settle implements Queue.
func (q *Bolt) Settle(ctx context.Context, platformName string, settlements ...Settlement) error {
	if len(settlements) == 0 {
		return nil
	}
	for _, s := range settlements {
		if len(s.Receipt) != 16 {
			return fmt.Errorf("queue: settle %s: receipt of %d bytes is not one of ours", platformName, len(s.Receipt))
		}
	}
	p := q.partition(platformName)
	// The leases end whatever happens: after a failed write the events are due again, and sending
	// them twice is the at-least-once price.
	defer q.Release(platformName, receipts(settlements)...)
	now := q.now().UnixNano()
	var dDepth, dDead int64
	return q.wrap("settle", platformName, len(settlements), q.submit(ctx, boltcommit.Write{
		Apply: func(tx *bbolt.Tx) error {
			dDepth, dDead = 0, 0
			ready := tx.Bucket(p.ready)
			if ready == nil {
				return nil
			}
			dead, err := tx.CreateBucketIfNotExists(p.dead)
			if err != nil {
				return err
			}
			for _, s := range settlements {
				k := []byte(s.Receipt)
				v := ready.Get(k)
				if v == nil {
					continue // settled already, or dropped
				}
				var moved []byte
				if s.Outcome != Ack {
					r, err := decodeRecord(v)
					if err != nil {
						return err
					}
					r.attempts, r.reason = uint32(max(s.Attempts, 0)), s.Reason
					if s.Outcome == Bury {
						r.buried = now
					}
					moved = r.encode() // copies the event out of the page before Delete
				}
				if err := ready.Delete(k); err != nil {
					return err
				}
				seq := binary.BigEndian.Uint64(k[8:])
				switch s.Outcome {
				case Ack:
					dDepth--
				case Reschedule:
					if err := ready.Put(readyKey(unixNano(s.NotBefore), seq), moved); err != nil {
						return err
					}
				case Bury:
					if err := dead.Put(seqKey(seq), moved); err != nil {
						return err
					}
					dDepth--
					dDead++
				}
			}
			return nil
		},
		Committed: func() {
			p.depth.Add(dDepth)
			p.deadCount.Add(dDead)
		},
	}, false))
}

func receipts(ss []Settlement) []string {
	r := make([]string, len(ss))
	for i, s := range ss {
		r[i] = s.Receipt
	}
	return r
}

// Release implements Queue.
func (q *Bolt) Release(platformName string, receipts ...string) {
	p := q.partition(platformName)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range receipts {
		if len(r) == 16 {
			delete(p.leased, binary.BigEndian.Uint64([]byte(r[8:])))
		}
	}
}

// Stats implements Queue.
func (q *Bolt) Stats(ctx context.Context) (map[string]PartitionStats, error) {
	if err := q.checkOpen(ctx); err != nil {
		return nil, err
	}
	q.partsMu.Lock()
	defer q.partsMu.Unlock()
	stats := make(map[string]PartitionStats, len(q.parts))
	for name, p := range q.parts {
		p.mu.Lock()
		leased := len(p.leased)
		p.mu.Unlock()
		stats[name] = PartitionStats{Depth: int(p.depth.Load()), Leased: leased, DeadLetters: int(p.deadCount.Load())}
	}
	return stats, nil
}

// DeadLetters implements Queue.
func (q *Bolt) DeadLetters(ctx context.Context, platformName, after string, limit int) ([]DeadLetter, error) {
	if err := q.checkOpen(ctx); err != nil {
		return nil, err
	}
	var from uint64
	if after != "" {
		n, err := parseDeadID(after)
		if err != nil {
			return nil, err
		}
		from = n + 1
	}
	p := q.partition(platformName)
	var list []DeadLetter
	err := q.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(p.dead)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek(seqKey(from)); k != nil && len(list) < limit; k, v = c.Next() {
			seq := binary.BigEndian.Uint64(k)
			r, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("dead letter %d: %w", seq, err)
			}
			d := DeadLetter{
				ID:       strconv.FormatUint(seq, 10),
				Platform: platformName,
				Reason:   r.reason,
				Attempts: int(r.attempts),
				Enqueued: fromUnixNano(r.enqueued),
				Buried:   fromUnixNano(r.buried),
			}
			if err := json.Unmarshal(r.event, &d.Event); err != nil {
				return fmt.Errorf("dead letter %d: %w", seq, err)
			}
			list = append(list, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: list %s dead letters: %w", platformName, err)
	}
	return list, nil
}

func parseDeadID(id string) (uint64, error) {
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("queue: dead letter ID %q is not a number", id)
	}
	return n, nil
}

// Replay implements Queue.
func (q *Bolt) Replay(ctx context.Context, platformName string, ids ...string) (int, error) {
	return q.moveDead(ctx, "replay", platformName, ids, true)
}

// Drop implements Queue.
func (q *Bolt) Drop(ctx context.Context, platformName string, ids ...string) (int, error) {
	return q.moveDead(ctx, "drop", platformName, ids, false)
}

// moveDead deletes the given dead letters (all without IDs), putting them back into the queue, due
// now with a fresh count of attempts, when replay is set.
func (q *Bolt) moveDead(ctx context.Context, verb, platformName string, ids []string, replay bool) (int, error) {
	seqs := make([]uint64, len(ids))
	for i, id := range ids {
		n, err := parseDeadID(id)
		if err != nil {
			return 0, err
		}
		seqs[i] = n
	}
	p := q.partition(platformName)
	now := q.now().UnixNano()
	var moved int
	err := q.submit(ctx, boltcommit.Write{
		Apply: func(tx *bbolt.Tx) error {
			moved = 0
			dead := tx.Bucket(p.dead)
			if dead == nil {
				return nil
			}
			ready, err := tx.CreateBucketIfNotExists(p.ready)
			if err != nil {
				return err
			}
			keys := make([][]byte, 0, len(seqs))
			if len(ids) == 0 {
				err := dead.ForEach(func(k, _ []byte) error {
					keys = append(keys, bytes.Clone(k))
					return nil
				})
				if err != nil {
					return err
				}
			}
			for _, s := range seqs {
				keys = append(keys, seqKey(s))
			}
			for _, k := range keys {
				v := dead.Get(k)
				if v == nil {
					continue
				}
				if replay {
					r, err := decodeRecord(v)
					if err != nil {
						return err
					}
					r.enqueued, r.buried, r.attempts, r.reason = now, 0, 0, ""
					if err := ready.Put(readyKey(now, binary.BigEndian.Uint64(k)), r.encode()); err != nil {
						return err
					}
				}
				if err := dead.Delete(k); err != nil {
					return err
				}
				moved++
			}
			return nil
		},
		Committed: func() {
			p.deadCount.Add(-int64(moved))
			if replay {
				p.depth.Add(int64(moved))
			}
		},
	}, false)
	if err != nil {
		return 0, q.wrap(verb, platformName, len(ids), err)
	}
	return moved, nil
}

// SweepDedup deletes dedup entries that expired, at most limit of them (all when limit ≤ 0), and
// returns how many it deleted. The queue runs it every SweepInterval; expired entries are ignored by
// Enqueue whether or not they were swept.
func (q *Bolt) SweepDedup(ctx context.Context, limit int) (int, error) {
	total := 0
	var from []byte
	for limit <= 0 || total < limit {
		chunk := sweepChunk
		if limit > 0 {
			chunk = min(chunk, limit-total)
		}
		next, n, err := q.sweepChunk(ctx, from, chunk)
		total += n
		if err != nil {
			return total, fmt.Errorf("queue: sweep dedup index: %w", err)
		}
		if next == nil {
			break
		}
		from = next
	}
	return total, nil
}

// sweepScanLimit bounds how many entries one read transaction of the sweep walks, so that it never
// pins old pages for long.
const sweepScanLimit = 50_000

// sweepChunk finds up to chunk expired entries from key from on, in a read transaction that does
// not hold the writer, then deletes them in one write. It returns where to resume, nil at the end.
func (q *Bolt) sweepChunk(ctx context.Context, from []byte, chunk int) ([]byte, int, error) {
	now := q.now().UnixNano()
	var expired [][]byte
	var next []byte
	err := q.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(dedupBucket).Cursor()
		k, v := c.Seek(from)
		for scanned := 0; k != nil; k, v = c.Next() {
			if len(expired) == chunk || scanned == sweepScanLimit {
				next = bytes.Clone(k)
				break
			}
			scanned++
			if len(v) == 8 && int64(binary.BigEndian.Uint64(v)) <= now {
				expired = append(expired, bytes.Clone(k))
			}
		}
		return nil
	})
	if err != nil || len(expired) == 0 {
		return next, 0, err
	}
	var n int
	err = q.submit(ctx, boltcommit.Write{Apply: func(tx *bbolt.Tx) error {
		n = 0
		index := tx.Bucket(dedupBucket)
		for _, k := range expired {
			// An enqueue may have renewed the entry since the scan.
			if v := index.Get(k); len(v) == 8 && int64(binary.BigEndian.Uint64(v)) <= now {
				if err := index.Delete(k); err != nil {
					return err
				}
				n++
			}
		}
		return nil
	}}, false)
	return next, n, err
}

func (q *Bolt) sweepLoop(every time.Duration) {
	defer close(q.sweepDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-q.sweepStop:
			return
		case <-t.C:
			if _, err := q.SweepDedup(context.Background(), 0); errors.Is(err, ErrClosed) {
				return
			}
		}
	}
}

// Close implements Queue. Writes already submitted are committed first.
func (q *Bolt) Close() error {
	if q.committer.Close() != nil {
		return nil // closed before
	}
	close(q.sweepStop)
	<-q.sweepDone
	q.dedup.Close()
	return nil
}

func (q *Bolt) checkOpen(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if q.committer.Closed() {
		return ErrClosed
	}
	return nil
}

// submit hands a write to the committer and waits until it is durable. With cancellable set the
// wait ends early when ctx is done (the write may still commit, and its Committed hook still runs);
// settlements wait for the commit so that a lease never ends before its event moved.
func (q *Bolt) submit(ctx context.Context, w boltcommit.Write, cancellable bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	done := q.committer.Submit(w)
	if !cancellable {
		return <-done
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (q *Bolt) wrap(verb, platformName string, n int, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("queue: %s %d %s events: %w", verb, n, strings.TrimSpace(platformName), err)
}

// BoltOptions are the bbolt options the queue is measured with, for whoever opens the shared file.
// The lock timeout makes a second process (`caddy validate` beside a running server) fail instead
// of hanging; the map freelist, not persisted, keeps every commit from rewriting the freelist
// pages, which matters when each enqueue waits for a commit.
func BoltOptions(lockTimeout time.Duration) *bbolt.Options {
	return &bbolt.Options{
		Timeout:        lockTimeout,
		FreelistType:   bbolt.FreelistMapType,
		NoFreelistSync: true,
	}
}

// Interface guards
var _ Queue = (*Bolt)(nil)
