package queue

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"go.etcd.io/bbolt"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/internal/boltcommit"
	"github.com/caddy-capi/caddy-capi/capi/internal/wal"
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
	// DedupCacheSize is how many dedup keys read from the on-disk index (duplicates of events
	// flushed there) are kept in memory in front of it. Default: 65536.
	DedupCacheSize int64
	// SweepInterval is how often expired dedup entries are deleted from disk. Default: 10 minutes.
	SweepInterval time.Duration
	// LogSegmentSize is the size of each file of the write-ahead log; one Enqueue call may log at
	// most a quarter of it. Default: wal.DefaultSegmentSize (16 MiB).
	LogSegmentSize int64
	// DedupFlushKeys is how many applied dedup keys are held in memory before they are written to
	// the on-disk index in one sorted flush; the log keeps their records until then. Default:
	// 200,000 (about 8 MiB of memory).
	DedupFlushKeys int
	// DedupFlushInterval is the longest a dedup key waits in memory for its flush. Default: 30 s.
	DedupFlushInterval time.Duration
}

// Bolt is the embedded Queue on a bbolt database.
//
// Enqueue appends to a write-ahead log beside the bbolt file (<file>.queue-wal/), whose one writer
// gathers every pending append into one write and one fdatasync: an event is durable once it is
// in the log. An applier goroutine then moves logged events into bbolt in large transactions, and
// Lease first waits for it to catch up with everything logged before the call. Every bbolt write
// (applied events, settlements, dead-letter moves, dedup sweeps) goes through one group committer
// (boltcommit) that the visitor store's writes share. Waiting events live on disk: memory holds the
// leases, the partition counters, a bounded dedup cache, the events logged but not yet applied and
// the dedup keys applied but not yet flushed to the on-disk index (dedup.go).
type Bolt struct {
	db    *bbolt.DB
	now   func() time.Time
	dedup *ristretto.Cache[string, int64]
	log   *wal.Log

	committer *boltcommit.Committer
	sweepStop chan struct{}
	sweepDone chan struct{}
	closed    atomic.Bool

	partsMu sync.RWMutex
	parts   map[string]*partition

	// resMu guards reserved (dedup keys logged or about to be, not yet applied) and the set of
	// applied keys not yet in the on-disk index: unflushed, and flushing while a flush writes it.
	// unflushedLSN is the last log record whose keys are in unflushed, and unflushedMin the
	// earliest expiry there.
	resMu        sync.Mutex
	reserved     map[string]*reservation
	unflushed    map[[dedupKeySize]byte]int64
	unflushedLSN uint64
	unflushedMin int64
	flushing     map[[dedupKeySize]byte]int64
	flushingLSN  uint64
	// filter holds every key of the on-disk dedup index (dedupfilter.go).
	filter    *indexFilter
	flushKeys int
	// flushErr is the last flush's outcome; flushedCh is closed and replaced after each flush.
	flushErr  error
	flushedCh chan struct{}

	flushMu   sync.Mutex // one flush at a time
	flushKick chan struct{}
	flushStop chan struct{}
	flushDone chan struct{}

	// The applier's state. pending are the records logged and not yet applied, in LSN order;
	// appliedCh is closed and replaced whenever applied or applyErr changes.
	applyMu sync.Mutex
	pending []loggedRecord
	// pendingBytes is the payload size of pending. It changes under applyMu but is read without
	// it by Enqueue's check: the log's writer takes applyMu for every group (logged), and an
	// Enqueue holding it when the writer comes would hold up every caller waiting on that group.
	pendingBytes atomic.Int64
	applied      uint64
	// flushed is the dedup checkpoint: every record up to it has its keys in the on-disk index.
	flushed   uint64
	applyErr  error
	appliedCh chan struct{}
	applyWake chan struct{}
	// applyUrgent asks the applier not to wait for more records: a Lease waits for them.
	applyUrgent chan struct{}
	applyStop   chan struct{}
	applyDone   chan struct{}
	holdApply   atomic.Bool // tests: keep events in the log only
	abandoned   atomic.Bool // tests: stop as a crash would, without applying
}

// partition is the in-memory state of one platform's events.
type partition struct {
	ready, dead []byte // bucket names
	// depth counts the partition's events in bbolt and in the log.
	depth     atomic.Int64
	deadCount atomic.Int64

	// mu serializes lease scans with the end of leases: a lease ends only after its settlement is
	// committed, so a scan never sees an event both unleased and in its old place.
	mu     sync.Mutex
	leased map[uint64]struct{}
}

// CorruptLogError is what OpenBolt returns, wrapped, when the write-ahead log holds a damaged record
// that a crash cannot explain (later records exist, so it was acknowledged). The queue refuses to
// open rather than drop acknowledged events; the error names the segment file and the offset.
type CorruptLogError = wal.CorruptError

