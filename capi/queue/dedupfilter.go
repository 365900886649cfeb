package queue

import (
	"encoding/binary"
	"fmt"

	"github.com/dgraph-io/ristretto/v2/z"
	"go.etcd.io/bbolt"
)

// indexFilter is a Bloom filter over the keys of the on-disk dedup index, so that Enqueue reads the
// index (a bbolt read transaction per call, a fifth of the bytes an enqueue allocated and a lock
// every flush and commit share) only for a key the index may hold. Nearly every enqueued event is
// new, and for a new key the filter answers "not there" at once; a duplicate, or one key in a
// hundred by chance, still reads the index, so the answer is exact either way.
//
// It holds every key the index holds, and possibly keys the index no longer does (swept): keys go
// in at OpenBolt, from the index, and in FlushDedup before the keys being flushed leave the
// flushing set, so a key that Enqueue no longer finds in memory is always in the filter. It is read
// and written under resMu. When more keys have gone in than it was sized for, the flush that
// crossed the line rebuilds it from the index, twice as large.
type indexFilter struct {
	bloom    *z.Bloom
	capacity int // keys it was sized for at a 1 % false-positive rate
	added    int
}

// minFilterCapacity sizes a filter for a small or new index: 1,048,576 keys, 1.2 MiB.
var minFilterCapacity = 1 << 20

func newIndexFilter(keys int) *indexFilter {
	capacity := max(minFilterCapacity, 2*keys)
	return &indexFilter{bloom: z.NewBloomFilter(float64(capacity), 0.01), capacity: capacity}
}

// filterHash is a key's position in the filter: dedup keys are truncated SHA-256, already uniform.
func filterHash(key []byte) uint64 { return binary.BigEndian.Uint64(key) }

func (f *indexFilter) add(key []byte) {
	f.bloom.Add(filterHash(key))
	f.added++
}

// mayHold reports whether the index may hold key; false is certain.
func (f *indexFilter) mayHold(key []byte) bool { return f.bloom.Has(filterHash(key)) }

func (f *indexFilter) full() bool { return f.added > f.capacity }

// buildIndexFilter reads every key of the dedup index into a new filter.
func buildIndexFilter(db *bbolt.DB) (*indexFilter, error) {
	var f *indexFilter
	err := db.View(func(tx *bbolt.Tx) error {
		index := tx.Bucket(dedupBucket)
		f = newIndexFilter(index.Stats().KeyN)
		return index.ForEach(func(k, _ []byte) error {
			if len(k) == dedupKeySize {
				f.add(k)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("queue: read the dedup index: %w", err)
	}
	return f, nil
}
