package conversion

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// FuzzParseIDKey is ParseIDKey on whatever the storage holds under the event ID key: it accepts
// exactly IDKeySize bytes that are not all zero and refuses everything else with the zero key; an
// accepted key is those bytes, copied (a later change to the storage's buffer does not change it),
// round-trips through k[:], and derives valid event IDs that differ from another key's. Nothing
// shows the bytes: a refusal's error is the same for any bytes of that length (and zero-ness), and
// an accepted key prints and encodes (fmt's common verbs, directly and inside a struct, and JSON)
// exactly as any other key does.
func FuzzParseIDKey(f *testing.F) {
	f.Add(testIDKey[:])
	f.Add(bytes.Repeat([]byte{0xA5}, IDKeySize))
	f.Add(append(make([]byte, IDKeySize-1), 1))
	f.Add(make([]byte, IDKeySize))
	f.Add(testIDKey[:IDKeySize-1])
	f.Add(append(testIDKey[:], 0))
	f.Add([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")) // the key in hex, not bytes
	f.Add([]byte("correct horse battery staple!!!!"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		zero := bytes.Count(b, []byte{0}) == len(b)
		k, err := ParseIDKey(b)
		if valid := len(b) == IDKeySize && !zero; valid != (err == nil) {
			t.Fatalf("ParseIDKey(%d bytes, all zero %v) error = %v", len(b), zero, err)
		}
		if err != nil {
			if !k.IsZero() {
				t.Fatal("a refused key is not the zero key")
			}
			// Other bytes of the same length and zero-ness must be refused in the same words.
			other := make([]byte, len(b))
			if !zero {
				for i := range other {
					other[i] = b[i] ^ 0x5A | 1
				}
			}
			if _, err2 := ParseIDKey(other); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("the error depends on the bytes: %q, for other bytes %v", err, err2)
			}
			return
		}
		if !bytes.Equal(k[:], b) {
			t.Fatal("the accepted key is not the stored bytes")
		}
		stored := bytes.Clone(b)
		b[0] ^= 0xFF
		if !bytes.Equal(k[:], stored) {
			t.Fatal("the key aliases the storage's buffer")
		}
		if k2, err := ParseIDKey(k[:]); err != nil || k2 != k {
			t.Fatalf("ParseIDKey(k[:]) = %v", err)
		}
		id := EventID(k, "Purchase", "1001")
		if !ValidEventID(id) || len(id) != EventIDLength || id != EventID(k, "Purchase", " 1001 ") {
			t.Fatalf("EventID under the key = %q", id)
		}
		other := testIDKey
		if k == other {
			copy(other[:], bytes.Repeat([]byte{0xA5}, IDKeySize))
		}
		if id == EventID(other, "Purchase", "1001") {
			t.Fatal("two keys derive the same event ID")
		}

		shows := func(k IDKey) []string {
			holder := struct{ Key IDKey }{k}
			var out []string
			for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%o", "%b", "%c", "%U"} {
				for _, v := range []any{k, holder, &holder} {
					out = append(out, fmt.Sprintf(verb, v))
				}
			}
			for _, v := range []any{k, holder} {
				if b, err := json.Marshal(v); err == nil {
					out = append(out, "encoded: "+string(b))
				} else {
					out = append(out, "refused: "+err.Error())
				}
			}
			return out
		}
		got, want := shows(k), shows(other)
		for i := range got {
			if got[i] != want[i] || strings.HasPrefix(got[i], "encoded: ") {
				t.Fatalf("the key shows as %q, another key as %q", got[i], want[i])
			}
		}
	})
}
