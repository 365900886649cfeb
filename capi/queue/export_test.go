package queue

import "go.etcd.io/bbolt"

// LogSpares is how many released log segments the queue keeps for reuse.
const LogSpares = logSpares

// Commits reports how many write transactions the queue committed, so the benchmarks can show how
// many events share one fsync.
func (q *Bolt) Commits() uint64 { return q.committer.Commits() }

// Abandon stops the queue as a crash would: nothing more is applied and nothing is cleaned up, but
// the files are closed so the same process can open them again.
func (q *Bolt) Abandon() {
	q.abandoned.Store(true)
	q.Close()
}

// LogWrites reports how many write-and-fdatasync rounds the write-ahead log made, so the benchmarks
// can show how many enqueues share one flush.
func (q *Bolt) LogWrites() uint64 { return q.log.Writes() }

// Checkpoint makes the partitions' log positions durable and releases the log below them, as the
// queue does every second.
func (q *Bolt) Checkpoint() error { return q.checkpoint() }

// Evacuate moves waiting events out of a log longer than the limit, as the queue does after each
// checkpoint.
func (q *Bolt) Evacuate() error { return q.evacuate() }

// SetMaxLogSegments sets, until the test ends, how many segments the log may hold before waiting
// events are moved out of it.
func SetMaxLogSegments(t interface{ Cleanup(func()) }, n int) {
	old := maxLogSegments
	maxLogSegments = n
	t.Cleanup(func() { maxLogSegments = old })
}

// Stored counts the platform's events in the ready bucket, as opposed to waiting in the log.
func (q *Bolt) Stored(platformName string) int {
	n := 0
	q.db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket([]byte(readyPrefix + platformName)); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	return n
}

// SetMinFilterCapacity sizes the dedup index filters made until the test ends for at least n keys,
// so that a test can make one fill up and be rebuilt.
func SetMinFilterCapacity(t interface{ Cleanup(func()) }, n int) {
	old := minFilterCapacity
	minFilterCapacity = n
	t.Cleanup(func() { minFilterCapacity = old })
}

// FilterCapacity reports how many keys the dedup index filter is sized for.
func (q *Bolt) FilterCapacity() int {
	q.resMu.Lock()
	defer q.resMu.Unlock()
	return q.filter.capacity
}

// MaxLogSegments is how many segments the log may hold before waiting events are moved out of it.
var MaxLogSegments = maxLogSegments

// Reserved reports how many dedup keys calls in flight hold: none once every call has returned.
func (q *Bolt) Reserved() int {
	q.resMu.Lock()
	defer q.resMu.Unlock()
	return len(q.reserved)
}

// Segments is how many segment files the log holds.
func (q *Bolt) Segments() int { return q.log.Segments() }
