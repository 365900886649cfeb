package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// record makes a payload of n bytes that names its writer and sequence number and that no other
// record shares, so that a record read back in the wrong place or half-overwritten is noticed.
func record(writer, seq, n int) []byte {
	p := fmt.Appendf(nil, "w%d-%d:", writer, seq)
	for len(p) < n {
		p = binary.BigEndian.AppendUint32(p, uint32(writer<<24^seq*2654435761^len(p)))
	}
	return p[:max(n, 0)]
}

// appendConcurrently appends payloads from writers goroutines (so that writes are shared, as under
// load) and returns every payload by LSN.
func appendConcurrently(t testing.TB, l *Log, writers int, payloads [][]byte) map[uint64][]byte {
	t.Helper()
	var mu sync.Mutex
	byLSN := make(map[uint64][]byte, len(payloads))
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < len(payloads); i += writers {
				lsn, err := l.Append(payloads[i])
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				byLSN[lsn] = payloads[i]
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return byLSN
}

// readAll reads until io.EOF and fails the test on any other error.
func readAll(t *testing.T, r *Reader) (lsns []uint64, payloads [][]byte) {
	t.Helper()
	for {
		lsn, p, err := r.Next()
		if err == io.EOF {
			return lsns, payloads
		}
		if err != nil {
			t.Fatalf("Next after record %d: %v", r.Pos()-1, err)
		}
		lsns = append(lsns, lsn)
		payloads = append(payloads, slices.Clone(p))
	}
}

// openSegmentsIn lists the segment files in dir this process holds open, where /proc tells.
func openSegmentsIn(t *testing.T, dir string) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot list open files: %v", err)
	}
	var files []string
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && filepath.Dir(target) == dir &&
			!strings.HasPrefix(filepath.Base(target), "spare-") {
			files = append(files, target)
		}
	}
	return files
}

// checkRecords checks that lsns are from..to in order with the payloads appended under them.
func checkRecords(t *testing.T, lsns []uint64, payloads [][]byte, want map[uint64][]byte, from, to uint64) {
	t.Helper()
	if uint64(len(lsns)) != to-from+1 {
		t.Fatalf("read %d records, want %d..%d", len(lsns), from, to)
	}
	for i, lsn := range lsns {
		if lsn != from+uint64(i) {
			t.Fatalf("record %d of the read has LSN %d, want %d", i, lsn, from+uint64(i))
		}
		if !bytes.Equal(payloads[i], want[lsn]) {
			t.Fatalf("record %d: payload of %d bytes %.20q, want %d bytes %.20q", lsn, len(payloads[i]), payloads[i], len(want[lsn]), want[lsn])
		}
	}
}

func TestReaderReadsEveryRecordInOrderAcrossSegments(t *testing.T) {
	const seg = 64 << 10
	quarter := seg/4 - headerSize // the largest payload a 64 KiB segment takes
	tests := []struct {
		name    string
		segSize int64
		sizes   []int // payload sizes, cycled
		count   int
		chunk   int // the reader's read size; 0 for the default
	}{
		{"varied sizes up to a quarter of the segment", seg, []int{0, 1, 7, 8, 9, 100, 700, 3000, quarter - 5, quarter}, 120, 0},
		{"reads smaller than a record's header", seg, []int{700, 1, quarter, 16}, 60, 10},
		{"reads ending inside most records", seg, []int{700, 5000, 33, quarter}, 60, 1000},
		{"records larger than a read", 2 << 20, []int{300 << 10, 900, (512 << 10) - headerSize, 0}, 20, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l, _ := open(t, dir, 0, Options{SegmentSize: tt.segSize})
			payloads := make([][]byte, tt.count)
			for i := range payloads {
				payloads[i] = record(0, i, tt.sizes[i%len(tt.sizes)])
			}
			want := appendConcurrently(t, l, 4, payloads)
			if n, files := l.Segments(), len(segmentFiles(t, dir)); n < 3 || n != files {
				t.Fatalf("Segments() = %d with %d segment files; the test needs several", n, files)
			}
			r := l.NewReader(1)
			defer r.Close()
			if tt.chunk > 0 {
				r.chunk = tt.chunk
			}
			lsns, got := readAll(t, r)
			checkRecords(t, lsns, got, want, 1, uint64(tt.count))
			if r.Pos() != uint64(tt.count)+1 {
				t.Fatalf("Pos() = %d at the end, want %d", r.Pos(), tt.count+1)
			}
			// The reader closed each segment it left: the log may recycle them.
			if files := openSegmentsIn(t, dir); len(files) > 2 {
				t.Fatalf("segments open after reading (the writer's and the reader's expected): %v", files)
			}
		})
	}
}

