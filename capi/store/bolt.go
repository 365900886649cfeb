package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"go.etcd.io/bbolt"

	"github.com/caddy-capi/caddy-capi/capi/internal/boltcommit"
)

// Buckets of the Bolt store. They all start with "visitor" because the queue shares the file and
// prefixes its own buckets with "queue".
var (
	// bucketVisitors maps a visitor ID to its record, JSON-encoded (readable with bbolt's CLI when
	// debugging, and tolerant of fields added later).
	bucketVisitors = []byte("visitor")
	// bucketByClick maps kind 0x00 value to a visitor ID.
	bucketByClick = []byte("visitor_by_click")
	// bucketByEmail maps a Meta email hash to a visitor ID.
	bucketByEmail = []byte("visitor_by_email")
	// bucketByCart maps a cart token to a visitor ID.
	bucketByCart = []byte("visitor_by_cart")
	// bucketByUpdated holds keys of big-endian Updated nanoseconds followed by the visitor ID, so
	// Sweep walks the oldest records first and stops at the first live one.
	bucketByUpdated = []byte("visitor_by_updated")
	// bucketSeen maps SHA-256(key) to its big-endian expiry in nanoseconds. Keys are hashed so an
	// order ID or an email that a caller put into a key never lands on disk in plaintext.
	bucketSeen = []byte("visitor_seen")
	// bucketSeenByExpiry holds keys of big-endian expiry nanoseconds followed by SHA-256(key), for
	// Sweep.
	bucketSeenByExpiry = []byte("visitor_seen_by_expiry")
)

// sweepBatch bounds the records one Sweep transaction deletes, so a sweep never holds bbolt's single
// writer lock long enough to stall the queue that shares the file.
const sweepBatch = 256

// lockStripes is the number of per-ID locks that order cache fills against writes.
const lockStripes = 64

// Bolt is the Store on a bbolt file, with a ristretto cache of decoded records in front of Get.
// Records are stored as JSON; the email index holds the Meta profile's email hashes.
//
// Index ownership: an index value (a click ID, an email hash, a cart token) points to one visitor,
// the one that most recently gained it. A visitor that drops a value, or is erased, removes the entry
// only if it still points to that visitor.
type Bolt struct {
	db    *bbolt.DB
	opts  Options
	cache *ristretto.Cache[string, Visitor] // nil when disabled

	// locks serialize, per visitor ID, a cache fill on a miss against a write of the same record, so
	// a reader that loaded the old record can never put it in the cache after the write invalidated
	// it.
	locks [lockStripes]sync.RWMutex
	seed  maphash.Seed

	// committer group-commits MarkSeen.
	committer *boltcommit.Committer
	// updates counts the write transactions the store runs itself, beside the committer's (see
	// Commits).
	updates atomic.Uint64
	// damaged counts the damaged records Get has met (see ErrDamaged).
	damaged atomic.Uint64
}

// Damaged reports how many times Get has met a damaged record since the store was opened: each is
// answered as absent and replaced by the visitor's next write.
func (s *Bolt) Damaged() uint64 { return s.damaged.Load() }

// OpenBolt prepares the visitor buckets on an already-open bbolt handle (the one the queue uses; the
// caller owns it and closes it after Close).
func OpenBolt(db *bbolt.DB, opts Options) (*Bolt, error) {
	if db == nil {
		return nil, fmt.Errorf("store: open bolt: nil database: %w", ErrInvalid)
	}
	opts = opts.withDefaults()
	err := db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketVisitors, bucketByClick, bucketByEmail, bucketByCart,
			bucketByUpdated, bucketSeen, bucketSeenByExpiry} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: open bolt %s: %w", db.Path(), err)
	}
	s := &Bolt{db: db, opts: opts, seed: maphash.MakeSeed(), committer: newCommitter(db)}
	if opts.CacheSize > 0 {
		s.cache, err = ristretto.NewCache(&ristretto.Config[string, Visitor]{
			NumCounters:        int64(opts.CacheSize) * 10,
			MaxCost:            int64(opts.CacheSize),
			BufferItems:        64,
			IgnoreInternalCost: true,
		})
		if err != nil {
			s.committer.Close()
			return nil, fmt.Errorf("store: visitor cache of %d: %w", opts.CacheSize, err)
		}
	}
	return s, nil
}

