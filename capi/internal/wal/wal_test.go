package wal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type replayed struct {
	lsns     []uint64
	payloads []string
}

func (r *replayed) add(lsn uint64, p []byte) error {
	r.lsns = append(r.lsns, lsn)
	r.payloads = append(r.payloads, string(p))
	return nil
}

func open(t *testing.T, dir string, after uint64, opts Options) (*Log, *replayed) {
	t.Helper()
	var r replayed
	l, err := Open(dir, after, r.add, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l, &r
}

func appendAll(t *testing.T, l *Log, payloads ...string) []uint64 {
	t.Helper()
	lsns := make([]uint64, len(payloads))
	for i, p := range payloads {
		lsn, err := l.Append([]byte(p))
		if err != nil {
			t.Fatalf("Append %q: %v", p, err)
		}
		lsns[i] = lsn
	}
	return lsns
}

func names(n int, prefix string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%04d", prefix, i)
	}
	return out
}

// segmentFiles lists the segment files in dir, oldest first.
func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "0*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

func TestRecordsAreReplayedAboveTheCheckpoint(t *testing.T) {
	want := names(10, "rec")
	for _, after := range []uint64{0, 4, 10} {
		dir := t.TempDir()
		l, r := open(t, dir, 0, Options{})
		if len(r.lsns) != 0 {
			t.Fatalf("a new log replayed %v", r.lsns)
		}
		if got := appendAll(t, l, want...); !slices.Equal(got, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) {
			t.Fatalf("LSNs = %v, want 1..10", got)
		}
		if l.LastLSN() != 10 {
			t.Fatalf("LastLSN = %d", l.LastLSN())
		}
		l.Close()
		l, r = open(t, dir, after, Options{})
		if !slices.Equal(r.payloads, want[after:]) || (len(r.lsns) > 0 && r.lsns[0] != after+1) {
			t.Errorf("after %d: replayed %v %v", after, r.lsns, r.payloads)
		}
		if lsn := appendAll(t, l, "next")[0]; lsn != 11 {
			t.Errorf("after %d: the next record got LSN %d, want 11", after, lsn)
		}
	}
}

func TestConcurrentAppendsShareWritesAndGetDistinctLSNs(t *testing.T) {
	var writes atomic.Int64
	var mu sync.Mutex
	var durable []uint64
	opts := Options{Durable: func(first uint64, payloads [][]byte) {
		writes.Add(1)
		mu.Lock()
		for i := range payloads {
			durable = append(durable, first+uint64(i))
		}
		mu.Unlock()
	}}
	dir := t.TempDir()
	l, _ := open(t, dir, 0, opts)
	const writers, each = 32, 50
	var wg sync.WaitGroup
	got := make([][]uint64, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				lsn, err := l.Append(fmt.Appendf(nil, "w%d-%d", w, i))
				if err != nil {
					t.Error(err)
					return
				}
				got[w] = append(got[w], lsn)
			}
		})
	}
	wg.Wait()
	all := slices.Sorted(slices.Values(slices.Concat(got...)))
	if len(all) != writers*each || all[0] != 1 || all[len(all)-1] != writers*each || len(slices.Compact(slices.Clone(all))) != len(all) {
		t.Fatalf("LSNs are not 1..%d without repeats", writers*each)
	}
	if !slices.IsSorted(durable) || len(durable) != writers*each {
		t.Fatalf("Durable saw %d records, in order %v", len(durable), slices.IsSorted(durable))
	}
	if w := writes.Load(); w >= writers*each {
		t.Errorf("%d writes for %d appends: concurrent appends did not share a write", w, writers*each)
	}
	l.Close()
	_, r := open(t, dir, 0, Options{})
	if len(r.lsns) != writers*each {
		t.Fatalf("replayed %d records, want %d", len(r.lsns), writers*each)
	}
}

// lastRecordOffset returns where the record with the given LSN starts in a segment.
func recordOffset(t *testing.T, path string, first, lsn uint64) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	off := 0
	for next := first; ; next++ {
		f, n, err := decodeFrame(data[off:])
		if err != nil || f.lsn != next {
			t.Fatalf("record %d not found", lsn)
		}
		if f.lsn == lsn {
			return off
		}
		off += n
	}
}

