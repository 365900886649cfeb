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
	// DedupFlushKeys is how many logged dedup keys are held in memory before they are written to
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
// in the log, and it waits for delivery there (resident.go): Lease reads the log forward, and only
// an event that is rescheduled, buried, or left waiting in a log grown too long is written to
// bbolt. Every bbolt write (settlements, dead-letter moves, dedup flushes and sweeps) goes through
// one group committer (boltcommit) that the visitor store's writes share. Waiting events live on
// disk: memory holds the leases and the events read for them, the partition counters, a bounded
// dedup cache and the dedup keys not yet flushed to the on-disk index (dedup.go).
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

	// resMu guards reserved (dedup keys about to be logged) and the set of logged keys not yet in
	// the on-disk index: unflushed, and flushing while a flush writes it.
	// unflushedLSN is the last log record whose keys are in unflushed, and unflushedMin the
	// earliest expiry there.
	resMu     sync.Mutex
	reserved  map[[dedupKeySize]byte]uint64 // key → the token of the call holding it
	resTokens uint64
	// resWake is closed when a call lets keys go while another waits for one of them; nil when
	// nobody waits.
	resWake      chan struct{}
	unflushed    map[[dedupKeySize]byte]int64
	unflushedLSN uint64
	unflushedMin int64
	flushing     map[[dedupKeySize]byte]int64
	spareSet     map[[dedupKeySize]byte]int64 // emptied by the last flush, to be filled next
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

	// logMu guards the two checkpoints the log is released below: base (no record at or below it
	// holds an event waiting in the log, resident.go) and flushed (every record up to it has its
	// dedup keys in the on-disk index, dedup.go).
	logMu   sync.Mutex
	base    uint64
	flushed uint64
	// logged holds the LSNs whose Enqueue has put its keys into unflushed while an earlier LSN's
	// has not yet; unflushedLSN moves over them once the gap closes. Guarded by resMu.
	logged map[uint64]struct{}

	// positions is what OpenBolt read of the partitions' log positions, for partitions made later.
	positions *residentAtOpen
	logStop   chan struct{}
	logDone   chan struct{}
	abandoned atomic.Bool // tests: stop as a crash would, without a checkpoint
}

// partition is the in-memory state of one platform's events.
type partition struct {
	name                 []byte
	ready, dead, settled []byte // bucket names
	// depth counts the partition's events in bbolt and in the log; resident those in the log
	// (counted by Enqueue before it appends).
	depth     atomic.Int64
	deadCount atomic.Int64
	resident  atomic.Int64

	// mu serializes lease scans with the end of leases: a lease ends only after its settlement is
	// committed, so a scan never sees an event both unleased and in its old place. It guards
	// leased (bbolt events, by sequence) and the log-resident state below (resident.go).
	mu     sync.Mutex
	leased map[uint64]struct{}
	// window holds the log-resident events read and not yet settled (or settled out of order),
	// by position; cursor is the first one not settled, readPos where reading goes on; ahead
	// holds positions settled out of order before a restart, skipped when read.
	window  []residentEvent
	cursor  logPos
	readPos logPos
	ahead   map[logPos]struct{}
	// moved maps events moved out of the log while leased (evacuate) to their ready key: their
	// lease goes on, on the bbolt event, under the receipt the holder has.
	moved  map[logPos]string
	reader *wal.Reader
	// settleMu serializes settlements of log-resident events, each of which moves the cursor.
	settleMu sync.Mutex
}

// CorruptLogError is what OpenBolt returns, wrapped, when the write-ahead log holds a damaged record
// that a crash cannot explain (later records exist, so it was acknowledged). The queue refuses to
// open rather than drop acknowledged events; the error names the segment file and the offset.
type CorruptLogError = wal.CorruptError

// LogDir is where the write-ahead log of the queue on the bbolt file at dbPath lives. The bbolt
// file's lock is what keeps a second process out of it.
func LogDir(dbPath string) string { return dbPath + ".queue-wal" }

