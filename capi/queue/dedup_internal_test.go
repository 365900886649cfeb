package queue

import "testing"

// Enqueue calls return in any order, so their keys reach the unflushed set out of LSN order. The
// set's LSN, which a flush takes as its checkpoint and below which the log is released, must not
// pass a record whose keys are not in the set yet: a crash would lose them inside their window.
func TestUnflushedLSNWaitsForTheRecordsBeforeIt(t *testing.T) {
	q := &Bolt{unflushed: map[[dedupKeySize]byte]int64{}, logged: map[uint64]struct{}{}, unflushedLSN: 1}
	batch := func(id string) loggedBatch {
		return loggedBatch{platform: "meta", enqueued: 1, keys: [][]byte{[]byte(dedupKey("meta", "Purchase", id))}}
	}
	steps := []struct {
		lsn  uint64
		want uint64
	}{
		{4, 1}, // records 2 and 3 are still on their way
		{3, 1},
		{2, 4}, // the gap closes: 2, 3 and 4 are all in
		{5, 5},
	}
	for _, s := range steps {
		q.addUnflushed(batch(string(rune('a'+s.lsn))), s.lsn)
		if q.unflushedLSN != s.want {
			t.Fatalf("after record %d the set's LSN is %d, want %d", s.lsn, q.unflushedLSN, s.want)
		}
	}
	if len(q.unflushed) != 4 || len(q.logged) != 0 {
		t.Fatalf("%d keys in the set, %d records still waiting for a gap", len(q.unflushed), len(q.logged))
	}
}
