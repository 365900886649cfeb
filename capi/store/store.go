// Package store keeps the visitor record: the click IDs, browser IDs, hashed profiles and cart tokens
// known for one `_capi_vid`, findable by visitor ID, click ID, hashed email and cart token, and
// expiring `visitor_ttl` after its last update. It also keeps the durable idempotency keys
// (MarkSeen) that stop a postback or a conversion from being counted twice.
//
// It owns persistence and its indexes only. It must not normalize or hash: personal data reaches it
// already in the form the platforms receive (see the event and signal packages), and it refuses a
// record whose profile fields that must be hashed are not SHA-256 hex, so plaintext never reaches
// the disk. It must not know any platform's API.
//
// Two implementations sit behind Store: Bolt here, on the bbolt file the queue shares, and a Redis
// one for cluster mode; both pass the same behavioural suite in storetest.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/caddy-capi/caddy-capi/capi/event"
)

// Click ID kinds, the keys of Visitor.Clicks and the kind argument of FindByClickID.
const (
	ClickFBCLID = "fbclid"
	ClickGCLID  = "gclid"
	ClickGBRAID = "gbraid"
	ClickWBRAID = "wbraid"
	ClickTTCLID = "ttclid"
)

// DefaultTTL is how long a visitor record lives after its last update when Options.TTL is zero
// (DESIGN §3, visitor_ttl).
const DefaultTTL = 90 * 24 * time.Hour

// DefaultCacheSize is the number of visitor records kept in memory when Options.CacheSize is zero.
const DefaultCacheSize = 10_000

// ErrInvalid is wrapped by the errors that refuse bad input (an empty ID, a plaintext value where a
// hash belongs); nothing is written when it is returned.
var ErrInvalid = errors.New("invalid input")

// ErrDamaged is wrapped by the error a damaged record gives when read (bytes that are not a record,
// or a record naming another visitor or holding values the store would never write). Such a record
// is as good as absent: Get does not find it, Update replaces it, Erase and Sweep delete it.
var ErrDamaged = errors.New("damaged record")

