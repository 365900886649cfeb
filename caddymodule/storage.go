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
)

// storages holds one sharedStorage per storage identity (the absolute bbolt path), shared by
// every config that names it, so that a reload hands the open database, the queue and its workers
// from the old config to the new one. A config takes a reference in App.Provision and releases it
// in App.Cleanup; the last release closes the storage.
var storages = caddy.NewUsagePool()

// sharedStorage is what survives config reloads: the open database and, once their packages are
// integrated, the durable queue with its delivery workers and the visitor store built on it.
//
// Constructing one does no I/O, because App.Provision constructs it and `caddy validate` runs
// Provision in a separate process beside a running server that holds the bbolt lock. The database
// is opened by the first App.Start.
//
// Integration points for the packages written in parallel:
//   - open is where capi/store and capi/queue are opened on db, and where the delivery workers
//     are started with workers (their own lifetime, not a config's).
//   - Destruct is where the workers are drained with a deadline before db is closed.
//   - settings is what the workers read for each batch: the platform clients are rebuilt from it
//     when a new config installs its settings.
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
	openedAt time.Time
	closed   bool
}

func newSharedStorage(path string) *sharedStorage {
	ctx, cancel := context.WithCancel(context.Background())
	return &sharedStorage{path: path, workers: ctx, cancel: cancel}
}

// open opens the database if it is not open yet. It is called by every config's Start; only the
// first opens the file.
func (s *sharedStorage) open(lockTimeout time.Duration) error {
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
	db, err := bbolt.Open(s.path, 0o600, &bbolt.Options{Timeout: lockTimeout})
	if errors.Is(err, bbolt.ErrTimeout) {
		return fmt.Errorf("capi: opening storage %s: the file is locked by another process after waiting %s; "+
			"stop the other Caddy using it, or give this one its own file with `storage bolt <path>`", s.path, lockTimeout)
	}
	if err != nil {
		return fmt.Errorf("capi: opening storage %s: %v", s.path, err)
	}
	s.db = db
	s.openedAt = time.Now()
	return nil
}

// Destruct stops the background work and closes the database. The pool calls it when the last
// config using this storage is cleaned up.
func (s *sharedStorage) Destruct() error {
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	if err != nil {
		return fmt.Errorf("capi: closing storage %s: %v", s.path, err)
	}
	return nil
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
}

func (s *sharedStorage) status() storageStatus {
	st := storageStatus{Path: s.path, Backend: backendBolt, Platforms: []string{}}
	s.mu.Lock()
	if s.db != nil {
		st.Open = true
		t := s.openedAt
		st.OpenedAt = &t
	}
	s.mu.Unlock()
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
	return st
}

// Interface guards
var _ caddy.Destructor = (*sharedStorage)(nil)