// Close commits the MarkSeen calls already waiting, then releases the cache; MarkSeen fails after
// it. It does not close the shared database.
func (s *Bolt) Close() error {
	s.committer.Close()
	if s.cache != nil {
		s.cache.Close()
	}
	return nil
}

func (s *Bolt) lock(id string) *sync.RWMutex {
	return &s.locks[maphash.String(s.seed, id)%lockStripes]
}

// Get implements Store.
func (s *Bolt) Get(ctx context.Context, id string) (Visitor, bool, error) {
	if err := ctx.Err(); err != nil {
		return Visitor{}, false, fmt.Errorf("store: get visitor: %w", err)
	}
	if id == "" {
		return Visitor{}, false, nil
	}
	now := s.opts.Now()
	if s.cache != nil {
		if v, ok := s.cache.Get(id); ok {
			if expired(v.Updated, now, s.opts.TTL) {
				return Visitor{}, false, nil
			}
			return clone(v), true, nil
		}
	}
	l := s.lock(id)
	l.RLock()
	defer l.RUnlock()
	var v Visitor
	var found bool
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		v, found, err = load(tx, id)
		return err
	})
	if errors.Is(err, ErrDamaged) {
		s.damaged.Add(1)
		return Visitor{}, false, nil
	}
	if err != nil {
		return Visitor{}, false, fmt.Errorf("store: get visitor %s: %w", redactID(id), err)
	}
	if !found || expired(v.Updated, now, s.opts.TTL) {
		return Visitor{}, false, nil
	}
	s.cacheSet(v, now)
	return clone(v), true, nil
}

func (s *Bolt) cacheSet(v Visitor, now time.Time) {
	if s.cache == nil {
		return
	}
	if ttl := v.Updated.Add(s.opts.TTL).Sub(now); ttl > 0 {
		s.cache.SetWithTTL(v.ID, clone(v), 1, ttl)
	}
}

// cacheDrop invalidates a record and waits until the cache has applied every pending set, so that
// once the write returns no reader can see the old record.
func (s *Bolt) cacheDrop(id string) {
	if s.cache == nil {
		return
	}
	s.cache.Del(id)
	s.cache.Wait()
}

// Update implements Store.
func (s *Bolt) Update(ctx context.Context, id string, fn func(*Visitor) error) (Visitor, error) {
	if err := ctx.Err(); err != nil {
		return Visitor{}, fmt.Errorf("store: update visitor: %w", err)
	}
	if id == "" {
		return Visitor{}, fmt.Errorf("store: update visitor: empty ID: %w", ErrInvalid)
	}
	l := s.lock(id)
	l.Lock()
	defer l.Unlock()
	now := s.opts.Now()
	var out Visitor
	err := s.update(func(tx *bbolt.Tx) error {
		e, err := s.edit(tx, id, fn, now)
		if err != nil {
			return err
		}
		out = e.next
		return e.write(tx)
	})
	if err != nil {
		return Visitor{}, fmt.Errorf("store: update visitor %s: %w", redactID(id), err)
	}
	s.cacheDrop(id)
	return clone(out), nil
}

// Change is one visitor's edit for UpdateMany: Fn edits the record of ID as Update's fn does.
type Change struct {
	ID string
	Fn func(*Visitor) error
}