func TestTornTailIsDiscardedWithoutError(t *testing.T) {
	tests := []struct {
		name string
		// damage is applied to the only segment, whose records 1..5 were written one by one and
		// records 6..8 in one write (an unacknowledged write torn by a crash).
		damage func(t *testing.T, path string)
		want   int // intact records expected back
	}{
		{"truncated mid-record", func(t *testing.T, path string) {
			if err := os.Truncate(path, int64(recordOffset(t, path, 1, 8)+10)); err != nil {
				t.Fatal(err)
			}
		}, 7},
		{"garbage after the last record", func(t *testing.T, path string) {
			writeAt(t, path, recordOffset(t, path, 1, 8)+frameSize(len("rec-0007")), bytes.Repeat([]byte{0xA5, 0x17, 0x00, 0xFF}, 300))
		}, 8},
		{"first record of the last write lost, the rest of it intact", func(t *testing.T, path string) {
			writeAt(t, path, recordOffset(t, path, 1, 6)+3, []byte{0, 0, 0, 0})
		}, 5},
		{"middle record of the last write lost", func(t *testing.T, path string) {
			writeAt(t, path, recordOffset(t, path, 1, 7)+headerSize, []byte("XX"))
		}, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l, _ := open(t, dir, 0, Options{})
			all := names(8, "rec")
			appendAll(t, l, all[:5]...)
			l.Close()
			path := segmentFiles(t, dir)[0]
			// Records 6..8 as one write, as the writer would have made them.
			off := recordOffset(t, path, 1, 5) + frameSize(len(all[4]))
			var b []byte
			for i := 6; i <= 8; i++ {
				b = appendFrame(b, uint64(i), 6, []byte(all[i-1]))
			}
			writeAt(t, path, off, b)
			tt.damage(t, path)

			l, r := open(t, dir, 0, Options{})
			if !slices.Equal(r.payloads, all[:tt.want]) {
				t.Fatalf("replayed %v, want %v", r.payloads, all[:tt.want])
			}
			// The discarded space is reused, and nothing of the torn write comes back later.
			if lsn := appendAll(t, l, "after")[0]; lsn != uint64(tt.want+1) {
				t.Fatalf("next LSN %d, want %d", lsn, tt.want+1)
			}
			l.Close()
			_, r = open(t, dir, 0, Options{})
			if want := append(slices.Clone(all[:tt.want]), "after"); !slices.Equal(r.payloads, want) {
				t.Fatalf("after reuse replayed %v, want %v", r.payloads, want)
			}
		})
	}
}

func writeAt(t *testing.T, path string, off int, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, int64(off)); err != nil {
		t.Fatal(err)
	}
}

// TestDamageToAnAcknowledgedRecordIsRefused: a record followed by records of later writes was
// acknowledged before they were written, so no crash explains its damage. The log refuses to open
// (never dropping it or what follows) with an error that names the file and offset.
func TestDamageToAnAcknowledgedRecordIsRefused(t *testing.T) {
	tests := []struct {
		name     string
		lsn      uint64 // the damaged record
		at       int    // byte of the record flipped
		segments int    // segments the log is made of
	}{
		{"payload byte, last segment", 3, headerSize + 1, 1},
		{"length field, last segment", 3, 2, 1},
		{"LSN field, last segment", 3, 12, 1},
		{"payload byte, earlier segment", 2, headerSize, 3},
		{"last record of an earlier segment", 0, headerSize, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			// Segments of 1 KiB hold 8 records of this size each.
			l, _ := open(t, dir, 0, Options{SegmentSize: 1024})
			appendAll(t, l, names(8*(tt.segments-1)+6, strings.Repeat("x", 90))...)
			l.Close()
			segs := segmentFiles(t, dir)
			if len(segs) != tt.segments {
				t.Fatalf("%d segments, want %d", len(segs), tt.segments)
			}
			path, first, lsn := segs[len(segs)-1], uint64(8*(tt.segments-1)+1), tt.lsn+uint64(8*(tt.segments-1))
			if tt.segments > 1 {
				path, first, lsn = segs[0], 1, tt.lsn
				if lsn == 0 {
					lsn = 8
				}
			}
			off := recordOffset(t, path, first, lsn)
			data, _ := os.ReadFile(path)
			writeAt(t, path, off+tt.at, []byte{data[off+tt.at] ^ 0x40})

			_, err := Open(dir, 0, func(uint64, []byte) error { return nil }, Options{SegmentSize: 1024})
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("Open = %v, want a CorruptError", err)
			}
			if ce.File != path || ce.Offset != int64(off) || ce.LSN != lsn {
				t.Fatalf("error names %s offset %d record %d; want %s offset %d record %d", ce.File, ce.Offset, ce.LSN, path, off, lsn)
			}
			if !strings.Contains(err.Error(), filepath.Base(path)) || !strings.Contains(err.Error(), fmt.Sprint(off)) {
				t.Fatalf("message does not name the file and offset: %v", err)
			}
		})
	}
}