// TestReaderWaitsForDurableRecordsAndContinues: a reader that has caught up gets io.EOF without
// moving, and then the records appended later, also when the writer has moved to a new segment
// meanwhile.
func TestReaderWaitsForDurableRecordsAndContinues(t *testing.T) {
	dir := t.TempDir()
	l, _ := open(t, dir, 0, Options{SegmentSize: 1024}) // 8 records of 90 bytes a segment
	all := names(20, strings.Repeat("q", 90))
	r := l.NewReader(1)
	defer r.Close()
	if _, _, err := r.Next(); err != io.EOF {
		t.Fatalf("Next on an empty log = %v, want io.EOF", err)
	}
	// 3 records; then the rest of the first segment; then the writer rolls over to a new segment
	// while the reader waits at the end of the old one.
	for _, batch := range [][2]int{{0, 3}, {3, 8}, {8, 9}, {9, 20}} {
		appendAll(t, l, all[batch[0]:batch[1]]...)
		lsns, payloads := readAll(t, r)
		for i, lsn := range lsns {
			if want := uint64(batch[0] + i + 1); lsn != want || string(payloads[i]) != all[want-1] {
				t.Fatalf("read record %d %q, want %d %q", lsn, payloads[i], want, all[want-1])
			}
		}
		if len(lsns) != batch[1]-batch[0] {
			t.Fatalf("read %d records after appending %d", len(lsns), batch[1]-batch[0])
		}
		for range 2 {
			if _, _, err := r.Next(); err != io.EOF || r.Pos() != uint64(batch[1]+1) {
				t.Fatalf("Next when caught up = %v at position %d, want io.EOF at %d", err, r.Pos(), batch[1]+1)
			}
		}
	}
}

// TestReaderFollowsAConcurrentWriter reads while appenders write and the owner releases what the
// reader has passed, so that segments behind the reader are recycled under it: every record is
// read once, in order, with the payload it was appended with.
func TestReaderFollowsAConcurrentWriter(t *testing.T) {
	dir := t.TempDir()
	l, _ := open(t, dir, 0, Options{SegmentSize: 8 << 10, Spares: 2})
	const writers, each = 4, 150
	rng := rand.New(rand.NewPCG(1, 2))
	payloads := make([][]byte, writers*each)
	for i := range payloads {
		payloads[i] = record(i%writers, i/writers, rng.IntN(1500))
	}
	r := l.NewReader(1)
	defer r.Close()

	var got map[uint64][]byte
	done := make(chan struct{})
	go func() {
		defer close(done)
		got = make(map[uint64][]byte)
		next := uint64(1)
		for len(got) < len(payloads) {
			lsn, p, err := r.Next()
			if err == io.EOF {
				time.Sleep(50 * time.Microsecond)
				continue
			}
			if err != nil {
				t.Errorf("Next at %d: %v", next, err)
				return
			}
			if lsn != next {
				t.Errorf("read record %d, want %d", lsn, next)
				return
			}
			got[lsn] = slices.Clone(p)
			next++
			if lsn%16 == 0 {
				if err := l.Release(lsn); err != nil {
					t.Errorf("Release(%d): %v", lsn, err)
					return
				}
			}
		}
		if _, _, err := r.Next(); err != io.EOF {
			t.Errorf("Next after the last record = %v, want io.EOF", err)
		}
	}()
	want := appendConcurrently(t, l, writers, payloads)
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("the reader did not read every record within a minute")
	}
	if t.Failed() {
		return
	}
	for lsn, p := range want {
		if !bytes.Equal(got[lsn], p) {
			t.Fatalf("record %d read as %.20q, appended as %.20q", lsn, got[lsn], p)
		}
	}
	if n := l.Segments(); n > 3 {
		t.Fatalf("%d segments remain: the segments the reader passed were not released", n)
	}
}

