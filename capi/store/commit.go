package store

import (
	"errors"

	"go.etcd.io/bbolt"

	"github.com/caddy-capi/caddy-capi/capi/internal/boltcommit"
)

// maxGroup bounds the writes one group commit carries, so one transaction never holds bbolt's
// single writer lock long enough to stall the queue that shares the file.
const maxGroup = 256

// errClosed is returned by writes submitted after Close.
var errClosed = errors.New("store closed")

// newCommitter starts the group committer of the store's small durable writes (MarkSeen): concurrent
// callers share one transaction and one fsync, with no fixed delay, the same committer the queue
// uses on the shared file.
func newCommitter(db *bbolt.DB) *boltcommit.Committer {
	return boltcommit.New(db, boltcommit.Options{MaxGroup: maxGroup, Closed: errClosed})
}