// UpdateMany applies the changes as Update would, one after the other, in one transaction with one
// fsync: the way to write a burst of records without one disk sync each. Changes to the same ID
// apply in order, each seeing the record the one before left. It returns one error per change
// (nil when it was written); a change that fails (its Fn returns an error, its record is refused,
// its ID is empty) is not written and does not stop the others, as with bbolt's Batch.
func (s *Bolt) UpdateMany(ctx context.Context, changes []Change) []error {
	errs := make([]error, len(changes))
	if err := ctx.Err(); err != nil {
		for i := range errs {
			errs[i] = fmt.Errorf("store: update visitor: %w", err)
		}
		return errs
	}
	pending := make([]int, 0, len(changes)) // indexes of the changes still to write
	for i, c := range changes {
		if c.ID == "" {
			errs[i] = fmt.Errorf("store: update visitor: empty ID: %w", ErrInvalid)
			continue
		}
		pending = append(pending, i)
	}
	if len(pending) == 0 {
		return errs
	}
	now := s.opts.Now()
	for len(pending) > 0 {
		failed := -1 // the change whose write broke the transaction, retried without it
		err := s.update(func(tx *bbolt.Tx) error {
			for _, i := range pending {
				errs[i] = nil
				e, err := s.edit(tx, changes[i].ID, changes[i].Fn, now)
				if err != nil {
					// Nothing of this change was written; the transaction goes on without it.
					errs[i] = fmt.Errorf("store: update visitor %s: %w", redactID(changes[i].ID), err)
					continue
				}
				if err := e.write(tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if err == nil {
			break
		}
		if failed < 0 {
			// The commit itself failed: nothing was written.
			for _, i := range pending {
				if errs[i] == nil {
					errs[i] = fmt.Errorf("store: update visitor %s: %w", redactID(changes[i].ID), err)
				}
			}
			break
		}
		errs[failed] = fmt.Errorf("store: update visitor %s: %w", redactID(changes[failed].ID), err)
		pending = slices.DeleteFunc(pending, func(i int) bool { return i == failed })
	}
	s.cacheDropMany(changes)
	return errs
}

// cacheDropMany invalidates the records of changes after their transaction. Unlike Update it does
// not hold the records' locks across the transaction: a batch touches most stripes, and a Get that
// misses the cache on the request path would wait for the whole batch and its fsync. Taking each
// stripe's lock for the invalidation is enough: a reader that loaded a record before the commit
// holds its stripe's read lock until it has put that record in the cache, so the invalidation comes
// after it; a reader that comes later reads the committed record.
func (s *Bolt) cacheDropMany(changes []Change) {
	if s.cache == nil {
		return
	}
	var stripes [lockStripes][]string
	for _, c := range changes {
		i := maphash.String(s.seed, c.ID) % lockStripes
		stripes[i] = append(stripes[i], c.ID)
	}
	for i, ids := range stripes {
		if len(ids) == 0 {
			continue
		}
		s.locks[i].Lock()
		for _, id := range ids {
			s.cache.Del(id)
		}
		s.locks[i].Unlock()
	}
	s.cache.Wait()
}

// edit is a record change worked out but not yet written: fn has run and the result passed
// CheckVisitor.
type edit struct {
	old     *Visitor // the stored record, nil when there is none
	expired bool     // old is past its TTL and goes, indexes and all, before next is written
	next    Visitor
}

// edit reads the record of id and applies fn to a copy; it writes nothing, so a refused change
// leaves the transaction as it was.
func (s *Bolt) edit(tx *bbolt.Tx, id string, fn func(*Visitor) error, now time.Time) (edit, error) {
	old, found, err := load(tx, id)
	if errors.Is(err, ErrDamaged) {
		// Replaced by the new record; the index entries it had point here still and go as the
		// entries do (an entry is dropped only while it points to its record, and Sweep rechecks).
		old, found, err = Visitor{}, false, nil
	}
	if err != nil {
		return edit{}, err
	}
	var e edit
	// An expired record is gone for every reader; it must not come back to life with its old
	// click IDs and profile because the visitor returned.
	live := found && !expired(old.Updated, now, s.opts.TTL)
	if found {
		e.old, e.expired = &old, !live
	}
	if live {
		e.next = clone(old)
	} else {
		e.next = Visitor{ID: id}
	}
	if err := fn(&e.next); err != nil {
		return edit{}, fmt.Errorf("update function: %w", err)
	}
	e.next.ID = id
	if err := CheckVisitor(&e.next); err != nil {
		return edit{}, err
	}
	if !live || e.next.Created.IsZero() {
		e.next.Created = now
	}
	e.next.Updated = now
	return e, nil
}

// write saves the edit with its index entries.
func (e edit) write(tx *bbolt.Tx) error {
	prev := e.old
	if e.expired {
		if err := remove(tx, *e.old); err != nil {
			return err
		}
		prev = nil
	}
	return save(tx, prev, e.next)
}

// FindByClickID implements Store.
func (s *Bolt) FindByClickID(ctx context.Context, kind, value string) (Visitor, bool, error) {
	if !IsClickKind(kind) {
		return Visitor{}, false, nil
	}
	return s.find(ctx, "click ID", bucketByClick, clickKey(kind, value), func(v *Visitor) bool {
		c, ok := v.Clicks[kind]
		return ok && c.Value == value
	})
}

// FindByEmailHash implements Store.
func (s *Bolt) FindByEmailHash(ctx context.Context, sha256hex string) (Visitor, bool, error) {
	return s.find(ctx, "email hash", bucketByEmail, []byte(sha256hex), func(v *Visitor) bool {
		return contains(v.User.Meta.Emails, sha256hex)
	})
}

// FindByCartToken implements Store.
func (s *Bolt) FindByCartToken(ctx context.Context, token string) (Visitor, bool, error) {
	return s.find(ctx, "cart token", bucketByCart, []byte(token), func(v *Visitor) bool {
		return contains(v.CartTokens, token)
	})
}

// find resolves an index entry and returns the record through Get, so lookups share the cache and
// the expiry rule. holds re-checks that the record still carries the value: an index entry is only
// a pointer, the record is the truth.
func (s *Bolt) find(ctx context.Context, what string, bucket, key []byte, holds func(*Visitor) bool) (Visitor, bool, error) {
	if err := ctx.Err(); err != nil {
		return Visitor{}, false, fmt.Errorf("store: find by %s: %w", what, err)
	}
	if len(key) == 0 {
		return Visitor{}, false, nil
	}
	var id string
	err := s.db.View(func(tx *bbolt.Tx) error {
		id = string(tx.Bucket(bucket).Get(key))
		return nil
	})
	if err != nil {
		return Visitor{}, false, fmt.Errorf("store: find by %s: %w", what, err)
	}
	if id == "" {
		return Visitor{}, false, nil
	}
	v, ok, err := s.Get(ctx, id)
	if err != nil || !ok || !holds(&v) {
		return Visitor{}, false, err
	}
	return v, true, nil
}

// Erase implements Store.
func (s *Bolt) Erase(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: erase visitor: %w", err)
	}
	if id == "" {
		return fmt.Errorf("store: erase visitor: empty ID: %w", ErrInvalid)
	}
	l := s.lock(id)
	l.Lock()
	defer l.Unlock()
	err := s.update(func(tx *bbolt.Tx) error {
		v, found, err := load(tx, id)
		if errors.Is(err, ErrDamaged) {
			return tx.Bucket(bucketVisitors).Delete([]byte(id))
		}
		if err != nil || !found {
			return err
		}
		return remove(tx, v)
	})
	if err != nil {
		return fmt.Errorf("store: erase visitor %s: %w", redactID(id), err)
	}
	s.cacheDrop(id)
	return nil
}

// MarkSeen implements Store. Concurrent calls share one transaction and one fsync (see
// newCommitter); each returns once the transaction carrying its key is durable. Within a group
// the keys apply in arrival order, so of two calls with the same key exactly one is first.
func (s *Bolt) MarkSeen(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("store: mark seen: %w", err)
	}
	if key == "" || ttl <= 0 {
		return false, fmt.Errorf("store: mark seen: need a key and a positive ttl (got ttl %v): %w", ttl, ErrInvalid)
	}
	h := sha256.Sum256([]byte(key))
	now := s.opts.Now()
	var first bool
	done := s.committer.Submit(boltcommit.Write{Apply: func(tx *bbolt.Tx) error {
		var err error
		first, err = markSeen(tx, h[:], now, ttl)
		return err
	}})
	select {
	case err := <-done:
		if err != nil {
			return false, fmt.Errorf("store: mark seen: %w", err)
		}
		return first, nil
	case <-ctx.Done():
		// The mark may still commit; the caller cannot know, and must treat the key as unknown.
		return false, fmt.Errorf("store: mark seen: %w", ctx.Err())
	}
}

// Seen reports whether key carries an unexpired mark; it reads only, so it costs no disk sync.
func (s *Bolt) Seen(ctx context.Context, key string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("store: seen: %w", err)
	}
	if key == "" {
		return false, fmt.Errorf("store: seen: need a key: %w", ErrInvalid)
	}
	h := sha256.Sum256([]byte(key))
	now := s.opts.Now().UnixNano()
	var seen bool
	err := s.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketSeen).Get(h[:]); len(v) == 8 {
			seen = now < int64(binary.BigEndian.Uint64(v))
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("store: seen: %w", err)
	}
	return seen, nil
}

