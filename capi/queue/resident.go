package queue

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"go.etcd.io/bbolt"

	"github.com/caddy-capi/caddy-capi/capi/internal/boltcommit"
)

// Events wait for delivery in the write-ahead log itself. An enqueued event is written once, to the
// log, and nothing is written to bbolt for it until it is settled: a delivered event leaves only a
// moved cursor behind. Each partition reads the log forward from its cursor (skipping the other
// platforms' records), holds the events it has read and not settled in a window, and leases from it
// beside the ready bucket. bbolt holds what waits longer than the log should: rescheduled events,
// replayed dead letters, events of the ready bucket from before this design, and events moved out
// of a log grown past maxLogSegments (evacuate; one leased meanwhile keeps its lease on its copy in
// bbolt, under the receipt its holder has: partition.moved).
//
// Persistent state, in bbolt:
//   - queue.log/applied, the base: no record at or below it holds an event still waiting in the log.
//     The log is released below min(base, dedup checkpoint).
//   - queue.cursor, platform → position: every event of the platform before it is settled.
//     Written with every settlement of log-resident events, in the same transaction as what the
//     settlement moved into bbolt, so an acknowledged event is not sent again after a restart.
//   - queue.settled.<platform>, position → "": events at or after the cursor that were settled out
//     of order. Deleted once the cursor passes them.
//
// Settling a log-resident event is, for the partition, a move of its cursor, so settlements of one
// partition's log-resident events are serialized (partition.settleMu). Enqueue never touches any of
// this: it appends to the log, and the partition's resident counter tells the checkpoint whether
// the partition may still find events of its own in the log.

var (
	cursorBucket  = []byte("queue.cursor")
	settledPrefix = "queue.settled." // + platform
)

// maxLogSegments is how many segments the log may hold before the partitions that hold it back
// have their oldest waiting events moved into bbolt: 256 MiB with the default segment size, some
// minutes of a busy shop's events, hours of most. A platform in an outage, or one no longer
// configured, then costs bbolt writes as every event did before; a platform that keeps up never does.
var maxLogSegments = 16

// evacuateChunk is how many events one evacuation write moves.
const evacuateChunk = 2000

// checkpointEvery is how often the partitions' positions are made durable and the log released
// below them.
const checkpointEvery = time.Second

// logPos is where a log-resident event is: its log record and its index in the record.
type logPos struct {
	lsn uint64
	idx uint32
}

func (a logPos) compare(b logPos) int {
	if c := cmp.Compare(a.lsn, b.lsn); c != 0 {
		return c
	}
	return cmp.Compare(a.idx, b.idx)
}

const logPosSize = 12

func (a logPos) appendTo(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, a.lsn)
	return binary.BigEndian.AppendUint32(b, a.idx)
}

func decodeLogPos(b []byte) (logPos, error) {
	if len(b) != logPosSize {
		return logPos{}, fmt.Errorf("%w: log position of %d bytes", errBadRecord, len(b))
	}
	return logPos{binary.BigEndian.Uint64(b), binary.BigEndian.Uint32(b[8:])}, nil
}

// A receipt of a log-resident event is residentTag and its position; one of a bbolt event is its
// 16-byte ready key.
const (
	residentTag         = 'L'
	residentReceiptSize = 1 + logPosSize
)

func residentReceipt(pos logPos) string {
	var b [residentReceiptSize]byte
	b[0] = residentTag
	pos.appendTo(b[1:1])
	return string(b[:])
}

func parseResidentReceipt(r string) (logPos, bool) {
	if len(r) != residentReceiptSize || r[0] != residentTag {
		return logPos{}, false
	}
	pos, err := decodeLogPos([]byte(r[1:]))
	return pos, err == nil
}

// residentEvent is a log-resident event a partition has read.
type residentEvent struct {
	pos      logPos
	enqueued int64
	event    []byte // JSON, owned by the window
	leased   bool
	settled  bool
	moving   bool // being moved out of the log (evacuate)
}

// find returns the index of pos in the window (sorted by position), or -1.
func (p *partition) find(pos logPos) int {
	i, ok := slices.BinarySearchFunc(p.window, pos, func(e residentEvent, pos logPos) int { return e.pos.compare(pos) })
	if !ok {
		return -1
	}
	return i
}

// trim drops the settled events at the front of the window and moves the cursor to the first
// unsettled one, or to the read position when none is left. The caller holds mu.
func (p *partition) trim() {
	n := 0
	for n < len(p.window) && p.window[n].settled {
		n++
	}
	if n > 0 {
		clear(p.window[:n])
		p.window = p.window[n:]
		if len(p.window) == 0 {
			p.window = nil // let the array go
		}
	}
	if len(p.window) > 0 {
		p.cursor = p.window[0].pos
	} else {
		p.cursor = p.readPos
	}
}