// OpenBolt opens the queue on an already-open bbolt database, creating its buckets, and reads its
// write-ahead log (LogDir(db.Path())) for the dedup keys not yet in the on-disk index and the events
// waiting there, before it returns. The database stays the caller's: Close does not close it.
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
		reserved:     make(map[[dedupKeySize]byte]uint64),
		unflushed:    make(map[[dedupKeySize]byte]int64),
		unflushedMin: math.MaxInt64,
		flushKeys:    opts.DedupFlushKeys,
		flushedCh:    make(chan struct{}),
		flushKick:    make(chan struct{}, 1),
		flushStop:    make(chan struct{}),
		flushDone:    make(chan struct{}),
		logged:       make(map[uint64]struct{}),
		logStop:      make(chan struct{}),
		logDone:      make(chan struct{}),
	}
	var positions *residentAtOpen
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{dedupBucket, logBucket} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		if q.base, err = baseLSN(tx); err != nil {
			return err
		}
		if q.flushed, err = dedupFlushedLSN(tx, q.base); err != nil {
			return err
		}
		if positions, err = readPositions(tx, q.base); err != nil {
			return err
		}
		// Written once, so that from now on its absence cannot be read as "the index is current".
		return tx.Bucket(logBucket).Put(dedupFlushedKey, binary.BigEndian.AppendUint64(nil, q.flushed))
	})
	if err != nil {
		cache.Close()
		return nil, fmt.Errorf("queue: open buckets in %s: %w", db.Path(), err)
	}
	if err := q.openLog(opts.LogSegmentSize, positions); err != nil {
		cache.Close()
		return nil, err
	}
	err = db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			n := int64(b.Stats().KeyN)
			switch {
			case bytes.HasPrefix(name, []byte(readyPrefix)):
				q.partition(string(name[len(readyPrefix):])).depth.Add(n)
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
	go q.logLoop()
	go q.flushLoop(opts.DedupFlushInterval)
	go q.sweepLoop(opts.SweepInterval)
	if len(q.unflushed) >= q.flushKeys {
		q.kickFlush()
	}
	return q, nil
}

// logSpares is how many released log segments are kept for reuse. A dedup flush releases every
// segment written since the one before at once (at 20,000 events a second of ~1 KiB, about a dozen
// of 16 MiB every 10 s); recycling them, instead of deleting them and zero-filling as many new
// ones, keeps that disk work away from the log's fdatasync (in two paired runs at 20,000/s across
// a flush, p99 8.8 and 14 ms with recycling, 25 and 18 ms without). Spares take disk the log used
// at its peak anyway: at most 256 MiB with the default segment size.
const logSpares = 16

// openLog opens the write-ahead log below both checkpoints, puts the keys of every record above the
// dedup checkpoint back into the unflushed set, and counts the events of the records above the base
// that wait for delivery, before the queue takes calls. Nothing is written: the log stays where the
// events are.
func (q *Bolt) openLog(segmentSize int64, positions *residentAtOpen) error {
	dir := LogDir(q.db.Path())
	now := q.now().UnixNano()
	replay := func(lsn uint64, payload []byte) error {
		b, err := decodeLogged(payload)
		if err != nil {
			return err
		}
		if lsn > q.flushed {
			exp := b.enqueued + int64(DedupWindow)
			for _, k := range b.keys {
				if exp > now {
					q.unflushed[[dedupKeySize]byte(k)] = exp
					q.unflushedMin = min(q.unflushedMin, exp)
				}
			}
		}
		positions.count(lsn, b)
		return nil
	}
	after := min(q.base, q.flushed)
	l, err := wal.Open(dir, after, replay, wal.Options{SegmentSize: segmentSize, Issued: max(q.base, q.flushed), Spares: logSpares})
	if err != nil {
		return fmt.Errorf("queue: replay the write-ahead log %s into %s: %w", dir, q.db.Path(), err)
	}
	q.log = l
	q.unflushedLSN = max(l.LastLSN(), q.flushed)
	for platform, n := range positions.counts {
		p := q.partition(platform)
		p.resident.Store(n)
		p.depth.Add(n)
	}
	// Every partition starts reading at its cursor, including the ones made later (partition).
	q.partsMu.Lock()
	q.positions = positions
	for name, p := range q.parts {
		q.startAt(p, name)
	}
	q.partsMu.Unlock()
	if err := l.Release(after); err != nil {
		l.Close()
		return fmt.Errorf("queue: open the write-ahead log %s: %w", dir, err)
	}
	return nil
}