// LogDir is where the write-ahead log of the queue on the bbolt file at dbPath lives. The bbolt
// file's lock is what keeps a second process out of it.
func LogDir(dbPath string) string { return dbPath + ".queue-wal" }

// OpenBolt opens the queue on an already-open bbolt database, creating its buckets, and applies
// every event its write-ahead log (LogDir(db.Path())) holds beyond the last applied one before it
// returns. The database stays the caller's: Close does not close it.
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
	if opts.DedupFlushKeys <= 0 {
		opts.DedupFlushKeys = defaultDedupFlushKeys
	}
	if opts.DedupFlushInterval <= 0 {
		opts.DedupFlushInterval = defaultDedupFlushInterval
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
		db:           db,
		now:          opts.Now,
		dedup:        cache,
		sweepStop:    make(chan struct{}),
		sweepDone:    make(chan struct{}),
		parts:        make(map[string]*partition),
		reserved:     make(map[string]*reservation),
		unflushed:    make(map[[dedupKeySize]byte]int64),
		unflushedMin: math.MaxInt64,
		flushKeys:    opts.DedupFlushKeys,
		flushedCh:    make(chan struct{}),
		flushKick:    make(chan struct{}, 1),
		flushStop:    make(chan struct{}),
		flushDone:    make(chan struct{}),
		appliedCh:    make(chan struct{}),
		applyWake:    make(chan struct{}, 1),
		applyUrgent:  make(chan struct{}, 1),
		applyStop:    make(chan struct{}),
		applyDone:    make(chan struct{}),
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{dedupBucket, logBucket} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		if q.applied, err = appliedLSN(tx); err != nil {
			return err
		}
		if q.flushed, err = dedupFlushedLSN(tx, q.applied); err != nil {
			return err
		}
		// Written once, so that from now on its absence cannot be read as "the index is current".
		return tx.Bucket(logBucket).Put(dedupFlushedKey, binary.BigEndian.AppendUint64(nil, q.flushed))
	})
	if err != nil {
		cache.Close()
		return nil, fmt.Errorf("queue: open buckets in %s: %w", db.Path(), err)
	}
	if err := q.openLog(opts.LogSegmentSize); err != nil {
		cache.Close()
		return nil, err
	}
	err = db.View(func(tx *bbolt.Tx) error {
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
		q.log.Close()
		cache.Close()
		return nil, fmt.Errorf("queue: count events in %s: %w", db.Path(), err)
	}
	if q.filter, err = buildIndexFilter(db); err != nil {
		q.log.Close()
		cache.Close()
		return nil, err
	}
	q.committer = boltcommit.New(db, boltcommit.Options{MaxGroup: maxGroup, Closed: ErrClosed})
	go q.applyLoop()
	go q.flushLoop(opts.DedupFlushInterval)
	go q.sweepLoop(opts.SweepInterval)
	if len(q.unflushed) >= q.flushKeys {
		q.kickFlush()
	}
	return q, nil
}

// replayChunk is how many replayed log records share one bbolt transaction at open.
const replayChunk = 4096

// logSpares is how many released log segments are kept for reuse. A dedup flush releases every
// segment written since the one before at once (at 20,000 events a second of ~1 KiB, about a dozen
// of 16 MiB every 10 s); recycling them, instead of deleting them and zero-filling as many new
// ones, keeps that disk work away from the log's fdatasync (in two paired runs at 20,000/s across
// a flush, p99 8.8 and 14 ms with recycling, 25 and 18 ms without). Spares take disk the log used
// at its peak anyway: at most 256 MiB with the default segment size.
const logSpares = 16

