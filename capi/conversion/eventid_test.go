package conversion

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEventIDMatchesGolden pins the scheme: the IDs in testdata were computed by a separate
// implementation (Python's hmac module), and a change of any of them would make an order's webhook
// after a deploy miss the thank-you page's ID from before it.
func TestEventIDMatchesGolden(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "event_ids.golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var golden struct {
		IDs []struct {
			Key     string `json:"key"`
			Name    string `json:"name"`
			OrderID string `json:"order_id"`
			EventID string `json:"event_id"`
		} `json:"ids"`
	}
	if err := json.Unmarshal(b, &golden); err != nil {
		t.Fatal(err)
	}
	if len(golden.IDs) == 0 {
		t.Fatal("no golden IDs")
	}
	keys := map[IDKey]bool{}
	for _, g := range golden.IDs {
		raw, err := hex.DecodeString(g.Key)
		if err != nil {
			t.Fatal(err)
		}
		key, err := ParseIDKey(raw)
		if err != nil {
			t.Fatal(err)
		}
		keys[key] = true
		if got := EventID(key, g.Name, g.OrderID); got != g.EventID {
			t.Errorf("EventID(key %s…, %q, %q) = %s, golden %s", g.Key[:8], g.Name, g.OrderID, got, g.EventID)
		}
	}
	if len(keys) < 2 {
		t.Error("the golden file should pin IDs under more than one key")
	}
}

func TestEventIDIsDeterministicPerNameAndOrder(t *testing.T) {
	purchase := EventID(testIDKey, "Purchase", "1001")
	tests := []struct {
		name       string
		event, ord string
		same       bool
	}{
		{"same name and order", "Purchase", "1001", true},
		{"whitespace around the order ID is ignored", "Purchase", " 1001\t\n", true},
		{"another event name for the same order", "Lead", "1001", false},
		{"event name case matters (platforms dedup on exact names)", "purchase", "1001", false},
		{"another order", "Purchase", "1002", false},
		{"order ID case is kept", "Purchase", "1001a", false},
		{"name and order are separated, not concatenated", "Purchase1", "001", false},
		{"inner whitespace is kept", "Purchase", "10 01", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := EventID(testIDKey, tt.event, tt.ord)
			if (got == purchase) != tt.same {
				t.Errorf("EventID(%q, %q) = %s; equal to Purchase/1001's %s: %v, want %v", tt.event, tt.ord, got, purchase, got == purchase, tt.same)
			}
			if len(got) != EventIDLength || !ValidEventID(got) {
				t.Errorf("EventID(%q, %q) = %q: not a valid %d-character ID", tt.event, tt.ord, got, EventIDLength)
			}
		})
	}
	if EventID(testIDKey, "Purchase", "ABC") == EventID(testIDKey, "Purchase", "abc") {
		t.Error("order IDs differing in case share an event ID")
	}
}

// TestEventIDDependsOnTheKey: two installations never share an order's ID, and a key that differs
// in one bit gives an unrelated ID.
func TestEventIDDependsOnTheKey(t *testing.T) {
	other := testIDKey
	other[IDKeySize-1] ^= 1
	drawn, err := NewIDKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, order := range []string{"1001", "1002", "ABC-123", "注文-42"} {
		a, b, c := EventID(testIDKey, "Purchase", order), EventID(other, "Purchase", order), EventID(drawn, "Purchase", order)
		if a == b || a == c || b == c {
			t.Errorf("order %q: keys differing in one bit or drawn at random share an ID (%s %s %s)", order, a, b, c)
		}
		if EventID(testIDKey, "Purchase", order) != a {
			t.Errorf("order %q: the same key gave two IDs", order)
		}
	}
}