// startAt sets a new partition's positions from what OpenBolt read. The caller holds partsMu.
func (q *Bolt) startAt(p *partition, name string) {
	if q.positions == nil {
		return // OpenBolt sets them once it has read them
	}
	c := q.positions.cursor(name)
	if q.log != nil && p.resident.Load() == 0 {
		// No event of its own waits in the log.
		c = logPos{max(c.lsn, q.log.LastLSN()+1), 0}
	}
	p.cursor, p.readPos = c, c
	p.ahead = q.positions.settled[name]
	delete(q.positions.settled, name)
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
			name:    []byte(name),
			ready:   []byte(readyPrefix + name),
			dead:    []byte(deadPrefix + name),
			settled: []byte(settledPrefix + name),
			leased:  make(map[uint64]struct{}),
			moved:   make(map[logPos]string),
		}
		q.startAt(p, name)
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
	now := q.now().UnixNano()
	// Most calls carry one event: their key and event slices stay on the stack.
	var keys, encoded [2][]byte
	batch := loggedBatch{platform: platformName, enqueued: now, keys: keys[:0], events: encoded[:0]}
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
	if err != nil {
		return 0, fmt.Errorf("queue: enqueue %s events: %w", platformName, err)
	}
	if len(batch.keys) == 0 {
		return 0, nil
	}
	// Counted before the append: once it is logged, a consumer's Ack may subtract before this
	// call would get to add, and the checkpoint reads the counter as "may be in the log".
	p := q.partition(platformName)
	n := int64(len(batch.keys))
	p.depth.Add(n)
	p.resident.Add(n)
	// The log copies the record into its write before Append returns, so the record's buffer is
	// pooled too.
	record := jsonBufs.Get().(*[]byte)
	*record = batch.appendTo((*record)[:0])
	scratch = append(scratch, record)
	batch.events = nil // in the pooled buffers, which go back when this call returns
	lsn, err := q.log.Append(*record)
	q.resMu.Lock()
	q.unreserve(batch.keys, res)
	if err == nil {
		// From the reservation to the unflushed set in one step under resMu, so that a
		// concurrent Enqueue finds each key in one place or the other.
		q.addUnflushed(batch, lsn)
	}
	full := len(q.unflushed) >= q.flushKeys
	q.resMu.Unlock()
	if full {
		q.kickFlush()
	}
	if err != nil {
		p.depth.Add(-n)
		p.resident.Add(-n)
	}
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
// within the window, drops the others from b, and returns the token the kept keys are held under.
// While another call holds a key that it has not yet logged, reserve waits for that call's outcome
// without holding any key itself (two calls waiting for each other's keys would wait for ever),
// then tries again. While the unflushed set is past its bound (flushes fail or fall behind) it
// waits for a flush, so a failing disk shows as enqueue latency, not memory. The caller lets the
// keys go (unreserve) once its log write has an outcome.
func (q *Bolt) reserve(ctx context.Context, b *loggedBatch, now int64) (uint64, error) {
	for len(b.keys) > 0 {
		var wait chan struct{}
		q.resMu.Lock()
		if len(q.unflushed) >= maxUnflushedFactor*q.flushKeys {
			// Flushes fail or fall behind: wait for one rather than grow the set.
			wait = q.flushedCh
			q.kickFlush()
		} else {
			for _, k := range b.keys {
				if _, held := q.reserved[[dedupKeySize]byte(k)]; held {
					if q.resWake == nil {
						q.resWake = make(chan struct{})
					}
					wait = q.resWake
					break
				}
			}
		}
		if wait != nil {
			q.resMu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-q.flushDone:
				return 0, ErrClosed // no flush will come
			}
		}
		q.resTokens++
		token := q.resTokens
		indexed := false // whether the on-disk index may hold one of the keys kept
		n := 0
		for i, k := range b.keys {
			if q.heldUnflushed(k, now) {
				continue // logged, not yet in the on-disk index
			}
			q.reserved[[dedupKeySize]byte(k)] = token
			b.keys[n], b.events[n] = b.keys[i], b.events[i] // not k: the batch's slices would escape
			n++
			indexed = indexed || q.filter.mayHold(k)
		}
		b.keys, b.events = b.keys[:n], b.events[:n]
		q.resMu.Unlock()
		if !indexed {
			// None of the keys is in the on-disk index: the filter is certain of that.
			return token, nil
		}
		if err := q.dropIndexed(b, token, now); err != nil {
			q.resMu.Lock()
			q.unreserve(b.keys, token)
			q.resMu.Unlock()
			// Wrapped without b's fields, which would make the caller's batch escape.
			return 0, fmt.Errorf("read the dedup index: %w", err)
		}
		return token, nil
	}
	return 0, nil
}

