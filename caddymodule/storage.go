package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.etcd.io/bbolt"

	"github.com/caddy-capi/caddy-capi/capi/conversion"
	"github.com/caddy-capi/caddy-capi/capi/delivery"
	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/queue"
	"github.com/caddy-capi/caddy-capi/capi/store"
)

// storages holds one sharedStorage per storage identity (the absolute bbolt path), shared by
// every config that names it, so that a reload hands the open database, the queue and its workers
// from the old config to the new one. A config takes a reference in App.Provision and releases it
// in App.Cleanup; the last release closes the storage.
var storages = caddy.NewUsagePool()

// sharedStorage is what survives config reloads: the open database, the durable event queue and
// the visitor store on it, and the delivery engine whose workers drain the queue.
//
// Constructing one does no I/O, because App.Provision constructs it and `caddy validate` runs
// Provision in a separate process beside a running server that holds the bbolt lock. The database,
// queue, store and engine are opened by the first App.Start.
//
// The engine lives on the storage's lifetime, never a config's: open creates it with no senders;
// each config's App.Start installs the senders built from its settings (delivery.Engine.SetSenders
// swaps them atomically, so a reload never doubles a platform's workers); App.Stop puts the
// previous config's back when ours are still installed and that config still runs; Destruct
// drains the engine with a deadline before it closes the queue and the database.
type sharedStorage struct {
	path string

	// settings is the running config's resolved settings; nil until a config starts.
	settings atomic.Pointer[resolvedConfig]

	// workers is the lifetime of background work on this storage: it ends in Destruct, never with
	// a config's context, which is cancelled on every reload.
	workers context.Context
	cancel  context.CancelFunc
	// background counts the goroutines on workers (the visitor sweep), which Destruct waits for
	// before it closes the database under them.
	background sync.WaitGroup

	mu sync.Mutex
	db *bbolt.DB
	// queue is the durable event queue. Its Enqueue goes through the engine, which appends durably
	// and wakes the platform's idle workers, so that an event waits for its batch's flush interval
	// rather than for the workers' next poll, and the engine's counters see every event.
	queue    queue.Queue
	visitors *store.Bolt
	// engine runs the delivery workers over the queue; nil until the storage is open.
	engine *delivery.Engine
	// idKey is the installation's event ID key (see loadEventIDKey); zero until the storage is
	// open. It is never logged and never part of status.
	idKey    conversion.IDKey
	openedAt time.Time
	closed   bool
}

func newSharedStorage(path string) *sharedStorage {
	ctx, cancel := context.WithCancel(context.Background())
	return &sharedStorage{path: path, workers: ctx, cancel: cancel}
}

// visitorSweepInterval is how often expired visitor records are deleted from disk. Reads ignore
// expired records already; the sweep only reclaims their space, so hourly is plenty.
const visitorSweepInterval = time.Hour

// deliveryDrain bounds how long Destruct waits for in-flight sends: long enough for a platform's
// answer to come back and be settled, short enough not to hold up a shutdown. Sends cut short are
// released, still queued, and go out after the next start.
const deliveryDrain = 5 * time.Second

// open opens the database, the queue, the visitor store and the delivery engine if they are not
// open yet. It is called by every config's Start; only the first opens the file. The visitor store
// keeps the record lifetime of the config that opened it until the storage is released.
func (s *sharedStorage) open(lockTimeout, visitorTTL time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("capi: storage %s was released before it was opened", s.path)
	}
	if s.db != nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("capi: creating the storage directory: %v", err)
	}
	db, err := bbolt.Open(s.path, 0o600, queue.BoltOptions(lockTimeout))
	if errors.Is(err, bbolt.ErrTimeout) {
		return fmt.Errorf("capi: opening storage %s: the file is locked by another process after waiting %s; "+
			"stop the other Caddy using it, or give this one its own file with `storage bolt <path>`", s.path, lockTimeout)
	}
	if err != nil {
		return fmt.Errorf("capi: opening storage %s: %v", s.path, err)
	}
	q, err := queue.OpenBolt(db, queue.Options{})
	if err != nil {
		db.Close()
		return fmt.Errorf("capi: opening the event queue in %s: %v", s.path, err)
	}
	visitors, err := store.OpenBolt(db, store.Options{TTL: visitorTTL})
	if err != nil {
		q.Close()
		db.Close()
		return fmt.Errorf("capi: opening the visitor store in %s: %v", s.path, err)
	}
	idKey, err := loadEventIDKey(db)
	if err != nil {
		visitors.Close()
		q.Close()
		db.Close()
		return fmt.Errorf("capi: reading the event ID key in %s: %v", s.path, err)
	}
	engine := delivery.New(q, delivery.Options{Observer: engineObserver{newDeliveryObserver()}})
	s.db, s.visitors, s.engine, s.idKey = db, visitors, engine, idKey
	s.queue = wakingQueue{Queue: q, engine: engine}
	s.openedAt = time.Now()

	s.background.Add(1)
	go func() {
		defer s.background.Done()
		s.sweepVisitors(visitors, visitorSweepInterval)
	}()
	return nil
}

// sweepVisitors deletes expired visitor records every interval until the storage is released.
func (s *sharedStorage) sweepVisitors(v *store.Bolt, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.workers.Done():
			return
		case <-t.C:
			// A sweep cut short by Destruct resumes after the next start; a failed one is retried
			// at the next tick, and reads ignore expired records meanwhile.
			v.Sweep(s.workers)
		}
	}
}

// deliveryEngine returns the engine once the storage is open, or nil.
func (s *sharedStorage) deliveryEngine() *delivery.Engine {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.engine
}

