// Package boltcommit groups concurrent writes to a bbolt database into one durable transaction, so
// that callers who each need their write on disk before they answer share one fsync.
//
// One goroutine per Committer takes the first pending write, gathers every other write already
// waiting (up to a bound), and commits them in one bbolt transaction. Writes that arrive during that
// fsync form the next group: the group size follows the load, with no fixed delay (bbolt's db.Batch
// waits up to MaxBatchDelay, 10 ms by default, before committing a lone write; on the request path
// that is latency for nothing). When a group fails, each of its writes is retried in a transaction
// of its own, so one bad write never fails the others.
//
// It owns only the grouping and the committer's lifecycle. It must not know what the writes mean
// (buckets, keys, records stay with the queue and the store), must not wait on a caller's context
// (whether a caller may stop waiting is the caller's decision, made on the channel Submit returns),
// and must not close the database, which stays its opener's.
package boltcommit

import (
	"errors"
	"sync"
	"sync/atomic"

	"go.etcd.io/bbolt"
)

// ErrClosed is what a write submitted after Close receives unless Options.Closed says otherwise.
var ErrClosed = errors.New("boltcommit: closed")

// DefaultMaxGroup is the group bound when Options.MaxGroup is not set.
const DefaultMaxGroup = 256

// Options tune a Committer. The zero value is ready to use.
type Options struct {
	// MaxGroup bounds how many writes share one transaction, so that one transaction never holds
	// bbolt's single writer lock for long. It is also how many writes may wait before Submit
	// blocks. Default: DefaultMaxGroup.
	MaxGroup int
	// Closed is the error that writes submitted after Close receive, so that each user keeps its
	// own sentinel (errors.Is on it keeps working). Default: ErrClosed.
	Closed error
}

// Write is one write for the committer.
type Write struct {
	// Apply makes the write inside the group's transaction. It may run more than once (a failed
	// group is retried write by write), each time in a fresh transaction: it must set its results
	// anew on every run. Returning an error rolls back the transaction it ran in.
	Apply func(tx *bbolt.Tx) error
	// Committed, if set, runs on the committer goroutine once the transaction carrying the write
	// is durable, before the outcome is sent. It runs even when the submitter stopped waiting, so
	// in-memory state that mirrors the disk (counters, caches) stays true.
	Committed func()
}

// pending is a Write waiting for the committer, with where its outcome goes.
type pending struct {
	Write
	done chan error
}

// Committer is the group committer of one bbolt database. Its methods are safe for concurrent use.
type Committer struct {
	db       *bbolt.DB
	maxGroup int
	errClose error
	ops      chan *pending
	done     chan struct{}
	commits  atomic.Uint64

	mu     sync.RWMutex // guards closed against sends on ops
	closed bool
}

// New starts the committer of db. Close stops it; db stays open.
func New(db *bbolt.DB, opts Options) *Committer {
	if opts.MaxGroup <= 0 {
		opts.MaxGroup = DefaultMaxGroup
	}
	if opts.Closed == nil {
		opts.Closed = ErrClosed
	}
	c := &Committer{
		db:       db,
		maxGroup: opts.MaxGroup,
		errClose: opts.Closed,
		ops:      make(chan *pending, opts.MaxGroup),
		done:     make(chan struct{}),
	}
	go c.loop()
	return c
}

// Submit hands w to the committer and returns a channel that receives the outcome once the
// transaction carrying it is durable, or failed. It does not wait for the commit; it blocks only
// while MaxGroup writes are already waiting. After Close the channel holds Options.Closed at once.
func (c *Committer) Submit(w Write) <-chan error {
	p := &pending{Write: w, done: make(chan error, 1)}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		p.done <- c.errClose
		return p.done
	}
	c.ops <- p
	return p.done
}

// Closed reports whether Close has been called.
func (c *Committer) Closed() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.closed
}

// Commits returns how many transactions the committer has committed or tried, retries included:
// the measure of how well writes are grouped.
func (c *Committer) Commits() uint64 { return c.commits.Load() }

// Close refuses new writes, commits the ones already submitted and returns once the committer
// goroutine has exited. Calling it again does nothing and returns Options.Closed, so that a caller
// with more to tear down can tell the first call from the others.
func (c *Committer) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.errClose
	}
	c.closed = true
	close(c.ops)
	c.mu.Unlock()
	<-c.done
	return nil
}

func (c *Committer) loop() {
	defer close(c.done)
	group := make([]*pending, 0, c.maxGroup)
	for p := range c.ops {
		group = append(group[:0], p)
	gather:
		for len(group) < c.maxGroup {
			select {
			case p, ok := <-c.ops:
				if !ok {
					break gather
				}
				group = append(group, p)
			default:
				break gather
			}
		}
		err := c.commit(group)
		if err != nil && len(group) > 1 {
			// One write's failure must not fail the others: commit each on its own.
			for _, p := range group {
				finish(p, c.commit([]*pending{p}))
			}
			continue
		}
		for _, p := range group {
			finish(p, err)
		}
	}
}

func (c *Committer) commit(group []*pending) error {
	c.commits.Add(1)
	return c.db.Update(func(tx *bbolt.Tx) error {
		for _, p := range group {
			if err := p.Apply(tx); err != nil {
				return err
			}
		}
		return nil
	})
}

func finish(p *pending, err error) {
	if err == nil && p.Committed != nil {
		p.Committed()
	}
	p.done <- err
}