func TestReaderStartsAtItsPosition(t *testing.T) {
	dir := t.TempDir()
	l, _ := open(t, dir, 0, Options{SegmentSize: 1024}) // segments start at 1, 9, 17, 25
	all := names(30, strings.Repeat("m", 90))
	want := make(map[uint64][]byte)
	for i, lsn := range appendAll(t, l, all...) {
		want[lsn] = []byte(all[i])
	}
	for _, from := range []uint64{0, 1, 2, 5, 8, 9, 10, 16, 17, 29, 30, 31} {
		t.Run(fmt.Sprint(from), func(t *testing.T) {
			r := l.NewReader(from)
			defer r.Close()
			start := max(from, 1)
			if r.Pos() != start {
				t.Fatalf("Pos() = %d before reading, want %d", r.Pos(), start)
			}
			lsns, payloads := readAll(t, r)
			checkRecords(t, lsns, payloads, want, start, 30)
		})
	}
}

func TestReaderAtAReleasedPositionFails(t *testing.T) {
	dir := t.TempDir()
	l, _ := open(t, dir, 0, Options{SegmentSize: 1024}) // segments start at 1, 9, 17, 25, 33
	appendAll(t, l, names(40, strings.Repeat("r", 90))...)
	passed := l.NewReader(1) // a reader the owner will release past, midway through a segment
	defer passed.Close()
	for range 4 {
		if _, _, err := passed.Next(); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Release(20); err != nil { // releases the segments of 1..16
		t.Fatal(err)
	}

	for _, from := range []uint64{1, 8, 16} {
		r := l.NewReader(from)
		for range 2 { // the error is sticky
			lsn, p, err := r.Next()
			if !errors.Is(err, ErrReleased) || lsn != 0 || p != nil {
				t.Fatalf("NewReader(%d).Next() = %d, %q, %v; want ErrReleased", from, lsn, p, err)
			}
			if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("record %d ", from)) || !strings.Contains(msg, "released") ||
				!strings.Contains(msg, "starts at record 17") {
				t.Fatalf("the error does not say which record was released and where the log starts: %v", err)
			}
		}
		r.Close()
	}

	// The reader already inside a released segment may finish what it holds open, but fails
	// before it would need a released record from elsewhere, and never returns a wrong one.
	for {
		lsn, p, err := passed.Next()
		if errors.Is(err, ErrReleased) {
			if !strings.Contains(err.Error(), "record 9 ") {
				t.Fatalf("the reader failed with %v, want the error to name record 9", err)
			}
			break
		}
		if err != nil || lsn > 8 || string(p) != fmt.Sprintf("%s-%04d", strings.Repeat("r", 90), lsn-1) {
			t.Fatalf("a reader released past read record %d %.20q, %v", lsn, p, err)
		}
	}

	r := l.NewReader(17)
	defer r.Close()
	if lsns, _ := readAll(t, r); len(lsns) != 24 || lsns[0] != 17 {
		t.Fatalf("NewReader(17) read %d records from %v", len(lsns), lsns[:min(1, len(lsns))])
	}
}

// TestReaderReadsWhatWasReplayed: after a reopen, a reader from the checkpoint reads what Open
// replayed, and not the remnants of a torn write that Open discarded, whose bytes lie where the
// next records go.
func TestReaderReadsWhatWasReplayed(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 1024}
	l, _ := open(t, dir, 0, opts)
	all := names(30, strings.Repeat("o", 90))
	appendAll(t, l, all...)
	l.Close()
	// Records 31..33 of one write whose first record was torn by a crash.
	segs := segmentFiles(t, dir)
	path := segs[len(segs)-1]
	off := recordOffset(t, path, 25, 30) + frameSize(len(all[29]))
	var torn []byte
	for lsn := uint64(31); lsn <= 33; lsn++ {
		torn = appendFrame(torn, lsn, 31, []byte(fmt.Sprintf("torn-%d", lsn)))
	}
	torn[headerSize] ^= 0xFF
	writeAt(t, path, off, torn)

	l, replay := open(t, dir, 10, opts)
	if len(replay.lsns) != 20 || replay.lsns[0] != 11 {
		t.Fatalf("replayed %v, want 11..30", replay.lsns)
	}
	want := make(map[uint64][]byte)
	for i, lsn := range replay.lsns {
		want[lsn] = []byte(replay.payloads[i])
	}
	r := l.NewReader(11)
	defer r.Close()
	lsns, payloads := readAll(t, r)
	checkRecords(t, lsns, payloads, want, 11, 30)

	appendAll(t, l, "after-1", "after-2")
	lsns, payloads = readAll(t, r)
	if len(lsns) != 2 || lsns[0] != 31 || string(payloads[0]) != "after-1" || string(payloads[1]) != "after-2" {
		t.Fatalf("after the reopen read %v %q, want 31, 32 with the new records", lsns, payloads)
	}
}

