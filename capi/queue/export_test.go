package queue

import "context"

// LogSpares is how many released log segments the queue keeps for reuse.
const LogSpares = logSpares

// Commits reports how many write transactions the queue committed, so the benchmarks can show how
// many events share one fsync.
func (q *Bolt) Commits() uint64 { return q.committer.Commits() }

// HoldApplying keeps newly logged events in the write-ahead log only, as if the applier had not
// run yet, so tests can crash a queue with events nowhere else.
func (q *Bolt) HoldApplying() { q.holdApply.Store(true) }

// Abandon stops the queue as a crash would: nothing more is applied and nothing is cleaned up, but
// the files are closed so the same process can open them again.
func (q *Bolt) Abandon() {
	q.abandoned.Store(true)
	q.Close()
}

// LogWrites reports how many write-and-fdatasync rounds the write-ahead log made, so the benchmarks
// can show how many enqueues share one flush.
func (q *Bolt) LogWrites() uint64 { return q.log.Writes() }

// ResumeApplying undoes HoldApplying.
func (q *Bolt) ResumeApplying() {
	q.holdApply.Store(false)
	select {
	case q.applyWake <- struct{}{}:
	default:
	}
}

// WaitApplied waits until the applier has moved into bbolt everything logged before the call.
func (q *Bolt) WaitApplied(ctx context.Context) error { return q.waitApplied(ctx) }

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