// unreserve lets go of the keys token holds, and wakes the calls waiting for keys. The caller holds
// resMu.
func (q *Bolt) unreserve(keys [][]byte, token uint64) {
	for _, k := range keys {
		q.unreserveKey([dedupKeySize]byte(k), token)
	}
	q.wakeReserving()
}

func (q *Bolt) unreserveKey(k [dedupKeySize]byte, token uint64) {
	if q.reserved[k] == token {
		delete(q.reserved, k)
	}
}

// wakeReserving wakes the calls waiting for another's keys, if any. The caller holds resMu.
func (q *Bolt) wakeReserving() {
	if q.resWake != nil {
		close(q.resWake)
		q.resWake = nil
	}
}

// dropIndexed drops from b, and lets go of, the keys the on-disk index holds within their window.
func (q *Bolt) dropIndexed(b *loggedBatch, token uint64, now int64) error {
	// Copies of the keys, and b compacted outside the transaction's closure: a key stored from
	// inside it would make the caller's key and event slices escape to the heap.
	var dropped [][dedupKeySize]byte
	keys := b.keys
	err := q.db.View(func(tx *bbolt.Tx) error {
		index := tx.Bucket(dedupBucket)
		for _, k := range keys {
			if v := index.Get(k); len(v) == 8 {
				if exp := int64(binary.BigEndian.Uint64(v)); exp > now {
					q.dedup.Set(string(k), exp, 1)
					dropped = append(dropped, [dedupKeySize]byte(k))
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	q.resMu.Lock()
	for _, k := range dropped {
		q.unreserveKey(k, token)
	}
	q.wakeReserving()
	q.resMu.Unlock()
	n := 0
	for i := range b.keys {
		if slices.Contains(dropped, [dedupKeySize]byte(b.keys[i])) {
			continue
		}
		b.keys[n], b.events[n] = b.keys[i], b.events[i]
		n++
	}
	b.keys, b.events = b.keys[:n], b.events[:n]
	return nil
}

// Lease implements Queue. It merges the partition's due bbolt events with its events waiting in
// the log, oldest due first (a log-resident event is due from when it was enqueued).
func (q *Bolt) Lease(ctx context.Context, platformName string, max int) ([]Item, error) {
	if err := q.checkOpen(ctx); err != nil {
		return nil, err
	}
	if max <= 0 {
		return nil, nil
	}
	p := q.partition(platformName)
	picked, damaged, err := q.pick(p, max)
	if err != nil {
		return nil, fmt.Errorf("queue: lease %s events: %w", platformName, err)
	}
	// Decoded after the partition's lock is let go: the committer takes it to end settlements,
	// and every bbolt write, the visitor store's too, would wait for the decoding.
	items := make([]Item, 0, len(picked)) // Items are large: filled in place
	var bury []Settlement
	for _, pk := range picked {
		items = append(items, pk.item)
		if err := json.Unmarshal(pk.event, &items[len(items)-1].Event); err != nil {
			items = items[:len(items)-1]
			bury = append(bury, Settlement{Receipt: pk.item.Receipt, Outcome: Bury, Attempts: pk.item.Attempts,
				Reason: damagedReason + ": " + err.Error()})
		}
	}
	// A damaged event goes to the dead letters, where it can be seen and dropped, rather than
	// fail every lease that reaches it.
	if len(damaged) > 0 {
		if err := q.buryDamaged(p, damaged); err != nil {
			q.Release(platformName, receiptsOfItems(items)...)
			return nil, fmt.Errorf("queue: lease %s events: %w", platformName, err)
		}
	}
	if len(bury) > 0 {
		if err := q.Settle(ctx, platformName, bury...); err != nil {
			q.Release(platformName, receiptsOfItems(items)...)
			return nil, fmt.Errorf("queue: lease %s events: %w", platformName, err)
		}
	}
	return items, nil
}

func receiptsOfItems(items []Item) []string {
	r := make([]string, len(items))
	for i, it := range items {
		r[i] = it.Receipt
	}
	return r
}

// damagedReason starts the reason of a dead letter whose stored bytes could not be read.
const damagedReason = "stored event is damaged and cannot be sent"

// damagedRecord is a ready record whose header cannot be read.
type damagedRecord struct {
	key    []byte
	reason string
}

// buryDamaged moves ready records whose header cannot be read into the dead letters, bytes as they
// are, with the reason.
func (q *Bolt) buryDamaged(p *partition, damaged []damagedRecord) error {
	now := q.now().UnixNano()
	var moved int64
	return q.submit(context.Background(), boltcommit.Write{
		Apply: func(tx *bbolt.Tx) error {
			moved = 0
			ready := tx.Bucket(p.ready)
			dead, err := tx.CreateBucketIfNotExists(p.dead)
			if err != nil || ready == nil {
				return err
			}
			for _, d := range damaged {
				v := ready.Get(d.key)
				if v == nil {
					continue
				}
				r := record{buried: now, reason: d.reason, event: bytes.Clone(v)}
				if err := dead.Put(seqKey(binary.BigEndian.Uint64(d.key[8:])), r.encode()); err != nil {
					return err
				}
				if err := ready.Delete(d.key); err != nil {
					return err
				}
				moved++
			}
			return nil
		},
		Committed: func() {
			p.depth.Add(-moved)
			p.deadCount.Add(moved)
		},
	}, false)
}

// picked is an event Lease took, before its JSON is decoded into item.Event.
type picked struct {
	item  Item
	event []byte // owned: copied out of bbolt, or the window's copy
}

// pick takes up to max due events of the partition, oldest due first, and marks them leased. It
// returns apart the ready records whose header cannot be read, which it skips.
func (q *Bolt) pick(p *partition, max int) ([]picked, []damagedRecord, error) {
	now := q.now().UnixNano()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := q.read(p, max); err != nil {
		return nil, nil, err
	}
	resident := p.residentCandidates(max)
	type stored struct {
		notBefore int64
		seq       uint64
		picked
	}
	var due []stored
	var damaged []damagedRecord
	err := q.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(p.ready)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil && len(due) < max; k, v = c.Next() {
			if len(k) != 16 {
				return fmt.Errorf("%w: key of %d bytes", errBadRecord, len(k))
			}
			notBefore := int64(binary.BigEndian.Uint64(k))
			if notBefore > now {
				break
			}
			seq := binary.BigEndian.Uint64(k[8:])
			if _, ok := p.leased[seq]; ok {
				continue
			}
			r, err := decodeRecord(v)
			if err != nil {
				damaged = append(damaged, damagedRecord{bytes.Clone(k), damagedReason + ": " + err.Error()})
				continue
			}
			due = append(due, stored{notBefore, seq, picked{
				item: Item{
					Receipt:    string(k),
					Enqueued:   fromUnixNano(r.enqueued),
					Attempts:   int(r.attempts),
					LastReason: r.reason,
				},
				event: bytes.Clone(r.event), // bbolt's memory is valid only in the transaction
			}})
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	out := make([]picked, 0, min(max, len(resident)+len(due)))
	for i, j := 0, 0; len(out) < max && (i < len(resident) || j < len(due)); {
		if j == len(due) || (i < len(resident) && p.window[resident[i]].enqueued <= due[j].notBefore) {
			e := &p.window[resident[i]]
			e.leased = true
			out = append(out, picked{
				item:  Item{Receipt: residentReceipt(e.pos), Enqueued: fromUnixNano(e.enqueued)},
				event: e.event,
			})
			i++
			continue
		}
		p.leased[due[j].seq] = struct{}{}
		out = append(out, due[j].picked)
		j++
	}
	return out, damaged, nil
}

// Settle implements Queue. Settlements of events leased from the log and of events leased from
// bbolt are written in one transaction each.
func (q *Bolt) Settle(ctx context.Context, platformName string, settlements ...Settlement) error {
	if len(settlements) == 0 {
		return nil
	}
	// Every lease of the call ends whatever happens, once what became of its event is committed
	// or failed: after a failed write the events are due again, and sending them twice is the
	// at-least-once price.
	defer q.Release(platformName, receipts(settlements)...)
	var resident []residentSettlement
	var stored []Settlement
	for _, s := range settlements {
		if pos, ok := parseResidentReceipt(s.Receipt); ok {
			resident = append(resident, residentSettlement{Settlement: s, pos: pos})
			continue
		}
		if len(s.Receipt) != 16 {
			return fmt.Errorf("queue: settle %s: receipt of %d bytes is not one of ours", platformName, len(s.Receipt))
		}
		stored = append(stored, s)
	}
	if err := q.checkOpen(ctx); err != nil {
		return err
	}
	p := q.partition(platformName)
	if len(resident) > 0 {
		// Events moved out of the log while leased are settled where they went.
		moved, err := q.settleResident(p, resident, false)
		if err != nil {
			return q.wrap("settle", platformName, len(settlements), err)
		}
		stored = append(stored, moved...)
	}
	if len(stored) == 0 {
		return nil
	}
	settlements = stored
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
		if pos, ok := parseResidentReceipt(r); ok {
			if i := p.find(pos); i >= 0 {
				p.window[i].leased = false
			}
			if key, ok := p.moved[pos]; ok {
				delete(p.moved, pos)
				delete(p.leased, binary.BigEndian.Uint64([]byte(key[8:])))
			}
			continue
		}
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
		for _, e := range p.window {
			if e.leased && !e.settled {
				leased++
			}
		}
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
			// A damaged event is listed without it, its reason saying so, so that it can be
			// seen and dropped rather than fail the listing of every other dead letter.
			if err := json.Unmarshal(r.event, &d.Event); err != nil && !strings.HasPrefix(d.Reason, damagedReason) {
				d.Reason = strings.TrimPrefix(d.Reason+"; ", "; ") + damagedReason + ": " + err.Error()
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
	if err := q.checkOpen(ctx); err != nil {
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

// Close implements Queue. Events waiting in the log stay there for the next OpenBolt; Close flushes
// the dedup keys and writes a last checkpoint, so the next open replays as little as it can.
func (q *Bolt) Close() error {
	if q.closed.Swap(true) {
		return nil // closed before
	}
	q.log.Close() // answers the appends in flight; later ones get ErrClosed
	close(q.logStop)
	<-q.logDone
	close(q.flushStop)
	<-q.flushDone
	var err error
	if !q.abandoned.Load() {
		if err = q.FlushDedup(context.Background()); err != nil {
			err = fmt.Errorf("queue: close: dedup keys kept in the log for the next open: %w", err)
		} else if err = q.checkpoint(); err != nil {
			err = fmt.Errorf("queue: close: %w", err)
		}
	}
	close(q.sweepStop)
	<-q.sweepDone
	q.committer.Close()
	q.dedup.Close()
	q.partsMu.Lock()
	for _, p := range q.parts {
		p.mu.Lock()
		if p.reader != nil {
			p.reader.Close()
			p.reader = nil
		}
		p.mu.Unlock()
	}
	q.partsMu.Unlock()
	if q.abandoned.Load() {
		return nil
	}
	return err
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
