package conversion

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
)

// eventIDDomain prefixes every message EventID authenticates. The version lets a future scheme
// coexist without colliding with IDs already issued; changing it (or anything else EventID
// hashes) breaks deduplication across a deploy, because a webhook after the deploy would no longer
// carry the ID the thank-you page carried before it. testdata/event_ids.golden.json pins the
// scheme. v1 was an unkeyed SHA-256 of the same message, which anyone could compute (see IDKey).
const eventIDDomain = "capi-event-v2\x00"

// EventIDLength is the length of the IDs EventID and RandomEventID make: 32 lowercase hex digits,
// 128 bits. That is collision-safe by a wide margin (a collision among 2^40 orders has a
// probability near 2^-49), fits every platform's event ID (Meta and TikTok document no limit;
// Google's 64-character limit is for the order ID, which is sent as it is, not this ID), and is the
// same shape as the IDs the injected script draws with crypto.getRandomValues, so an ID tells
// nothing about its origin. Hex needs no escaping in a cookie, a header, a JS string or a log.
const EventIDLength = 32

// IDKeySize is the length of an IDKey: 256 bits, HMAC-SHA256's full strength.
const IDKeySize = 32

// IDKey is the secret of one installation under which EventID derives event IDs.
//
// Why keyed: the platforms, and our own 48-hour queue dedup, keep the first event with a given
// (name, ID) and drop later ones. Browsers may post events with an ID of their choosing (the
// collect endpoint must accept the ID the pixel fired with). If the ID of an order's Purchase were
// a public function of the order number, anyone who can guess the next order number (Shopify's are
// sequential) could post that Purchase first and make every platform drop the real one: a lost
// sale. Under a key the attacker does not have, the real ID cannot be computed, so no posted event
// can pre-empt it.
//
// Every source of one installation (the thank-you page, the shop's webhook, the network's
// postback) must derive with the same key, so it lives with the installation's storage and
// outlives restarts; changing it breaks deduplication of the orders in flight, like a change of
// scheme. The zero key is no key: EventID never derives under it.
//
// An IDKey never prints or serializes its bytes (String, GoString and MarshalJSON redact or
// refuse), so that a log line or an API answer cannot leak it by accident; the storage writes
// key[:] itself.
type IDKey [IDKeySize]byte

// NewIDKey draws a new key from r (nil for crypto/rand). Unlike RandomEventID it does not fall
// back: a key is drawn once per installation, and a broken source must be reported, not papered
// over.
func NewIDKey(r io.Reader) (IDKey, error) {
	var k IDKey
	if r == nil {
		r = rand.Reader
	}
	if _, err := io.ReadFull(r, k[:]); err != nil {
		return IDKey{}, fmt.Errorf("conversion: drawing an event ID key: %w", err)
	}
	if k.IsZero() {
		return IDKey{}, errors.New("conversion: drawing an event ID key: the source gave only zero bytes")
	}
	return k, nil
}

// ParseIDKey returns the key stored as b, refusing anything but IDKeySize bytes that are not all
// zero. The error never holds the bytes.
func ParseIDKey(b []byte) (IDKey, error) {
	var k IDKey
	if len(b) != IDKeySize {
		return IDKey{}, fmt.Errorf("conversion: event ID key is %d bytes, want %d", len(b), IDKeySize)
	}
	copy(k[:], b)
	if k.IsZero() {
		return IDKey{}, errors.New("conversion: event ID key is all zero bytes")
	}
	return k, nil
}

// IsZero reports whether k is the zero key, which is no key.
func (k IDKey) IsZero() bool { return k == IDKey{} }

// String redacts the key, so that %v and loggers that print Stringers never show it.
func (k IDKey) String() string { return "conversion.IDKey(redacted)" }

// GoString redacts the key for %#v.
func (k IDKey) GoString() string { return k.String() }

// Format redacts the key under every fmt verb, %d, %o, %x and %q included, which would otherwise
// print an array's bytes.
func (k IDKey) Format(f fmt.State, verb rune) { io.WriteString(f, k.String()) }