// read reads the log forward until the window holds want events that are neither leased, settled
// nor being moved, or the log ends. The caller holds mu.
func (q *Bolt) read(p *partition, want int) error {
	free, unsettled := 0, 0
	for _, e := range p.window {
		if !e.settled {
			unsettled++
			if !e.leased && !e.moving {
				free++
			}
		}
	}
	// The resident counter says whether any of the partition's events is left to read: a
	// partition with none does not read the other platforms' records.
	for free < want && p.resident.Load() > int64(unsettled) {
		if p.reader == nil {
			p.reader = q.log.NewReader(p.readPos.lsn)
		}
		lsn, payload, err := p.reader.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			p.reader.Close()
			p.reader = nil
			return fmt.Errorf("read the log at record %d: %w", p.readPos.lsn, err)
		}
		from := p.readPos.idx
		if !bytes.Equal(loggedPlatform(payload), p.name) {
			p.readPos = logPos{lsn + 1, 0}
			continue
		}
		b, err := decodeLogged(payload)
		if err != nil {
			// Not skipped: the next read starts at this record again, and fails again.
			p.reader.Close()
			p.reader = nil
			return fmt.Errorf("log record %d: %w", lsn, err)
		}
		p.readPos = logPos{lsn + 1, 0}
		for i := int(from); i < len(b.events); i++ {
			pos := logPos{lsn, uint32(i)}
			if _, done := p.ahead[pos]; done {
				delete(p.ahead, pos)
				continue
			}
			p.window = append(p.window, residentEvent{pos: pos, enqueued: b.enqueued, event: bytes.Clone(b.events[i])})
			free++
			unsettled++
		}
	}
	return nil
}

// loggedPlatform returns the platform of a logged batch without decoding the rest, nil if it cannot
// tell (decodeLogged then says why).
func loggedPlatform(p []byte) []byte {
	if len(p) < 9 {
		return nil
	}
	n, k := binary.Uvarint(p[9:])
	if k <= 0 || n > uint64(len(p)-9-k) {
		return nil
	}
	return p[9+k : 9+k+int(n)]
}

// residentCandidates returns up to max of the window's events that are neither leased, settled nor
// being moved, in log order. The caller holds mu.
func (p *partition) residentCandidates(max int) []int {
	var idx []int
	for i := range p.window {
		if len(idx) == max {
			break
		}
		if e := &p.window[i]; !e.leased && !e.settled && !e.moving {
			idx = append(idx, i)
		}
	}
	return idx
}

// residentSettlement is a settlement of a log-resident event, resolved against the window.
type residentSettlement struct {
	Settlement
	pos      logPos
	enqueued int64
	event    []byte
}

// settleResident settles log-resident events: Reschedule and Bury move them into bbolt, and the
// partition's cursor and out-of-order settlements are written in the same transaction. Settlements
// of events that are not in the window, or settled already, are no-ops; those of events moved out
// of the log while leased are returned, with their ready keys as receipts, for the caller to
// settle in bbolt. evacuated marks a move of waiting events out of the log (evacuate), which keeps
// their identity and costs no attempt; an event leased meanwhile keeps its lease on its bbolt copy.
func (q *Bolt) settleResident(p *partition, ss []residentSettlement, evacuated bool) ([]Settlement, error) {
	p.settleMu.Lock()
	defer p.settleMu.Unlock()
	// Resolved once: only this partition's settlements change the window's settled marks, and they
	// hold settleMu.
	p.mu.Lock()
	var moved []Settlement
	n := 0
	batch := make(map[logPos]bool, len(ss))
	for _, s := range ss {
		if key, ok := p.moved[s.pos]; ok && !evacuated {
			s.Settlement.Receipt = key
			moved = append(moved, s.Settlement)
			continue
		}
		i := p.find(s.pos)
		if i < 0 || p.window[i].settled || batch[s.pos] {
			continue
		}
		batch[s.pos] = true
		s.enqueued, s.event = p.window[i].enqueued, p.window[i].event
		ss[n] = s
		n++
	}
	ss = ss[:n]
	// The cursor once they are settled: the first event of the window neither settled nor in ss.
	cursor := p.readPos
	for _, e := range p.window {
		if !e.settled && !batch[e.pos] {
			cursor = e.pos
			break
		}
	}
	p.mu.Unlock()
	if len(ss) == 0 {
		return moved, nil
	}
	now := q.now().UnixNano()
	var acked, buried int64
	keys := make([]string, len(ss)) // evacuated: where each event went
	err := q.submit(context.Background(), boltcommit.Write{
		Apply: func(tx *bbolt.Tx) error {
			acked, buried = 0, 0
			ready, err := tx.CreateBucketIfNotExists(p.ready)
			if err != nil {
				return err
			}
			var dead *bbolt.Bucket
			for i, s := range ss {
				if s.Outcome == Ack {
					acked++
					continue
				}
				seq, err := ready.NextSequence()
				if err != nil {
					return err
				}
				r := record{enqueued: s.enqueued, attempts: uint32(max(s.Attempts, 0)), reason: s.Reason, event: s.event}
				switch s.Outcome {
				case Reschedule:
					notBefore := unixNano(s.NotBefore)
					if evacuated {
						notBefore = s.enqueued
					}
					key := readyKey(notBefore, seq)
					keys[i] = string(key)
					err = ready.Put(key, r.encode())
				case Bury:
					if dead == nil {
						if dead, err = tx.CreateBucketIfNotExists(p.dead); err != nil {
							return err
						}
					}
					r.buried = now
					err = dead.Put(seqKey(seq), r.encode())
					buried++
				}
				if err != nil {
					return err
				}
			}
			return p.writePositions(tx, cursor, ss)
		},
		Committed: func() {
			p.mu.Lock()
			for j, s := range ss {
				i := p.find(s.pos)
				if i < 0 {
					continue
				}
				e := &p.window[i]
				if evacuated && e.leased {
					// Still being sent: the lease goes on, on the copy in bbolt.
					p.moved[s.pos] = keys[j]
					p.leased[binary.BigEndian.Uint64([]byte(keys[j][8:]))] = struct{}{}
				}
				e.settled, e.moving, e.event = true, false, nil
			}
			p.trim()
			p.mu.Unlock()
			p.resident.Add(-int64(len(ss)))
			p.depth.Add(-acked - buried)
			p.deadCount.Add(buried)
		},
	}, false)
	return moved, err
}

