package conversion

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestEventIDMatchesGolden pins the scheme: the IDs in testdata were computed by a separate
// implementation (Python's hashlib), and a change of any of them would make an order's webhook after
// a deploy miss the thank-you page's ID from before it.
func TestEventIDMatchesGolden(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "event_ids.golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var golden struct {
		IDs []struct {
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
	for _, g := range golden.IDs {
		if got := EventID(g.Name, g.OrderID); got != g.EventID {
			t.Errorf("EventID(%q, %q) = %s, golden %s", g.Name, g.OrderID, got, g.EventID)
		}
	}
}

func TestEventIDIsDeterministicPerNameAndOrder(t *testing.T) {
	purchase := EventID("Purchase", "1001")
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
			got := EventID(tt.event, tt.ord)
			if (got == purchase) != tt.same {
				t.Errorf("EventID(%q, %q) = %s; equal to Purchase/1001's %s: %v, want %v", tt.event, tt.ord, got, purchase, got == purchase, tt.same)
			}
			if len(got) != EventIDLength || !ValidEventID(got) {
				t.Errorf("EventID(%q, %q) = %q: not a valid %d-character ID", tt.event, tt.ord, got, EventIDLength)
			}
		})
	}
	if EventID("Purchase", "ABC") == EventID("Purchase", "abc") {
		t.Error("order IDs differing in case share an event ID")
	}
}

func TestEventIDWithoutOrderIsRandom(t *testing.T) {
	a, b := EventID("Purchase", ""), EventID("Purchase", "  ")
	if a == b {
		t.Fatalf("two order-less events share the ID %s: the platforms would drop the second", a)
	}
	for _, id := range []string{a, b} {
		if len(id) != EventIDLength || !ValidEventID(id) {
			t.Errorf("random ID %q has the wrong shape", id)
		}
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
		{EventID("Purchase", "1"), true},
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
