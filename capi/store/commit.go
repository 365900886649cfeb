package store

import (
	"errors"
	"sync"
	"sync/atomic"

	"go.etcd.io/bbolt"
)

// maxGroup bounds the writes one group commit carries, so one transaction never holds bbolt's
// single writer lock long enough to stall the queue that shares the file.
const maxGroup = 256

// errClosed is returned by writes submitted after Close.
var errClosed = errors.New("store closed")

// groupCommitter is the pattern of capi/queue's committer, for the store's small durable writes
// (MarkSeen): one goroutine takes the first pending write, gathers every other write already
// waiting, and commits them in one bbolt transaction, so concurrent callers share one fsync. Writes
// that arrive during that fsync form the next group: the group size follows the load, with no fixed
// delay (bbolt's db.Batch waits up to MaxBatchDelay, 10 ms by default, before committing a lone
// write; on the request path that is latency for nothing).
//
// It is self-contained so that it can move to a package both this store and the queue use.
type groupCommitter struct {
	db      *bbolt.DB
	ops     chan *groupWrite
	done    chan struct{}
	commits atomic.Uint64 // write transactions of the store, the committer's and others (see Bolt.Commits)

	mu     sync.RWMutex // guards closed against sends on ops
	closed bool
}

// groupWrite is one write waiting for the committer. apply may run more than once (a failed group
// is retried write by write), each time in a fresh transaction: it must set its results anew.
type groupWrite struct {
	apply func(tx *bbolt.Tx) error
	done  chan error
}

func newGroupCommitter(db *bbolt.DB) *groupCommitter {
	c := &groupCommitter{db: db, ops: make(chan *groupWrite, maxGroup), done: make(chan struct{})}
	go c.loop()
	return c
}

// submit hands apply to the committer and returns a channel that receives the outcome once the
// transaction carrying it is durable (or failed). It does not wait.
func (c *groupCommitter) submit(apply func(tx *bbolt.Tx) error) <-chan error {
	w := &groupWrite{apply: apply, done: make(chan error, 1)}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		w.done <- errClosed
		return w.done
	}
	c.ops <- w
	return w.done
}

func (c *groupCommitter) loop() {
	defer close(c.done)
	group := make([]*groupWrite, 0, maxGroup)
	for w := range c.ops {
		group = append(group[:0], w)
	gather:
		for len(group) < maxGroup {
			select {
			case w, ok := <-c.ops:
				if !ok {
					break gather
				}
				group = append(group, w)
			default:
				break gather
			}
		}
		err := c.commit(group)
		if err != nil && len(group) > 1 {
			// One write's failure must not fail the others: commit each on its own.
			for _, w := range group {
				w.done <- c.commit([]*groupWrite{w})
			}
			continue
		}
		for _, w := range group {
			w.done <- err
		}
	}
}

func (c *groupCommitter) commit(group []*groupWrite) error {
	c.commits.Add(1)
	return c.db.Update(func(tx *bbolt.Tx) error {
		for _, w := range group {
			if err := w.apply(tx); err != nil {
				return err
			}
		}
		return nil
	})
}

// close commits the writes already submitted, refuses new ones and returns once the goroutine has
// exited. Calling it again does nothing.
func (c *groupCommitter) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	close(c.ops)
	c.mu.Unlock()
	<-c.done
}