// writePositions writes the partition's cursor and the settlements of ss at or after it, and
// deletes the out-of-order settlements the cursor has passed.
func (p *partition) writePositions(tx *bbolt.Tx, cursor logPos, ss []residentSettlement) error {
	cursors, err := tx.CreateBucketIfNotExists(cursorBucket)
	if err != nil {
		return err
	}
	if err := cursors.Put(p.name, cursor.appendTo(nil)); err != nil {
		return err
	}
	var settled *bbolt.Bucket
	for _, s := range ss {
		if s.pos.compare(cursor) < 0 {
			continue
		}
		if settled == nil {
			if settled, err = tx.CreateBucketIfNotExists(p.settled); err != nil {
				return err
			}
		}
		if err := settled.Put(s.pos.appendTo(nil), nil); err != nil {
			return err
		}
	}
	if settled == nil {
		if settled = tx.Bucket(p.settled); settled == nil {
			return nil
		}
	}
	below := cursor.appendTo(nil)
	var passed [][]byte
	c := settled.Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k, below) < 0; k, _ = c.Next() {
		passed = append(passed, bytes.Clone(k))
	}
	for _, k := range passed {
		if err := settled.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// checkpoint makes the base durable: the lowest LSN any partition may still find a waiting event
// of its own at, less one. Then it lets the log release what is below both it and the dedup
// checkpoint.
func (q *Bolt) checkpoint() error {
	// Read before the partitions' resident counters: an event logged at or below last was counted
	// (Enqueue counts before it appends) before last was read.
	last := q.log.LastLSN()
	base := last
	q.partsMu.RLock()
	for _, p := range q.parts {
		p.mu.Lock()
		if len(p.window) == 0 && p.resident.Load() == 0 {
			// Nothing of its own waits in the log: the partition need not read what is there.
			if p.readPos.lsn <= last {
				p.readPos = logPos{last + 1, 0}
				p.cursor = p.readPos
				if p.reader != nil {
					p.reader.Close()
					p.reader = nil
				}
			}
		}
		if p.cursor.lsn > 0 {
			base = min(base, p.cursor.lsn-1)
		}
		p.mu.Unlock()
	}
	q.partsMu.RUnlock()
	q.logMu.Lock()
	moved := base > q.base
	q.logMu.Unlock()
	if moved {
		err := q.submit(context.Background(), boltcommit.Write{Apply: func(tx *bbolt.Tx) error {
			return tx.Bucket(logBucket).Put(appliedKey, binary.BigEndian.AppendUint64(nil, base))
		}}, false)
		if err != nil {
			return fmt.Errorf("queue: checkpoint the log at record %d: %w", base, err)
		}
		q.logMu.Lock()
		q.base = max(q.base, base)
		q.logMu.Unlock()
	}
	q.releaseLog()
	return nil
}

// evacuate moves waiting events out of a log that has grown past maxLogSegments into bbolt, from
// the partitions that hold the log back, oldest first, until the log is back within the limit or
// what holds it is the dedup checkpoint.
func (q *Bolt) evacuate() error {
	for q.log.Segments() > maxLogSegments {
		q.logMu.Lock()
		flushed := q.flushed
		q.logMu.Unlock()
		var oldest *partition
		var oldestLSN uint64
		q.partsMu.RLock()
		for _, p := range q.parts {
			if p.resident.Load() == 0 {
				continue
			}
			if c := p.cursorLSN(); oldest == nil || c < oldestLSN {
				oldest, oldestLSN = p, c
			}
		}
		q.partsMu.RUnlock()
		if oldest == nil || oldestLSN > flushed {
			return nil // the dedup checkpoint holds the log, not waiting events
		}
		moved, err := q.evacuateChunk(oldest)
		if err != nil {
			return err
		}
		if err := q.checkpoint(); err != nil {
			return err
		}
		if moved == 0 {
			return nil
		}
	}
	return nil
}

func (p *partition) cursorLSN() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cursor.lsn
}

