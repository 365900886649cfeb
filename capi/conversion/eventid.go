package conversion

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
)

// eventIDDomain prefixes every hashed event ID. The version lets a future scheme coexist without
// colliding with IDs already issued; changing it (or anything else EventID hashes) breaks
// deduplication across a deploy, because a webhook after the deploy would no longer carry the ID
// the thank-you page carried before it. testdata/event_ids.golden pins the scheme.
const eventIDDomain = "capi-event-v1\x00"

// EventIDLength is the length of the IDs EventID and RandomEventID make: 32 lowercase hex digits,
// 128 bits. That is collision-safe by a wide margin (a collision among 2^40 orders has a
// probability near 2^-49), fits every platform's event ID (Meta and TikTok document no limit;
// Google's 64-character limit is for the order ID, which is sent as it is, not this ID), and is the
// same shape as the IDs the injected script draws with crypto.getRandomValues, so an ID tells
// nothing about its origin. Hex needs no escaping in a cookie, a header, a JS string or a log.
const EventIDLength = 32

// EventID returns the event ID of the event named eventName for the order orderID. The same name
// and order always give the same ID, across processes, nodes and deploys, so every copy of one
// conversion (the thank-you page, a reload of it, the shop's webhook, the network's postback)
// deduplicates on every platform. Different event names for one order give different IDs (a Lead
// and a Purchase for order 1001 are two events).
//
// The order ID is trimmed of surrounding whitespace, which sources add inconsistently, and keeps
// its case: Stripe session IDs and many shops' order numbers are case-sensitive, so folding case
// could merge two orders. The caller passes the order ID as the source writes it everywhere (a
// ClickBank receipt is the same upper-case string on the thank-you page and in INS). The event
// name is used as it is: the platforms deduplicate on the exact name.
//
// An empty order ID gives a random ID: one fixed ID for every order-less event would make the
// platforms keep the first such event and drop all others.
func EventID(eventName, orderID string) string {
	orderID = strings.TrimSpace(orderID)
	if orderID == "" {
		return RandomEventID(nil)
	}
	// NUL separates the parts. Event names hold none (they come from the configuration, and
	// FromRequest refuses control characters), so the split between name and order ID is
	// unambiguous whatever the order ID holds.
	var stack [128]byte // typical inputs hash without a heap allocation
	in := append(stack[:0], eventIDDomain...)
	in = append(in, eventName...)
	in = append(in, 0)
	in = append(in, orderID...)
	sum := sha256.Sum256(in)
	var out [EventIDLength]byte
	hex.Encode(out[:], sum[:EventIDLength/2])
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