// MarshalJSON refuses to encode the key, so that it can never reach an API answer or a JSON log
// field by way of a struct that holds it.
func (k IDKey) MarshalJSON() ([]byte, error) {
	return nil, errors.New("conversion: an event ID key is never encoded")
}

// EventID returns the event ID of the event named eventName for the order orderID under the
// installation's key: the first 128 bits, in hex, of HMAC-SHA256(key, domain, name, NUL, order).
// The same key, name and order always give the same ID, across processes, nodes, restarts and
// deploys, so every copy of one conversion (the thank-you page, a reload of it, the shop's webhook,
// the network's postback) deduplicates on every platform. Different event names for one order give
// different IDs (a Lead and a Purchase for order 1001 are two events). Without the key the ID
// cannot be computed from the name and order, which is what keeps a browser from pre-empting it
// (see IDKey).
//
// The order ID is trimmed of surrounding whitespace, which sources add inconsistently, and keeps
// its case: Stripe session IDs and many shops' order numbers are case-sensitive, so folding case
// could merge two orders. The caller passes the order ID as the source writes it everywhere (a
// ClickBank receipt is the same upper-case string on the thank-you page and in INS). The event
// name is used as it is: the platforms deduplicate on the exact name.
//
// An empty order ID gives a random ID: one fixed ID for every order-less event would make the
// platforms keep the first such event and drop all others. The zero key also gives a random ID,
// never one derived under a key everyone knows: a caller that forgot the key loses cross-source
// deduplication (an order may count twice) rather than open the hole the key closes.
// FromRequest and FromNotification refuse the zero key outright (ErrNoIDKey).
func EventID(key IDKey, eventName, orderID string) string {
	orderID = strings.TrimSpace(orderID)
	if orderID == "" || key.IsZero() {
		return RandomEventID(nil)
	}
	mac := hmac.New(sha256.New, key[:])
	// NUL separates the parts. Event names hold none (they come from the configuration, and
	// FromRequest refuses control characters), so the split between name and order ID is
	// unambiguous whatever the order ID holds.
	var stack [128]byte // the message in one buffer, one Write
	in := append(stack[:0], eventIDDomain...)
	in = append(in, eventName...)
	in = append(in, 0)
	in = append(in, orderID...)
	mac.Write(in)
	var sum [sha256.Size]byte
	var out [EventIDLength]byte
	hex.Encode(out[:], mac.Sum(sum[:0])[:EventIDLength/2])
	return string(out[:])
}

// RandomEventID returns a random event ID of the same shape as EventID's, for events without an
// order ID. r is the randomness (nil for crypto/rand); if r fails, crypto/rand is used instead,
// because an event must never go out with a predictable or empty ID.
func RandomEventID(r io.Reader) string {
	var b [EventIDLength / 2]byte
	filled := false
	if r != nil {
		_, err := io.ReadFull(r, b[:])
		filled = err == nil
	}
	if !filled {
		rand.Read(b[:]) // never fails: crypto/rand crashes the program rather than return an error
	}
	var out [EventIDLength]byte
	hex.Encode(out[:], b[:])
	return string(out[:])
}

// Bounds of an event ID accepted from a browser.
const (
	// MinEventIDLength refuses IDs too short to be unique ("1", "test"): the platforms would
	// deduplicate unrelated events that share one.
	MinEventIDLength = 8
	// MaxEventIDLength is generous for IDs from other tools (a UUID is 36) and keeps the ID short
	// enough for a cookie, a log line and a label of the dead letters.
	MaxEventIDLength = 64
)

// ValidEventID reports whether s is acceptable as an event ID posted by a browser (the collect
// endpoint) or carried by a cookie: MinEventIDLength to MaxEventIDLength characters from
// A-Z a-z 0-9 - _. Those need no escaping anywhere the ID goes (a cookie, a header, a JS string, an
// HTML attribute, a log line). The IDs this package and the injected script make always pass.
func ValidEventID(s string) bool {
	if len(s) < MinEventIDLength || len(s) > MaxEventIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