// evacuateChunk moves up to evacuateChunk of the partition's oldest waiting events into bbolt, and
// returns how many it moved. An event leased meanwhile moves too and keeps its lease: otherwise a
// partial batch held for its flush interval would hold the whole log back.
func (q *Bolt) evacuateChunk(p *partition) (int, error) {
	p.mu.Lock()
	err := q.read(p, evacuateChunk)
	var ss []residentSettlement
	if err == nil {
		for i := range p.window {
			e := &p.window[i]
			if len(ss) == evacuateChunk {
				break
			}
			if !e.settled && !e.moving {
				e.moving = true // kept from Lease while they move
				ss = append(ss, residentSettlement{Settlement: Settlement{Outcome: Reschedule}, pos: e.pos})
			}
		}
	}
	p.mu.Unlock()
	if err != nil || len(ss) == 0 {
		return 0, err
	}
	if _, err := q.settleResident(p, ss, true); err != nil {
		p.mu.Lock()
		for _, s := range ss {
			if i := p.find(s.pos); i >= 0 {
				p.window[i].moving = false
			}
		}
		p.mu.Unlock()
		return 0, fmt.Errorf("queue: move %d waiting %s events out of the log: %w", len(ss), p.name, err)
	}
	return len(ss), nil
}

// logLoop checkpoints every checkpointEvery, and evacuates when the log has grown too long, until
// Close.
func (q *Bolt) logLoop() {
	defer close(q.logDone)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-q.logStop:
			return
		case <-t.C:
		}
		// Failures are retried at the next tick; nothing is lost meanwhile, the log only grows.
		if err := q.checkpoint(); err != nil {
			continue
		}
		_ = q.evacuate()
	}
}

// residentAtOpen holds what OpenBolt reads of the partitions' positions before it replays the log.
type residentAtOpen struct {
	base    uint64
	cursors map[string]logPos
	settled map[string]map[logPos]struct{}
	counts  map[string]int64
}

// readPositions reads the cursors and out-of-order settlements.
func readPositions(tx *bbolt.Tx, base uint64) (*residentAtOpen, error) {
	r := &residentAtOpen{base: base, cursors: map[string]logPos{}, settled: map[string]map[logPos]struct{}{}, counts: map[string]int64{}}
	if b := tx.Bucket(cursorBucket); b != nil {
		err := b.ForEach(func(k, v []byte) error {
			pos, err := decodeLogPos(v)
			if err != nil {
				return fmt.Errorf("cursor of %s: %w", k, err)
			}
			r.cursors[string(k)] = pos
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	err := tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
		if !bytes.HasPrefix(name, []byte(settledPrefix)) {
			return nil
		}
		platform := string(name[len(settledPrefix):])
		set := make(map[logPos]struct{})
		err := b.ForEach(func(k, _ []byte) error {
			pos, err := decodeLogPos(k)
			if err != nil {
				return fmt.Errorf("settled event of %s: %w", platform, err)
			}
			set[pos] = struct{}{}
			return nil
		})
		r.settled[platform] = set
		return err
	})
	return r, err
}

// cursor is where the platform's waiting events start: its cursor, or after the base if that is
// later (the base moves without writing every cursor).
func (r *residentAtOpen) cursor(platform string) logPos {
	c := r.cursors[platform]
	if floor := (logPos{r.base + 1, 0}); c.compare(floor) < 0 {
		return floor
	}
	return c
}

// count counts a replayed record's waiting events.
func (r *residentAtOpen) count(lsn uint64, b loggedBatch) {
	if lsn <= r.base {
		return
	}
	c := r.cursor(b.platform)
	set := r.settled[b.platform]
	for i := range b.keys {
		pos := logPos{lsn, uint32(i)}
		if pos.compare(c) < 0 {
			continue
		}
		if _, done := set[pos]; done {
			continue
		}
		r.counts[b.platform]++
	}
}