// markSeen records the hashed key until now+ttl unless it is already recorded past now, and
// reports whether it recorded it.
func markSeen(tx *bbolt.Tx, h []byte, now time.Time, ttl time.Duration) (bool, error) {
	seen := tx.Bucket(bucketSeen)
	byExpiry := tx.Bucket(bucketSeenByExpiry)
	if old := seen.Get(h); len(old) == 8 {
		exp := int64(binary.BigEndian.Uint64(old))
		if now.UnixNano() < exp {
			return false, nil
		}
		if err := byExpiry.Delete(timeKey(exp, h)); err != nil {
			return false, err
		}
	}
	exp := now.Add(ttl).UnixNano()
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(exp))
	if err := seen.Put(h, v[:]); err != nil {
		return false, err
	}
	return true, byExpiry.Put(timeKey(exp, h), nil)
}

// Commits returns how many write transactions (each one fsync) the store has committed or tried
// since it was opened: the measure of how well its writes are grouped.
func (s *Bolt) Commits() uint64 { return s.committer.Commits() + s.updates.Load() }

// update runs fn in a write transaction of its own, counted in Commits.
func (s *Bolt) update(fn func(tx *bbolt.Tx) error) error {
	s.updates.Add(1)
	return s.db.Update(fn)
}

// Sweep deletes expired visitor records with their index entries, and expired idempotency keys, in
// transactions of at most sweepBatch deletions each, until nothing expired is left or ctx is done. It
// returns how many entries it removed. Reads already ignore expired records; Sweep reclaims the
// space. Run it periodically (hourly is plenty).
func (s *Bolt) Sweep(ctx context.Context) (int, error) {
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("store: sweep: %w", err)
		}
		n, ids, err := s.sweepBatch()
		total += n
		for _, id := range ids {
			s.cacheDrop(id)
		}
		if err != nil {
			return total, fmt.Errorf("store: sweep: %w", err)
		}
		if n < sweepBatch {
			return total, nil
		}
	}
}