// TestReaderReportsDamageToAcknowledgedRecords: a durable record whose bytes changed on disk is
// reported as a CorruptError naming the file, offset and record, and nothing after it is read.
func TestReaderReportsDamageToAcknowledgedRecords(t *testing.T) {
	tests := []struct {
		name  string
		lsn   uint64 // the damaged record; segments start at 1, 9, 17
		at    int    // byte of the record flipped
		value byte   // XORed into it
	}{
		{"payload byte, last segment", 19, headerSize + 40, 0x01},
		{"payload byte, earlier segment", 3, headerSize, 0x40},
		{"last record of an earlier segment", 8, headerSize + 89, 0x80},
		{"first record of a segment", 9, headerSize + 2, 0x10},
		{"LSN field", 12, 15, 0x01},
		{"length field, shorter", 5, 3, 0x40},
		{"length field, past any record", 5, 0, 0x7F},
		{"CRC field", 20, 5, 0x02},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l, _ := open(t, dir, 0, Options{SegmentSize: 1024})
			all := names(22, strings.Repeat("d", 90))
			appendAll(t, l, all...)
			first := (tt.lsn-1)/8*8 + 1
			path := filepath.Join(dir, fmt.Sprintf("%020d.wal", first))
			off := recordOffset(t, path, first, tt.lsn)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			writeAt(t, path, off+tt.at, []byte{data[off+tt.at] ^ tt.value})

			r := l.NewReader(1)
			defer r.Close()
			for want := uint64(1); want < tt.lsn; want++ {
				if lsn, p, err := r.Next(); err != nil || lsn != want || string(p) != all[want-1] {
					t.Fatalf("Next = %d %.20q %v, want the intact record %d", lsn, p, err, want)
				}
			}
			for range 2 { // the error is sticky
				_, _, err := r.Next()
				var ce *CorruptError
				if !errors.As(err, &ce) {
					t.Fatalf("Next at the damaged record = %v, want a CorruptError", err)
				}
				if ce.File != path || ce.Offset != int64(off) || ce.LSN != tt.lsn {
					t.Fatalf("error names %s offset %d record %d; want %s offset %d record %d", ce.File, ce.Offset, ce.LSN, path, off, tt.lsn)
				}
			}
		})
	}
}