// Visitor is everything known about one visitor, keyed by the `_capi_vid` cookie value.
// It holds no plaintext personal data: User's profiles are normalized and hashed by platform rules
// before they get here; IP and user agent, which the platforms need unhashed, live only here and
// expire with the record.
type Visitor struct {
	// ID is the visitor ID (`_capi_vid`).
	ID string `json:"id"`
	// User holds the identity signals (IP, user agent, fbp, fbc, ttp, …) and the per-platform
	// profiles, as they go into events.
	User event.User `json:"user"`
	// Clicks maps a click ID kind (ClickFBCLID, …) to the latest click of that kind.
	Clicks map[string]Click `json:"clicks,omitempty"`
	// CartTokens are the shop's cart or checkout tokens seen for this visitor, so a shop webhook can
	// be joined to the visitor.
	CartTokens []string `json:"cart_tokens,omitempty"`
	// LastPageURL is the last HTML page the visitor was served, the event_source_url of conversions
	// that arrive by postback.
	LastPageURL string `json:"last_page_url,omitempty"`
	// Consent is what the consent rules decided on the visitor's latest recorded request (Global
	// Privacy Control's restrictions), applied to the conversions that arrive later by postback.
	Consent event.Consent `json:"consent,omitzero"`
	// Created is when the record was first written; Updated when it was last written. The record
	// expires TTL after Updated.
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

// Click is one ad click ID with when it was first and last seen. A different value of the same kind
// replaces it (DESIGN §4: a later click replaces an earlier one); the same value again moves LastSeen.
type Click struct {
	Value     string    `json:"value"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// Store is what the handler, the postback receivers and the admin API need of visitor storage.
// Implementations are safe for concurrent use; a record past its TTL is invisible to every method.
type Store interface {
	// Get returns the visitor with this ID; false when there is none (or it expired).
	Get(ctx context.Context, id string) (Visitor, bool, error)
	// Update creates or updates the visitor atomically: fn sees the current record (a zero Visitor
	// with ID set when there is none) and edits it in place; its indexes change with it in the same
	// transaction. If fn returns an error nothing is written and the error is returned wrapped.
	// fn may run while a write lock is held: keep it short and free of I/O.
	Update(ctx context.Context, id string, fn func(*Visitor) error) (Visitor, error)
	// FindByClickID returns the visitor whose latest click of this kind has this value.
	FindByClickID(ctx context.Context, kind, value string) (Visitor, bool, error)
	// FindByEmailHash returns the visitor whose Meta profile holds this email hash (the lowercase
	// hex SHA-256 of the trimmed, lowercased address, which is also TikTok's; Google's differs for
	// gmail addresses and is not indexed).
	FindByEmailHash(ctx context.Context, sha256hex string) (Visitor, bool, error)
	// FindByCartToken returns the visitor that carried this cart or checkout token.
	FindByCartToken(ctx context.Context, token string) (Visitor, bool, error)
	// Erase removes the visitor and every index entry that points to it (privacy requests).
	// Erasing an unknown ID is not an error.
	Erase(ctx context.Context, id string) error
	// MarkSeen records an idempotency key for ttl and reports whether this is its first sighting
	// within that time. It is durable: a restart does not forget it.
	MarkSeen(ctx context.Context, key string, ttl time.Duration) (first bool, err error)
	// Seen reports whether an idempotency key is marked and its mark has not expired, without
	// marking it: for callers that must do durable work before claiming the key.
	Seen(ctx context.Context, key string) (bool, error)
}

// Batcher is implemented by a Store that can write many visitor records in one durable write
// (Bolt's UpdateMany: one transaction, one fsync). It is optional: a writer with a burst of records
// type-asserts it and falls back to one Update each.
type Batcher interface {
	// UpdateMany applies each change as Update would, and returns one error per change, nil when
	// it was written. A change that fails does not stop the others.
	UpdateMany(ctx context.Context, changes []Change) []error
}

// Options configure a Store implementation.
type Options struct {
	// TTL is how long a record lives after its last update. Default DefaultTTL (90 days).
	TTL time.Duration
	// Now tells the time; default time.Now. Tests inject a clock.
	Now func() time.Time
	// CacheSize is the number of records kept decoded in memory in front of the storage.
	// Default DefaultCacheSize; negative disables the cache.
	CacheSize int
}

func (o Options) withDefaults() Options {
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	return o
}

// expired reports whether a record last updated at updated is past its TTL at now.
func expired(updated, now time.Time, ttl time.Duration) bool {
	return !now.Before(updated.Add(ttl))
}

// IsClickKind reports whether kind is one of the click ID kinds a Visitor keeps.
func IsClickKind(kind string) bool {
	switch kind {
	case ClickFBCLID, ClickGCLID, ClickGBRAID, ClickWBRAID, ClickTTCLID:
		return true
	}
	return false
}

// CheckVisitor refuses a record that must not be stored: a click under an unknown kind, or a
// profile value in plaintext (see CheckHashed). Implementations call it before writing.
//
// Indexed values must be valid UTF-8: records are JSON, which would silently replace invalid bytes,
// and the record would then no longer name the index entries it owns.
func CheckVisitor(v *Visitor) error {
	if !utf8.ValidString(v.ID) {
		return fmt.Errorf("store: visitor ID is not valid UTF-8: %w", ErrInvalid)
	}
	for kind, c := range v.Clicks {
		if !IsClickKind(kind) {
			return fmt.Errorf("store: visitor %s has a click of unknown kind %q: %w", redactID(v.ID), kind, ErrInvalid)
		}
		if !utf8.ValidString(c.Value) {
			return fmt.Errorf("store: visitor %s %s is not valid UTF-8: %w", redactID(v.ID), kind, ErrInvalid)
		}
	}
	for _, t := range v.CartTokens {
		if !utf8.ValidString(t) {
			return fmt.Errorf("store: visitor %s cart token is not valid UTF-8: %w", redactID(v.ID), ErrInvalid)
		}
	}
	return CheckHashed(v)
}

// CheckHashed refuses a visitor whose profiles carry a value in plaintext where every platform
// receives it hashed: emails, phones, names, street, date of birth and gender on every profile, and
// every Meta field (Meta hashes all of them). City, region, postal code and country stay plain on the
// Google and TikTok profiles because those platforms take them plain.
func CheckHashed(v *Visitor) error {
	check := func(platform, field string, values ...string) error {
		for _, s := range values {
			if s != "" && !isSHA256Hex(s) {
				return fmt.Errorf("store: visitor %s profile %s.%s is not a lowercase SHA-256 hex (plaintext is never stored): %w",
					redactID(v.ID), platform, field, ErrInvalid)
			}
		}
		return nil
	}
	profiles := []struct {
		name string
		p    event.Profile
	}{{"meta", v.User.Meta}, {"tiktok", v.User.TikTok}, {"google", v.User.Google}}
	for _, pr := range profiles {
		p := pr.p
		for _, err := range []error{
			check(pr.name, "emails", p.Emails...),
			check(pr.name, "phones", p.Phones...),
			check(pr.name, "first_name", p.FirstName),
			check(pr.name, "last_name", p.LastName),
			check(pr.name, "street", p.Street),
			check(pr.name, "date_of_birth", p.DateOfBirth),
			check(pr.name, "gender", p.Gender),
		} {
			if err != nil {
				return err
			}
		}
	}
	m := v.User.Meta
	for _, err := range []error{
		check("meta", "city", m.City),
		check("meta", "state", m.State),
		check("meta", "zip", m.Zip),
		check("meta", "country", m.Country),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// redactID shortens a visitor ID for error messages: enough to correlate, not enough to replay the
// cookie.
func redactID(id string) string {
	if len(id) <= 6 {
		return "…"
	}
	for i := 0; i < 6; i++ {
		if c := id[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return "…" // not a visitor ID we issued; echo none of it
		}
	}
	return id[:6] + "…"
}

// clone returns a deep copy, so that callers can never mutate a cached record.
func clone(v Visitor) Visitor {
	c := v
	c.User.Meta = cloneProfile(v.User.Meta)
	c.User.TikTok = cloneProfile(v.User.TikTok)
	c.User.Google = cloneProfile(v.User.Google)
	if v.Clicks != nil {
		c.Clicks = make(map[string]Click, len(v.Clicks))
		for k, cl := range v.Clicks {
			c.Clicks[k] = cl
		}
	}
	c.CartTokens = cloneStrings(v.CartTokens)
	return c
}

func cloneProfile(p event.Profile) event.Profile {
	p.Emails = cloneStrings(p.Emails)
	p.Phones = cloneStrings(p.Phones)
	return p
}

func cloneStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string(nil), s...)
}
