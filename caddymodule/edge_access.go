package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/conversion"
	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/queue"
	"github.com/caddy-capi/caddy-capi/capi/store"
)

// storageWait is how long the edge waits for the shared storage to open. Caddy starts its apps in
// random order, so the http app may serve its first requests before the capi app's Start has
// opened the database; waiting a little beats losing the conversion of such a request.
const storageWait = 5 * time.Second

// errStorageReleased reports a storage whose last config was cleaned up: nothing will open it.
var errStorageReleased = errors.New("capi: storage released")

// edgeHandles returns the queue and the visitor store of s, waiting up to wait (or until ctx ends)
// for the first App.Start to open them.
func (s *sharedStorage) edgeHandles(ctx context.Context, wait time.Duration) (queue.Queue, store.Store, error) {
	deadline := time.Now().Add(wait)
	for {
		s.mu.Lock()
		q, v, closed := s.queue, s.visitors, s.closed
		s.mu.Unlock()
		switch {
		case q != nil && v != nil:
			return q, v, nil
		case closed:
			return nil, nil, errStorageReleased
		case !time.Now().Before(deadline):
			return nil, nil, fmt.Errorf("capi: storage %s is not open after %s; the capi app has not started", s.path, wait)
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, fmt.Errorf("capi: waiting for storage %s: %w", s.path, ctx.Err())
		case <-t.C:
		}
	}
}

// eventIDKey returns the installation's event ID key, waiting as edgeHandles does for the storage
// to open: an order's event ID must never be derived without it.
func (s *sharedStorage) eventIDKey(ctx context.Context) (conversion.IDKey, error) {
	if _, _, err := s.edgeHandles(ctx, storageWait); err != nil {
		return conversion.IDKey{}, err
	}
	s.mu.Lock()
	key := s.idKey
	s.mu.Unlock()
	if key.IsZero() { // released between the two locks
		return key, errStorageReleased
	}
	return key, nil
}

// edgeVisitors returns the visitor store of s, waiting as edgeHandles does.
func (s *sharedStorage) edgeVisitors(ctx context.Context) (store.Store, error) {
	_, v, err := s.edgeHandles(ctx, storageWait)
	return v, err
}

// enqueueEdge appends e for each platform and returns how many copies were new; the queue refuses a
// (platform, event name, event ID) it saw within its dedup window. Each call is durable when it
// returns without error. The platforms are all tried even when one fails.
func (s *sharedStorage) enqueueEdge(ctx context.Context, platforms []string, e event.Event) (int, error) {
	if len(platforms) == 0 {
		return 0, nil
	}
	q, _, err := s.edgeHandles(ctx, storageWait)
	if err != nil {
		return 0, err
	}
	// The platforms' appends go to the queue at once, so its group commit makes them one durable
	// write instead of one fsync after another while the shopper or the network waits.
	obs := newDeliveryObserver()
	counts := make([]int, len(platforms))
	errs := make([]error, len(platforms))
	var wg sync.WaitGroup
	for i, p := range platforms {
		wg.Go(func() {
			n, err := q.Enqueue(ctx, p, e)
			if err != nil {
				errs[i] = fmt.Errorf("enqueue %s %s for %s: %w", e.Name, e.ID, p, err)
				return
			}
			if n > 0 {
				obs.Enqueued(p, n)
			}
			counts[i] = n
		})
	}
	wg.Wait()
	added := 0
	for _, n := range counts {
		added += n
	}
	return added, errors.Join(errs...)
}