func TestSegmentsRollOverAndReleasedOnesAreRecycled(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 1024}
	l, _ := open(t, dir, 0, opts)
	all := names(40, strings.Repeat("y", 90)) // 8 per segment
	appendAll(t, l, all...)
	if segs := segmentFiles(t, dir); len(segs) != 5 || filepath.Base(segs[1]) != fmt.Sprintf("%020d.wal", 9) {
		t.Fatalf("segments %v, want 5 starting at 1, 9, 17, …", segs)
	}
	if err := l.Release(20); err != nil {
		t.Fatal(err)
	}
	// Records 1..16 are in the first two segments: released. The third holds 17..24: kept.
	segs := segmentFiles(t, dir)
	if len(segs) != 3 || filepath.Base(segs[0]) != fmt.Sprintf("%020d.wal", 17) {
		t.Fatalf("after Release(20) segments are %v", segs)
	}
	spares, _ := filepath.Glob(filepath.Join(dir, "spare-*.wal"))
	if len(spares) == 0 || len(spares) > defaultSpares+1 {
		t.Fatalf("%d spares kept, want 1..%d", len(spares), defaultSpares+1)
	}
	// Recycled segments still hold old records; they must read as the end of the log.
	more := names(20, strings.Repeat("z", 90))
	appendAll(t, l, more...)
	if err := l.Release(30); err != nil {
		t.Fatal(err)
	}
	last := l.LastLSN()
	l.Close()
	l, r := open(t, dir, 30, opts)
	if want := append(slices.Clone(all[30:]), more...); !slices.Equal(r.payloads, want) {
		t.Fatalf("replayed %d records after 30, want %d", len(r.payloads), len(want))
	}
	if lsn := appendAll(t, l, "again")[0]; lsn != last+1 {
		t.Fatalf("next LSN %d, want %d", lsn, last+1)
	}
	if err := l.Release(l.LastLSN()); err != nil {
		t.Fatal(err)
	}
	if segs := segmentFiles(t, dir); len(segs) != 1 {
		t.Fatalf("after releasing everything %d segments remain, want the one written", len(segs))
	}
	if spares, _ := filepath.Glob(filepath.Join(dir, "spare-*.wal")); len(spares) > defaultSpares+1 {
		t.Fatalf("%d spares kept, want at most %d", len(spares), defaultSpares+1)
	}
}

func TestReleasedSegmentsAreKeptUpToSpares(t *testing.T) {
	tests := []struct {
		name     string
		spares   int
		min, max int
	}{
		{"default", 0, 1, defaultSpares + 1},
		{"eight", 8, 4, 8 + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l, _ := open(t, dir, 0, Options{SegmentSize: 1024, Spares: tt.spares})
			appendAll(t, l, names(48, strings.Repeat("y", 90))...) // 8 per segment: 6 segments
			// Records 1..40 fill the first five segments: all five are released.
			if err := l.Release(40); err != nil {
				t.Fatal(err)
			}
			spares, _ := filepath.Glob(filepath.Join(dir, "spare-*.wal"))
			if len(spares) < tt.min || len(spares) > tt.max {
				t.Fatalf("%d spares kept after releasing 5 segments, want %d..%d", len(spares), tt.min, tt.max)
			}
		})
	}
}

func TestMissingRecordsAreRefused(t *testing.T) {
	dir := t.TempDir()
	l, _ := open(t, dir, 0, Options{SegmentSize: 1024})
	appendAll(t, l, names(20, strings.Repeat("x", 90))...)
	l.Close()
	// The owner says it applied up to 5, but the segment with 6..8 is gone.
	if err := os.Remove(segmentFiles(t, dir)[0]); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, 5, func(uint64, []byte) error { return nil }, Options{SegmentSize: 1024})
	if err == nil || !strings.Contains(err.Error(), "records 6 to 8 are missing") {
		t.Fatalf("Open = %v, want records 6 to 8 reported missing", err)
	}
}

func TestOwnerAheadOfTheLogContinuesAfterItsCheckpoint(t *testing.T) {
	dir := t.TempDir()
	l, _ := open(t, dir, 0, Options{})
	appendAll(t, l, "a", "b")
	l.Close()
	l, r := open(t, dir, 7, Options{})
	if len(r.lsns) != 0 {
		t.Fatalf("replayed %v below the checkpoint", r.lsns)
	}
	if lsn := appendAll(t, l, "c")[0]; lsn != 8 {
		t.Fatalf("next LSN %d, want 8", lsn)
	}
	l.Close()
	if _, r := open(t, dir, 7, Options{}); !slices.Equal(r.payloads, []string{"c"}) {
		t.Fatalf("replayed %v, want [c]", r.payloads)
	}
}