// TestEventIDIsNotComputableFromPublicInputs: what someone who knows the scheme, the event name
// and the order number — but not the key — can compute never equals the real ID. These are the
// derivations an attacker would try: the unkeyed v1 scheme (which shipped), an unkeyed hash of the
// v2 message, HMAC under the zero key, an empty key or a guessed one.
func TestEventIDIsNotComputableFromPublicInputs(t *testing.T) {
	unkeyed := func(domain, name, order string) string {
		sum := sha256.Sum256([]byte(domain + name + "\x00" + order))
		return hex.EncodeToString(sum[:EventIDLength/2])
	}
	hmacUnder := func(key []byte, name, order string) string {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(eventIDDomain + name + "\x00" + order))
		return hex.EncodeToString(m.Sum(nil)[:EventIDLength/2])
	}
	guessed := IDKey{}
	copy(guessed[:], "shop.example.com capi event key!")
	for _, order := range []string{"1001", "1002", "cs_test_a1B2c3D4e5F6g7H8"} {
		real := EventID(testIDKey, "Purchase", order)
		if real != hmacUnder(testIDKey[:], "Purchase", order) {
			t.Fatalf("EventID is not HMAC-SHA256 under the key it was given")
		}
		for what, id := range map[string]string{
			"unkeyed v1 scheme":       unkeyed("capi-event-v1\x00", "Purchase", order),
			"unkeyed v2 message":      unkeyed(eventIDDomain, "Purchase", order),
			"HMAC under a zero key":   hmacUnder(make([]byte, IDKeySize), "Purchase", order),
			"HMAC under an empty key": hmacUnder(nil, "Purchase", order),
			"a guessed key":           EventID(guessed, "Purchase", order),
		} {
			if id == real {
				t.Errorf("order %q: the %s reproduces the real ID %s", order, what, real)
			}
		}
	}
}

// TestEventIDWithZeroKeyIsRandom: the zero key never derives, because an ID under a key everyone
// knows is exactly the hole the key closes.
func TestEventIDWithZeroKeyIsRandom(t *testing.T) {
	a, b := EventID(IDKey{}, "Purchase", "1001"), EventID(IDKey{}, "Purchase", "1001")
	if a == b {
		t.Fatalf("the zero key derived the same ID %s twice", a)
	}
	if len(a) != EventIDLength || !ValidEventID(a) {
		t.Errorf("zero-key ID %q has the wrong shape", a)
	}
}

func TestEventIDWithoutOrderIsRandom(t *testing.T) {
	a, b := EventID(testIDKey, "Purchase", ""), EventID(testIDKey, "Purchase", "  ")
	if a == b {
		t.Fatalf("two order-less events share the ID %s: the platforms would drop the second", a)
	}
	for _, id := range []string{a, b} {
		if len(id) != EventIDLength || !ValidEventID(id) {
			t.Errorf("random ID %q has the wrong shape", id)
		}
	}
}

func TestNewIDKey(t *testing.T) {
	fixed := bytes.Repeat([]byte{0x5c}, IDKeySize)
	k, err := NewIDKey(bytes.NewReader(fixed))
	if err != nil || !bytes.Equal(k[:], fixed) {
		t.Fatalf("NewIDKey(0x5c…) = %x, %v", k[:], err)
	}
	a, errA := NewIDKey(nil)
	b, errB := NewIDKey(nil)
	if errA != nil || errB != nil || a == b || a.IsZero() {
		t.Fatalf("two keys from crypto/rand: equal %v, zero %v, errors %v %v", a == b, a.IsZero(), errA, errB)
	}
	for name, r := range map[string]io.Reader{
		"failing source": failingReader{},
		"short source":   bytes.NewReader([]byte{1, 2, 3}),
		"zero bytes":     bytes.NewReader(make([]byte, IDKeySize)),
	} {
		if k, err := NewIDKey(r); err == nil || !k.IsZero() {
			t.Errorf("%s: NewIDKey = %v, %v; want the zero key and an error (no fallback)", name, k, err)
		}
	}
}

