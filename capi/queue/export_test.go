package queue

// Commits reports how many write transactions the queue committed, so the benchmarks can show how
// many events share one fsync.
func (q *Bolt) Commits() uint64 { return q.committer.Commits() }