func (s *Bolt) sweepBatch() (int, []string, error) {
	now := s.opts.Now()
	n := 0
	var ids []string
	err := s.update(func(tx *bbolt.Tx) error {
		// Visitors expire at Updated+TTL, so everything keyed before now-TTL is gone.
		cutoff := now.Add(-s.opts.TTL).UnixNano()
		c := tx.Bucket(bucketByUpdated).Cursor()
		var stale, junk [][]byte
		for k, _ := c.First(); k != nil && n < sweepBatch; k, _ = c.Next() {
			if len(k) < 8 {
				// Shorter than any key the store writes, so it sorts first: were it to end the
				// scan, nothing would ever expire again.
				junk = append(junk, bytes.Clone(k))
				continue
			}
			if int64(binary.BigEndian.Uint64(k)) > cutoff {
				break
			}
			stale = append(stale, bytes.Clone(k))
			n++
		}
		for _, k := range junk {
			if err := tx.Bucket(bucketByUpdated).Delete(k); err != nil {
				return err
			}
		}
		for _, k := range stale {
			id := string(k[8:])
			v, found, err := load(tx, id)
			switch {
			case errors.Is(err, ErrDamaged):
				// Unreadable, so its age is unknown; its index entry says it is past its TTL.
				if err := tx.Bucket(bucketVisitors).Delete([]byte(id)); err != nil {
					return err
				}
				ids = append(ids, id)
			case err != nil:
				return err
			case found && expired(v.Updated, now, s.opts.TTL):
				if err := remove(tx, v); err != nil {
					return err
				}
				ids = append(ids, id)
			}
			// The entry is stale either way (a record without its key, or an older key left behind).
			if err := tx.Bucket(bucketByUpdated).Delete(k); err != nil {
				return err
			}
		}
		var seenKeys [][]byte
		junk = junk[:0]
		c = tx.Bucket(bucketSeenByExpiry).Cursor()
		for k, _ := c.First(); k != nil && n < sweepBatch; k, _ = c.Next() {
			if len(k) < 8 {
				junk = append(junk, bytes.Clone(k))
				continue
			}
			if int64(binary.BigEndian.Uint64(k)) > now.UnixNano() {
				break
			}
			seenKeys = append(seenKeys, bytes.Clone(k))
			n++
		}
		for _, k := range junk {
			if err := tx.Bucket(bucketSeenByExpiry).Delete(k); err != nil {
				return err
			}
		}
		for _, k := range seenKeys {
			if err := tx.Bucket(bucketSeen).Delete(k[8:]); err != nil {
				return err
			}
			if err := tx.Bucket(bucketSeenByExpiry).Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return n, ids, err
}

// load reads and decodes one record. A record that does not decode, names another visitor or
// holds values the store would refuse to write is damaged (bytes changed on disk): the error wraps
// ErrDamaged and, like every error here, echoes none of the record (the JSON decoder's messages
// quote the bytes they fail on).
func load(tx *bbolt.Tx, id string) (Visitor, bool, error) {
	raw := tx.Bucket(bucketVisitors).Get([]byte(id))
	if raw == nil {
		return Visitor{}, false, nil
	}
	var v Visitor
	if err := json.Unmarshal(raw, &v); err != nil {
		return Visitor{}, false, fmt.Errorf("record of %d bytes does not decode: %w", len(raw), ErrDamaged)
	}
	if v.ID != id {
		return Visitor{}, false, fmt.Errorf("record names another visitor ID: %w", ErrDamaged)
	}
	if err := CheckVisitor(&v); err != nil {
		return Visitor{}, false, fmt.Errorf("record holds a value the store refuses: %w", ErrDamaged)
	}
	return v, true, nil
}

// save writes v and moves its index entries from what prev had to what v has.
func save(tx *bbolt.Tx, prev *Visitor, v Visitor) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode record: %w", err)
	}
	id := []byte(v.ID)
	if err := tx.Bucket(bucketVisitors).Put(id, raw); err != nil {
		return err
	}
	now := indexEntries(v)
	if prev != nil {
		for _, e := range indexEntries(*prev) {
			if !hasEntry(now, e) {
				if err := dropEntry(tx, e, id); err != nil {
					return err
				}
			}
		}
		if err := tx.Bucket(bucketByUpdated).Delete(timeKey(prev.Updated.UnixNano(), id)); err != nil {
			return err
		}
	}
	for _, e := range now {
		b := tx.Bucket(e.bucket)
		if !bytes.Equal(b.Get(e.key), id) {
			if err := b.Put(e.key, id); err != nil {
				return err
			}
		}
	}
	return tx.Bucket(bucketByUpdated).Put(timeKey(v.Updated.UnixNano(), id), nil)
}

// remove deletes v and every index entry that points to it.
func remove(tx *bbolt.Tx, v Visitor) error {
	id := []byte(v.ID)
	for _, e := range indexEntries(v) {
		if err := dropEntry(tx, e, id); err != nil {
			return err
		}
	}
	if err := tx.Bucket(bucketByUpdated).Delete(timeKey(v.Updated.UnixNano(), id)); err != nil {
		return err
	}
	return tx.Bucket(bucketVisitors).Delete(id)
}

// dropEntry deletes an index entry if it still points to id: another visitor may have claimed the
// value since.
func dropEntry(tx *bbolt.Tx, e entry, id []byte) error {
	b := tx.Bucket(e.bucket)
	if bytes.Equal(b.Get(e.key), id) {
		return b.Delete(e.key)
	}
	return nil
}

type entry struct {
	bucket, key []byte
}

func indexEntries(v Visitor) []entry {
	var es []entry
	for kind, c := range v.Clicks {
		if c.Value != "" {
			es = append(es, entry{bucketByClick, clickKey(kind, c.Value)})
		}
	}
	for _, h := range v.User.Meta.Emails {
		if h != "" {
			es = append(es, entry{bucketByEmail, []byte(h)})
		}
	}
	for _, t := range v.CartTokens {
		if t != "" {
			es = append(es, entry{bucketByCart, []byte(t)})
		}
	}
	return es
}

func hasEntry(es []entry, e entry) bool {
	for _, x := range es {
		if bytes.Equal(x.bucket, e.bucket) && bytes.Equal(x.key, e.key) {
			return true
		}
	}
	return false
}

// clickKey separates kind and value with 0x00; kinds are fixed names without it, so keys never
// collide.
func clickKey(kind, value string) []byte {
	if kind == "" || value == "" {
		return nil
	}
	k := make([]byte, 0, len(kind)+1+len(value))
	k = append(k, kind...)
	k = append(k, 0)
	return append(k, value...)
}

func timeKey(nanos int64, suffix []byte) []byte {
	k := make([]byte, 8, 8+len(suffix))
	binary.BigEndian.PutUint64(k, uint64(nanos))
	return append(k, suffix...)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Interface guards
var (
	_ Store   = (*Bolt)(nil)
	_ Batcher = (*Bolt)(nil)
)