// TestIssuedLSNsAreNotReusedBelowAnOlderCheckpoint: an owner that opens the log at an older
// checkpoint (it keeps applied records for another use) but has applied up to Issued must never
// see an LSN at or below Issued again, even when the log directory was replaced.
func TestIssuedLSNsAreNotReusedBelowAnOlderCheckpoint(t *testing.T) {
	tests := []struct {
		name   string
		before []string // appended before the reopen, from LSN 1
	}{
		{"empty directory", nil},
		{"log ending between the checkpoint and Issued", []string{"a", "b", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.before != nil {
				l, _ := open(t, dir, 0, Options{})
				appendAll(t, l, tt.before...)
				l.Close()
			}
			l, r := open(t, dir, 1, Options{Issued: 9})
			if want := max(0, len(tt.before)-1); len(r.lsns) != want {
				t.Fatalf("replayed %v, want the %d records above the checkpoint", r.lsns, want)
			}
			if got := l.LastLSN(); got != 9 {
				t.Fatalf("LastLSN = %d, want Issued (9)", got)
			}
			if lsn := appendAll(t, l, "d")[0]; lsn != 10 {
				t.Fatalf("next LSN %d, want 10", lsn)
			}
			l.Close()
		})
	}
}

func TestAppendRefusesOversizedRecordsAndWorkAfterClose(t *testing.T) {
	l, _ := open(t, t.TempDir(), 0, Options{SegmentSize: 1024})
	if _, err := l.Append(make([]byte, 300)); err == nil {
		t.Fatal("a record larger than a quarter segment was accepted")
	}
	l.Close()
	if _, err := l.Append([]byte("late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
}

func FuzzDecodeFrame(f *testing.F) {
	f.Add(appendFrame(nil, 1, 1, []byte("hello")))
	f.Add(appendFrame(appendFrame(nil, 7, 7, nil), 8, 7, []byte("x")))
	f.Add(make([]byte, 40))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, n, err := decodeFrame(b)
		if err != nil {
			if n != 0 || !errors.Is(err, errNoFrame) {
				t.Fatalf("failed decode consumed %d bytes, error %v", n, err)
			}
			return
		}
		if n <= 0 || n > len(b) || len(fr.payload) > n {
			t.Fatalf("decoded %d bytes of %d with a payload of %d", n, len(b), len(fr.payload))
		}
		// An intact record re-encodes to the bytes it came from.
		if re := appendFrame(nil, fr.lsn, fr.group, fr.payload); !bytes.Equal(re[:headerSize+len(fr.payload)], b[:headerSize+len(fr.payload)]) {
			t.Fatal("re-encoding an intact record changed it")
		}
	})
}

// FuzzScanSegment feeds arbitrary segment contents (a file after a crash) to the scan: it never
// panics, returns records with consecutive LSNs from the first, and ends them inside the data.
func FuzzScanSegment(f *testing.F) {
	var seg []byte
	for i := uint64(1); i <= 4; i++ {
		seg = appendFrame(seg, i, min(i, 3), fmt.Appendf(nil, "record %d", i))
	}
	f.Add(seg, false)
	f.Add(append(slices.Clone(seg), 1, 2, 3), true)
	f.Add(seg[:50], false)
	f.Fuzz(func(t *testing.T, data []byte, bounded bool) {
		var until uint64
		if bounded {
			until = 3
		}
		r, err := scan(data, "seg", 1, until)
		for i, fr := range r.frames {
			if fr.lsn != uint64(i+1) {
				t.Fatalf("record %d has LSN %d", i, fr.lsn)
			}
		}
		if err == nil && (r.end > len(data) || r.remnantEnd > len(data)) {
			t.Fatalf("end %d, remnants to %d, past %d bytes", r.end, r.remnantEnd, len(data))
		}
		var ce *CorruptError
		if err != nil && !errors.As(err, &ce) {
			t.Fatalf("scan error is not a CorruptError: %v", err)
		}
	})
}

// BenchmarkAppend measures concurrent appends of 700-byte records (an event's size) against a real
// file with fdatasync.
func BenchmarkAppend(b *testing.B) {
	l, err := Open(b.TempDir(), 0, func(uint64, []byte) error { return nil }, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	payload := bytes.Repeat([]byte("e"), 700)
	b.SetParallelism(64)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Append(payload); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}