func TestParseIDKey(t *testing.T) {
	k, err := ParseIDKey(testIDKey[:])
	if err != nil || k != testIDKey {
		t.Fatalf("ParseIDKey(testIDKey) = %v, %v", k == testIDKey, err)
	}
	for name, b := range map[string][]byte{
		"empty":     nil,
		"too short": testIDKey[:IDKeySize-1],
		"too long":  append(testIDKey[:], 0),
		"all zero":  make([]byte, IDKeySize),
	} {
		if k, err := ParseIDKey(b); err == nil || !k.IsZero() {
			t.Errorf("%s: ParseIDKey accepted %d bytes", name, len(b))
		}
	}
}

// TestIDKeyNeverPrints: the key does not leak through the ways a value reaches a log line or an API
// answer by accident.
func TestIDKeyNeverPrints(t *testing.T) {
	secret := hex.EncodeToString(testIDKey[:])
	holder := struct{ Key IDKey }{testIDKey}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		for _, v := range []any{testIDKey, holder, &holder} {
			out := fmt.Sprintf(verb, v)
			if strings.Contains(out, secret) || strings.Contains(out, "0 1 2 3") || strings.Contains(out, "0x0, 0x1, 0x2") {
				t.Errorf("fmt %s of %T shows the key: %s", verb, v, out)
			}
		}
	}
	if out, err := json.Marshal(holder); err == nil {
		t.Errorf("json.Marshal of a struct holding the key succeeded: %s", out)
	}
}

func TestBuildersRefuseTheZeroKey(t *testing.T) {
	if _, _, err := FromRequest(Conversion{Name: "Purchase", OrderID: "1001"}, nil, Request{}, Options{Now: fixedNow}); !errors.Is(err, ErrNoIDKey) {
		t.Errorf("FromRequest without a key: %v, want ErrNoIDKey", err)
	}
	if _, err := FromNotification(clickBankSale(), nil, Options{Now: fixedNow}); !errors.Is(err, ErrNoIDKey) {
		t.Errorf("FromNotification without a key: %v, want ErrNoIDKey", err)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("broken") }

func TestRandomEventID(t *testing.T) {
	fixed := bytes.Repeat([]byte{0xab}, 16)
	if got, want := RandomEventID(bytes.NewReader(fixed)), "abababababababababababababababab"; got != want {
		t.Errorf("RandomEventID(0xab…) = %s, want %s", got, want)
	}
	seen := map[string]bool{}
	for _, r := range []func() string{
		func() string { return RandomEventID(nil) },
		func() string { return RandomEventID(nil) },
		func() string { return RandomEventID(failingReader{}) },
		func() string { return RandomEventID(bytes.NewReader([]byte{1, 2, 3})) }, // short: falls back
	} {
		id := r()
		if len(id) != EventIDLength || !ValidEventID(id) {
			t.Errorf("RandomEventID = %q: wrong shape", id)
		}
		if seen[id] {
			t.Errorf("RandomEventID repeated %s", id)
		}
		seen[id] = true
	}
}

func TestValidEventID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{EventID(testIDKey, "Purchase", "1"), true},
		{"0123456789abcdef0123456789abcdef", true},
		{"order_1001-Purchase", true},
		{"550e8400-e29b-41d4-a716-446655440000", true}, // a UUID from another tool
		{"abcdefgh", true},
		{"abcdefg", false}, // too short to be unique
		{"", false},
		{string(bytes.Repeat([]byte{'a'}, MaxEventIDLength)), true},
		{string(bytes.Repeat([]byte{'a'}, MaxEventIDLength+1)), false},
		{"abc def ghi", false},
		{"abcdefgh'><script>", false},
		{"abcdefgh;Path=/", false},
		{"abcdefgh\r\nSet-Cookie", false},
		{"abcdefgh.ijk", false},
		{"ébcdefghijk", false},
	}
	for _, tt := range tests {
		if got := ValidEventID(tt.id); got != tt.want {
			t.Errorf("ValidEventID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}