// Destruct drains the delivery workers (waiting at most deliveryDrain for in-flight sends), stops
// the background work, lets the queue commit what was submitted, and closes the database. The pool
// calls it when the last config using this storage is cleaned up.
func (s *sharedStorage) Destruct() error {
	s.mu.Lock()
	s.closed = true
	engine := s.engine
	s.mu.Unlock()

	var errs []error
	if engine != nil {
		ctx, cancel := context.WithTimeout(context.Background(), deliveryDrain)
		if err := engine.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("capi: draining delivery on %s: %v", s.path, err))
		}
		cancel()
	}
	s.cancel()
	s.background.Wait()

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return errors.Join(errs...)
	}
	errs = append(errs, s.queue.Close(), s.visitors.Close())
	if err := s.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("capi: closing storage %s: %v", s.path, err))
	}
	s.db, s.queue, s.visitors, s.engine, s.idKey = nil, nil, nil, nil, conversion.IDKey{}
	return errors.Join(errs...)
}

// Where the installation's event ID key lives in the bbolt file: a bucket of its own, apart from
// the queue's ("queue…") and the visitor store's ("visitor…").
var (
	installBucket  = []byte("capi.install")
	eventIDKeyName = []byte("event_id_key")
)

// loadEventIDKey reads the installation's event ID key from db, drawing it from crypto/rand and
// storing it on the first open. Every source of the installation — the thank-you page, the shop's
// webhook, the network's postback — derives an order's event ID under this one key, so they share
// the ID; keeping it in the storage makes it survive restarts, reloads and upgrades, as the
// platforms' deduplication of orders in flight needs. It is secret (conversion.IDKey says why):
// errors name the file, never the bytes.
//
// A stored value of the wrong size is refused rather than replaced: a new key would silently give
// every order in flight a second ID and count it twice.
//
// In cluster mode (storage redis, a later issue) every node must derive under the same key, so it
// is read-or-created in Redis instead (SET NX of one key, then GET), in the storage's open beside
// the stream queue; this function is the bbolt backend's half of that contract.
func loadEventIDKey(db *bbolt.DB) (conversion.IDKey, error) {
	var key conversion.IDKey
	found := false
	err := db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(installBucket)
		if b == nil {
			return nil
		}
		stored := b.Get(eventIDKeyName)
		if stored == nil {
			return nil
		}
		var err error
		key, err = conversion.ParseIDKey(stored)
		found = err == nil
		return err
	})
	if err != nil || found {
		return key, err
	}
	// First open: draw and store in one transaction. Only one process holds the file (bbolt's
	// lock), so the read above cannot race another writer; the second read in the transaction
	// is cheap insurance all the same.
	err = db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(installBucket)
		if err != nil {
			return err
		}
		if stored := b.Get(eventIDKeyName); stored != nil {
			key, err = conversion.ParseIDKey(stored)
			return err
		}
		if key, err = conversion.NewIDKey(nil); err != nil {
			return err
		}
		return b.Put(eventIDKeyName, append([]byte(nil), key[:]...))
	})
	return key, err
}

// wakingQueue is the storage's queue as the request path sees it: Enqueue goes through the
// delivery engine. Everything else is the queue's own.
type wakingQueue struct {
	queue.Queue
	engine *delivery.Engine
}

// Enqueue implements queue.Queue.
func (w wakingQueue) Enqueue(ctx context.Context, platformName string, events ...event.Event) (int, error) {
	return w.engine.Enqueue(ctx, platformName, events...)
}

// engineObserver is the engine's view of the Prometheus collectors. Enqueued is left out: the
// callers of the storage's queue (the edge, postbacks, the admin test event) count what they
// enqueue, and the engine, through which their Enqueue goes, would count every event twice.
type engineObserver struct{ deliveryObserver }

// Enqueued implements delivery.Observer; see engineObserver.
func (engineObserver) Enqueued(string, int) {}

// engineObserver also counts the signals of accepted events, through deliveryObserver's
// DeliveredEvents.
var _ delivery.EventObserver = engineObserver{}

// storageStatus is the admin API's view of one shared storage.
type storageStatus struct {
	Path      string     `json:"path"`
	Backend   string     `json:"backend"`
	Open      bool       `json:"open"`
	OpenedAt  *time.Time `json:"opened_at,omitempty"`
	Started   bool       `json:"started"`
	Platforms []string   `json:"platforms"`
	Sink      string     `json:"sink,omitempty"`
	// Queue is the queue's state per platform, once the storage is open.
	Queue map[string]queue.PartitionStats `json:"queue,omitempty"`
}

func (s *sharedStorage) status(ctx context.Context) (storageStatus, error) {
	st := storageStatus{Path: s.path, Backend: backendBolt, Platforms: []string{}}
	s.mu.Lock()
	q := s.queue
	if s.db != nil {
		st.Open = true
		t := s.openedAt
		st.OpenedAt = &t
	}
	s.mu.Unlock()
	if q != nil {
		stats, err := q.Stats(ctx)
		if err != nil && !errors.Is(err, queue.ErrClosed) {
			return st, fmt.Errorf("queue stats of %s: %v", s.path, err)
		}
		st.Queue = stats
	}
	if cfg := s.settings.Load(); cfg != nil {
		st.Started = true
		st.Backend = cfg.storage.Backend
		if p := cfg.platforms(); p != nil {
			st.Platforms = p
		}
		if cfg.sink != nil {
			st.Sink = cfg.sink.Path
		}
	}
	return st, nil
}

// Interface guards
var _ caddy.Destructor = (*sharedStorage)(nil)
