package queue

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzDecodeLogged feeds arbitrary payloads (a write-ahead log record replayed after a crash) to the
// batch decoder: it never panics, and whatever it accepts re-encodes to a batch that decodes the
// same (lengths may be written non-minimally in the input, so the bytes may differ). The
// partitions' quick look at a record's platform (loggedPlatform, which decides what a partition
// skips) agrees with the decoder on every record the decoder accepts, and never panics either.
func FuzzDecodeLogged(f *testing.F) {
	f.Add(loggedBatch{platform: "meta", enqueued: 1764244800000000000,
		keys: [][]byte{[]byte(dedupKey("meta", "Purchase", "a"))}, events: [][]byte{[]byte(`{"event_name":"Purchase"}`)}}.encode())
	f.Add(loggedBatch{platform: "tiktok"}.encode())
	f.Add([]byte{loggedVersionRecords, 0, 0, 0, 0, 0, 0, 0, 0, 4, 'm', 'e', 't', 'a', 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add(encodeLoggedV1(loggedBatch{platform: "meta", enqueued: 1764244800000000000,
		keys: [][]byte{[]byte(dedupKey("meta", "Purchase", "b"))}, events: [][]byte{[]byte(`{"event_name":"Purchase"}`)}}))
	f.Fuzz(func(t *testing.T, p []byte) {
		platform := loggedPlatform(p)
		b, err := decodeLogged(p)
		if err != nil {
			return
		}
		if string(platform) != b.platform || platform == nil {
			t.Fatalf("loggedPlatform = %q, the decoder read %q", platform, b.platform)
		}
		if len(b.keys) != len(b.events) {
			t.Fatalf("%d keys for %d events", len(b.keys), len(b.events))
		}
		for _, k := range b.keys {
			if len(k) != dedupKeySize {
				t.Fatalf("key of %d bytes", len(k))
			}
		}
		again, err := decodeLogged(b.encode())
		if err != nil {
			t.Fatalf("the re-encoded batch does not decode: %v", err)
		}
		if again.platform != b.platform || again.enqueued != b.enqueued || len(again.keys) != len(b.keys) {
			t.Fatalf("re-encoding changed the batch: %+v, then %+v", b, again)
		}
		for i := range b.keys {
			if !bytes.Equal(again.keys[i], b.keys[i]) || !bytes.Equal(again.events[i], b.events[i]) {
				t.Fatalf("re-encoding changed event %d", i)
			}
			// The record the log carries for each event decodes to the event, as enqueued.
			r, err := decodeRecord(again.stored[i])
			if err != nil || r.enqueued != b.enqueued || r.buried != 0 || r.attempts != 0 || r.reason != "" || !bytes.Equal(r.event, b.events[i]) {
				t.Fatalf("stored record %d decodes to %+v, %v", i, r, err)
			}
			if b.stored != nil && !bytes.Equal(b.stored[i], again.stored[i]) {
				t.Fatalf("stored record %d changed on re-encoding", i)
			}
		}
	})
}

// encodeLoggedV1 writes a batch as logs written before version 2 hold it (the event's JSON where
// version 2 has its stored record), so that their decoding stays tested.
func encodeLoggedV1(b loggedBatch) []byte {
	out := []byte{loggedVersionJSON}
	out = binary.BigEndian.AppendUint64(out, uint64(b.enqueued))
	out = binary.AppendUvarint(out, uint64(len(b.platform)))
	out = append(out, b.platform...)
	out = binary.AppendUvarint(out, uint64(len(b.events)))
	for i, e := range b.events {
		out = append(out, b.keys[i]...)
		out = binary.AppendUvarint(out, uint64(len(e)))
		out = append(out, e...)
	}
	return out
}