// openLog opens the write-ahead log at the dedup checkpoint, puts the keys of every record above it
// back into the unflushed set and applies the records beyond q.applied, in transactions of
// replayChunk records, before the queue takes calls.
func (q *Bolt) openLog(segmentSize int64) error {
	dir := LogDir(q.db.Path())
	var batches []loggedBatch
	var last uint64
	flush := func() error {
		if len(batches) == 0 {
			return nil
		}
		err := q.db.Update(func(tx *bbolt.Tx) error { return applyLogged(tx, batches, last) })
		batches = batches[:0]
		return err
	}
	now := q.now().UnixNano()
	replay := func(lsn uint64, payload []byte) error {
		b, err := decodeLogged(payload)
		if err != nil {
			return err
		}
		exp := b.enqueued + int64(DedupWindow)
		for _, k := range b.keys {
			if exp > now {
				q.unflushed[[dedupKeySize]byte(k)] = exp
				q.unflushedMin = min(q.unflushedMin, exp)
			}
		}
		q.unflushedLSN = lsn
		if lsn <= q.applied {
			return nil // its events are in the buckets already
		}
		if b, err = decodeLogged(bytes.Clone(payload)); err != nil { // payload is the log's read buffer
			return err
		}
		batches, last = append(batches, b), lsn
		if len(batches) == replayChunk {
			return flush()
		}
		return nil
	}
	after := min(q.applied, q.flushed)
	l, err := wal.Open(dir, after, replay, wal.Options{SegmentSize: segmentSize, Durable: q.logged, Issued: q.applied, Spares: logSpares})
	if err == nil {
		if err = flush(); err != nil {
			l.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("queue: replay the write-ahead log %s into %s: %w", dir, q.db.Path(), err)
	}
	q.log = l
	q.applied = max(q.applied, l.LastLSN())
	q.unflushedLSN = max(q.unflushedLSN, q.applied, q.flushed)
	if err := l.Release(after); err != nil {
		l.Close()
		return fmt.Errorf("queue: open the write-ahead log %s: %w", dir, err)
	}
	return nil
}

func (q *Bolt) partition(name string) *partition {
	q.partsMu.RLock()
	p, ok := q.parts[name]
	q.partsMu.RUnlock()
	if ok {
		return p
	}
	q.partsMu.Lock()
	defer q.partsMu.Unlock()
	p, ok = q.parts[name]
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

// Enqueue implements Queue. It returns once the new events are in the write-ahead log, fsync'd;
// that wait (one group's fdatasync) does not end early when ctx is done, so the answer is always
// the truth about what was stored.
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
	if err := q.checkOpen(ctx); err != nil {
		return 0, err
	}
	if err := q.waitRoom(ctx); err != nil {
		return 0, fmt.Errorf("queue: enqueue %d %s events: waiting for the applier: %w", len(events), platformName, err)
	}
	now := q.now().UnixNano()
	batch := loggedBatch{platform: platformName, enqueued: now}
	// The events' JSON is built in pooled buffers: the log record copies it, and nothing keeps
	// them after that. At 20,000 events a second a fresh buffer per event was the largest share
	// of the bytes allocated, and so of the garbage collector's work.
	var scratch []*[]byte
	defer func() {
		for _, b := range scratch {
			if cap(*b) <= maxPooledJSON {
				jsonBufs.Put(b)
			}
		}
	}()
	for i := range events {
		ev := &events[i]
		key := dedupKey(platformName, ev.Name, ev.ID)
		if exp, ok := q.dedup.Get(key); ok && exp > now {
			continue
		}
		if slices.ContainsFunc(batch.keys, func(k []byte) bool { return string(k) == key }) {
			continue // twice in one call
		}
		buf := jsonBufs.Get().(*[]byte)
		data, err := ev.AppendJSON((*buf)[:0])
		*buf = data
		scratch = append(scratch, buf)
		if err != nil {
			return 0, fmt.Errorf("queue: enqueue %s event %s: %w", platformName, ev.ID, err)
		}
		batch.keys = append(batch.keys, []byte(key))
		batch.events = append(batch.events, data)
	}
	res, err := q.reserve(ctx, &batch, now)
	if err != nil || len(batch.keys) == 0 {
		return 0, err
	}
	// Counted before the append: once it is logged, the applier and a consumer's Ack may
	// subtract before this call would get to add.
	p := q.partition(platformName)
	p.depth.Add(int64(len(batch.keys)))
	record := batch.encode()
	batch.events = nil // in the pooled buffers, which go back when this call returns
	_, err = q.log.Append(record)
	q.resMu.Lock()
	if err != nil {
		for _, k := range batch.keys {
			if q.reserved[string(k)] == res {
				delete(q.reserved, string(k))
			}
		}
	}
	res.logged = err == nil
	q.resMu.Unlock()
	if err != nil {
		p.depth.Add(-int64(len(batch.keys)))
	}
	close(res.done)
	if errors.Is(err, wal.ErrClosed) {
		err = ErrClosed
	}
	if err != nil {
		return 0, fmt.Errorf("queue: enqueue %d %s events: %w", len(events), platformName, err)
	}
	return len(batch.keys), nil
}

// jsonBufs pools the buffers Enqueue encodes events into; one larger than maxPooledJSON (an event
// with a huge custom field) is left to the garbage collector rather than kept.
var jsonBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

const maxPooledJSON = 16 << 10

// reserve takes the dedup keys of b that no other call holds and the on-disk index does not know
// within the window, and drops the others from b. While another call holds a key that it has not
// yet logged, reserve waits for that call's outcome without holding any key itself (two calls
// waiting for each other's keys would wait for ever), then tries again. The caller closes the
// returned reservation's done once its log write has an outcome.
func (q *Bolt) reserve(ctx context.Context, b *loggedBatch, now int64) (*reservation, error) {
	for len(b.keys) > 0 {
		res := &reservation{done: make(chan struct{}), expiry: now + int64(DedupWindow)}
		var busy *reservation
		q.resMu.Lock()
		for _, k := range b.keys {
			if r, held := q.reserved[string(k)]; held && !r.logged {
				busy = r
				break
			}
		}
		indexed := false // whether the on-disk index may hold one of the keys kept
		if busy == nil {
			n := 0
			for i, k := range b.keys {
				if r, held := q.reserved[string(k)]; held && r.expiry > now {
					continue // logged by another call: a duplicate
				}
				if q.heldUnflushed(k, now) {
					continue // applied, not yet in the on-disk index
				}
				q.reserved[string(k)] = res
				b.keys[n], b.events[n] = k, b.events[i]
				n++
				indexed = indexed || q.filter.mayHold(k)
			}
			b.keys, b.events = b.keys[:n], b.events[:n]
		}
		q.resMu.Unlock()
		if busy != nil {
			select {
			case <-busy.done:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if !indexed {
			// None of the keys is in the on-disk index: the filter is certain of that.
			if len(b.keys) == 0 {
				close(res.done)
			}
			return res, nil
		}
		if err := q.dropIndexed(b, res, now); err != nil {
			q.resMu.Lock()
			for _, k := range b.keys {
				delete(q.reserved, string(k))
			}
			q.resMu.Unlock()
			close(res.done)
			return nil, fmt.Errorf("queue: enqueue %s events: read the dedup index: %w", b.platform, err)
		}
		if len(b.keys) == 0 {
			close(res.done)
		}
		return res, nil
	}
	return nil, nil
}

// dropIndexed drops from b, and from the reservations, the keys the on-disk index holds within
// their window.
func (q *Bolt) dropIndexed(b *loggedBatch, res *reservation, now int64) error {
	n := 0
	err := q.db.View(func(tx *bbolt.Tx) error {
		index := tx.Bucket(dedupBucket)
		for i, k := range b.keys {
			if v := index.Get(k); len(v) == 8 {
				if exp := int64(binary.BigEndian.Uint64(v)); exp > now {
					q.dedup.Set(string(k), exp, 1)
					continue
				}
			}
			b.keys[n], b.events[n] = k, b.events[i]
			n++
		}
		return nil
	})
	if err != nil {
		return err
	}
	q.resMu.Lock()
	for _, k := range b.keys[n:] {
		if q.reserved[string(k)] == res {
			delete(q.reserved, string(k))
		}
	}
	q.resMu.Unlock()
	b.keys, b.events = b.keys[:n], b.events[:n]
	return nil
}

// Lease implements Queue.
func (q *Bolt) Lease(ctx context.Context, platformName string, max int) ([]Item, error) {
	if err := q.checkOpen(ctx); err != nil {
		return nil, err
	}
	if max <= 0 {
		return nil, nil
	}
	if err := q.waitApplied(ctx); err != nil {
		return nil, fmt.Errorf("queue: lease %s events: %w", platformName, err)
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
		if n < 0 {
			n = 0 // a counter out of step must not fail the lease
		}
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

// SweepDedup deletes dedup entries that expired, at most limit of them (all when limit ≤ 0), from
// the keys held in memory for the next flush first, then from the on-disk index, and returns how
// many it deleted. The queue runs it every SweepInterval; expired entries are ignored by Enqueue
// whether or not they were swept.
func (q *Bolt) SweepDedup(ctx context.Context, limit int) (int, error) {
	// Keys logged before the call count as indexed already.
	if err := q.waitApplied(ctx); err != nil {
		return 0, fmt.Errorf("queue: sweep dedup index: %w", err)
	}
	total := q.sweepUnflushed(q.now().UnixNano(), limit)
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

// Close implements Queue. Events already logged are applied first, and the log is closed cleanly;
// if they cannot be applied they stay in the log for the next OpenBolt, and Close says so.
func (q *Bolt) Close() error {
	if q.closed.Swap(true) {
		return nil // closed before
	}
	q.log.Close() // answers the appends in flight; later ones get ErrClosed
	close(q.applyStop)
	<-q.applyDone
	q.applyMu.Lock()
	left, err := len(q.pending), q.applyErr
	q.applyMu.Unlock()
	close(q.flushStop)
	<-q.flushDone
	var flushErr error
	if !q.abandoned.Load() {
		flushErr = q.FlushDedup(context.Background())
	}
	close(q.sweepStop)
	<-q.sweepDone
	q.committer.Close()
	q.dedup.Close()
	if q.abandoned.Load() {
		return nil
	}
	if left > 0 {
		return fmt.Errorf("queue: close: %d logged enqueues not applied, kept in the log for the next open: %w", left, err)
	}
	if flushErr != nil {
		return fmt.Errorf("queue: close: dedup keys kept in the log for the next open: %w", flushErr)
	}
	return nil
}

func (q *Bolt) checkOpen(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if q.closed.Load() {
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
