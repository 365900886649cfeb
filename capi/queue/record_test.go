package queue

import (
	"bytes"
	"testing"
)

func TestRecordRoundTrips(t *testing.T) {
	for _, r := range []record{
		{},
		{enqueued: 1764244800000000000, attempts: 3, reason: "(#100) Invalid parameter", event: []byte(`{"name":"Purchase","id":"a"}`)},
		{enqueued: 1, buried: 2, attempts: 1 << 31, reason: "ünïcode ✓", event: []byte(`{}`)},
	} {
		got, err := decodeRecord(r.encode())
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", r, err)
		}
		if got.enqueued != r.enqueued || got.buried != r.buried || got.attempts != r.attempts ||
			got.reason != r.reason || !bytes.Equal(got.event, r.event) {
			t.Errorf("round trip of %+v gave %+v", r, got)
		}
	}
}

func TestDedupKeySeparatesItsParts(t *testing.T) {
	keys := map[string]bool{}
	for _, parts := range [][3]string{
		{"meta", "Purchase", "a"}, {"meta", "Purchasea", ""}, {"metaPurchase", "", "a"},
		{"tiktok", "Purchase", "a"}, {"meta", "Lead", "a"}, {"meta", "Purchase", "b"},
	} {
		k := dedupKey(parts[0], parts[1], parts[2])
		if len(k) != 16 || keys[k] {
			t.Fatalf("dedupKey%v = %x: not a distinct 16-byte key", parts, k)
		}
		keys[k] = true
	}
}

// FuzzDecodeRecord feeds arbitrary bytes (a damaged file) to the record decoder: it must never
// panic, and whatever it accepts must encode back to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(record{enqueued: 5, attempts: 2, reason: "x", event: []byte(`{"id":"a"}`)}.encode())
	f.Add([]byte{})
	f.Add([]byte{recordVersion, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		if got := r.encode(); !bytes.Equal(got, b) {
			t.Fatalf("decode/encode changed %x into %x", b, got)
		}
	})
}
