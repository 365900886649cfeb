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

	"github.com/caddy-capi/caddy-capi/capi/queue"
	"github.com/caddy-capi/caddy-capi/capi/store"
)

// storages holds one sharedStorage per storage identity (the absolute bbolt path), shared by
// every config that names it, so that a reload hands the open database, the queue and its workers
// from the old config to the new one. A config takes a reference in App.Provision and releases it
// in App.Cleanup; the last release closes the storage.
var storages = caddy.NewUsagePool()

// sharedStorage is what survives config reloads: the open database, the durable event queue and
// the visitor store on it, and (once capi/delivery is integrated) the delivery workers.
//
// Constructing one does no I/O, because App.Provision constructs it and `caddy validate` runs
// Provision in a separate process beside a running server that holds the bbolt lock. The database,
// queue and store are opened by the first App.Start.
//
// Where the delivery engine attaches: open starts it on queue with workers as its lifetime (never
// a config's); App.Start installs the platform senders built from settings and App.Stop puts the
// previous ones back; Destruct closes it, draining with a deadline, before the queue.
type sharedStorage struct {
	path string

	// settings is the running config's resolved settings; nil until a config starts.
	settings atomic.Pointer[resolvedConfig]

	// workers is the lifetime of background work on this storage: it ends in Destruct, never with
	// a config's context, which is cancelled on every reload.
	workers context.Context
	cancel  context.CancelFunc

	mu       sync.Mutex
	db       *bbolt.DB
	queue    *queue.Bolt
	visitors *store.Bolt
	openedAt time.Time
	closed   bool
}

func newSharedStorage(path string) *sharedStorage {
	ctx, cancel := context.WithCancel(context.Background())
	return &sharedStorage{path: path, workers: ctx, cancel: cancel}
}

// open opens the database, the queue and the visitor store if they are not open yet. It is called
// by every config's Start; only the first opens the file. The visitor store keeps the record
// lifetime of the config that opened it until the storage is released.
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
	s.db, s.queue, s.visitors = db, q, visitors
	s.openedAt = time.Now()
	return nil
}

// Destruct stops the background work, lets the queue commit what was submitted, and closes the
// database. The pool calls it when the last config using this storage is cleaned up.
func (s *sharedStorage) Destruct() error {
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.db == nil {
		return nil
	}
	errs := []error{s.queue.Close(), s.visitors.Close()}
	if err := s.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("capi: closing storage %s: %v", s.path, err))
	}
	s.db, s.queue, s.visitors = nil, nil, nil
	return errors.Join(errs...)
}

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