// TestReaderNextDoesNotAllocate: reading a backlog, chunk reads included, allocates nothing per
// record once the reader's buffer exists.
func TestReaderNextDoesNotAllocate(t *testing.T) {
	l, _ := open(t, t.TempDir(), 0, Options{SegmentSize: 4 << 20})
	payloads := make([][]byte, 1200)
	for i := range payloads {
		payloads[i] = record(0, i, 700)
	}
	appendConcurrently(t, l, 32, payloads)
	r := l.NewReader(1)
	defer r.Close()
	if _, _, err := r.Next(); err != nil { // opens the segment and makes the buffer
		t.Fatal(err)
	}
	// 1000 records of 724 bytes on disk cross two chunk boundaries.
	allocs := testing.AllocsPerRun(1000, func() {
		if _, _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.2f allocations per Next, want 0", allocs)
	}
}

func TestReaderCloseEndsReading(t *testing.T) {
	l, _ := open(t, t.TempDir(), 0, Options{})
	appendAll(t, l, "a", "b")
	r := l.NewReader(1)
	if _, _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, _, err := r.Next(); err == nil || err == io.EOF {
		t.Fatalf("Next after Close = %v, want an error", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
}

// FuzzReaderSegment reads arbitrary segment contents (a file after a crash, or damaged) with
// arbitrary read sizes and durable positions. The reader never panics and agrees with the scan
// Open makes: it returns the intact records from the first, in order, up to the durable one, and
// when a durable record is not intact it reports a CorruptError where the scan stopped.
func FuzzReaderSegment(f *testing.F) {
	var seg []byte
	for i := uint64(1); i <= 5; i++ {
		seg = appendFrame(seg, i, i, bytes.Repeat([]byte{byte(i)}, int(i*37)))
	}
	f.Add(seg, uint8(5), uint16(0))
	f.Add(seg, uint8(7), uint16(30))
	f.Add(seg[:150], uint8(4), uint16(9))
	f.Add(append(slices.Clone(seg), make([]byte, 100)...), uint8(3), uint16(100))
	dir := f.TempDir() // one per fuzzing process: a directory per input would slow minimizing
	f.Fuzz(func(t *testing.T, data []byte, durable uint8, chunk uint16) {
		path := filepath.Join(dir, fmt.Sprintf("%020d.wal", 1))
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		// A segment size of which any record in data takes at most a quarter, as Append ensures;
		// the file is shorter than it, as a cut file would be.
		l := &Log{dir: dir, segSize: int64(4*len(data) + align), segments: []uint64{1}}
		l.lastLSN.Store(uint64(durable))
		want, _ := scan(data, path, 1, 0)
		r := l.NewReader(1)
		defer r.Close()
		if chunk > 0 {
			r.chunk = int(chunk)
		}
		for i := 0; ; i++ {
			lsn, p, err := r.Next()
			if err == io.EOF {
				if i != int(durable) {
					t.Fatalf("io.EOF after %d records, %d of them durable", i, durable)
				}
				return
			}
			if err != nil {
				var ce *CorruptError
				if !errors.As(err, &ce) || i != len(want.frames) || ce.LSN != uint64(i+1) || ce.Offset != int64(want.end) {
					t.Fatalf("after %d records (the scan found %d ending at %d): %v", i, len(want.frames), want.end, err)
				}
				return
			}
			if i >= len(want.frames) || lsn != want.frames[i].lsn || !bytes.Equal(p, want.frames[i].payload) {
				t.Fatalf("record %d read as %d %q, not as the scan found it", i, lsn, p)
			}
		}
	})
}

// BenchmarkReaderNext reads a backlog of 700-byte records (an event's size) across 4 MiB segments
// from real files: the delivery workers' catch-up after an outage.
func BenchmarkReaderNext(b *testing.B) {
	l, err := Open(b.TempDir(), 0, func(uint64, []byte) error { return nil }, Options{SegmentSize: 4 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	const records = 30000
	payloads := make([][]byte, records)
	for i := range payloads {
		payloads[i] = record(0, i, 700)
	}
	appendConcurrently(b, l, 64, payloads)
	r := l.NewReader(1)
	b.SetBytes(700)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		_, _, err := r.Next()
		if err == io.EOF {
			// A new reader from the start; its buffer and first read are not what is measured.
			b.StopTimer()
			r.Close()
			r = l.NewReader(1)
			_, _, err = r.Next()
			b.StartTimer()
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	r.Close()
}

// BenchmarkReaderTail reads records as they become durable, group by group, as a delivery worker
// does when it keeps up with the writer: each group needs a read of its own. The records are
// written beforehand and LastLSN is moved forward by hand, so that the measure is the reader's
// and not the writer's fdatasync.
func BenchmarkReaderTail(b *testing.B) {
	for _, group := range []uint64{1, 16, 256} {
		b.Run(fmt.Sprintf("group=%d", group), func(b *testing.B) {
			l, err := Open(b.TempDir(), 0, func(uint64, []byte) error { return nil }, Options{SegmentSize: 4 << 20})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			const records = 4096
			payloads := make([][]byte, records)
			for i := range payloads {
				payloads[i] = record(0, i, 700)
			}
			appendConcurrently(b, l, 64, payloads)
			end := l.LastLSN()
			defer l.lastLSN.Store(end)
			r := l.NewReader(1)
			l.lastLSN.Store(group)
			b.SetBytes(700)
			b.ReportAllocs()
			for b.Loop() {
				_, _, err := r.Next()
				if err == io.EOF {
					if last := l.LastLSN(); last+group <= end {
						l.lastLSN.Store(last + group)
						_, _, err = r.Next()
					} else {
						// A new reader from the start; its buffer is not what is measured.
						b.StopTimer()
						r.Close()
						r = l.NewReader(1)
						l.lastLSN.Store(group)
						_, _, err = r.Next()
						b.StartTimer()
					}
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			r.Close()
		})
	}
}
