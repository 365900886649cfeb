package signal

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/event"
)

// Customer is customer data as received from a form, a webhook or a postback, in plaintext (or
// already hashed by the sender). It is never stored or logged: Normalize turns it into Profiles.
type Customer struct {
	// Emails and Phones hold every address and number known, most relevant first.
	Emails, Phones []string

	FirstName, LastName string
	// DateOfBirth is in any common format (see NormalizeDateOfBirth).
	DateOfBirth string
	// Gender is a word such as "female", "m", "Mrs" (see NormalizeGender).
	Gender                   string
	Street, City, State, Zip string
	// Country is an ISO 3166 code or a country name.
	Country string
}

// Options configure Normalize.
type Options struct {
	// DefaultCountry is the ISO 3166 alpha-2 code (or a country name) used for phone numbers
	// written without a country code and for addresses without a country, when the customer's
	// country is unknown.
	DefaultCountry string
	// Now gives the current time for checking dates of birth; time.Now when nil.
	Now func() time.Time
	// Phones, when set, remembers recent phone numbers' hashes (see PhoneCache).
	Phones *PhoneCache
}

// Drop records a customer value that could not be made valid for a platform. It names the field
// (Profile's JSON name: "email", "phone", "first_name", …) and the reason, never the value.
type Drop struct {
	Field, Reason string
}

// Profiles holds one customer's data normalized for each platform, each in the form that platform
// receives (see the package doc for which values are hashed).
type Profiles struct {
	Meta, TikTok, Google event.Profile
}

// maxValues is how many emails and phones a profile keeps: Google accepts 5 user identifiers per
// conversion, and more adds nothing to a match on any platform.
const maxValues = 5

// Normalize normalizes and hashes a customer's data for Meta, TikTok and Google. Values that
// cannot be made valid are left out of the profiles and reported in the drops; nothing is guessed.
func Normalize(c Customer, opt Options) (Profiles, []Drop) {
	n := normalizer{opt: opt}
	if opt.Now != nil {
		n.now = opt.Now()
	} else {
		n.now = time.Now()
	}
	n.hashes.Grow(sha256.Size * 2 * hashesNeeded(&c, opt.Phones == nil))
	n.country(c.Country)
	n.emails(c.Emails)
	n.phones(c.Phones)
	n.name("first_name", c.FirstName, &n.p.Meta.FirstName, &n.p.TikTok.FirstName, &n.p.Google.FirstName)
	n.name("last_name", c.LastName, &n.p.Meta.LastName, &n.p.TikTok.LastName, &n.p.Google.LastName)
	now := n.now
	n.metaOnly("date_of_birth", c.DateOfBirth, &n.p.Meta.DateOfBirth, func(s string) (string, error) {
		return NormalizeDateOfBirth(s, now)
	})
	n.metaOnly("gender", c.Gender, &n.p.Meta.Gender, NormalizeGender)
	n.street(c.Street)
	n.city(c.City)
	n.state(c.State)
	n.zip(c.Zip)
	n.defaultCountry()
	return n.p, n.drops
}

type normalizer struct {
	opt   Options
	now   time.Time
	cc    string // the customer's country, lower-case alpha-2, "" when unknown
	geo   string // cc, else the default country: the country phones and regions are read in
	p     Profiles
	drops []Drop
	// hashes holds the hex digests of one customer back to back: each hash is a slice of it, so
	// a customer's dozen hashes cost one allocation instead of one each. A strings.Builder only
	// appends, so a string taken from it never changes.
	hashes strings.Builder
}

// hashesNeeded bounds how many hashes Normalize computes for c (beyond the precomputed ones of
// country and state codes and genders), to size normalizer.hashes once.
func hashesNeeded(c *Customer, hashPhones bool) int {
	k := 2 * min(len(c.Emails), maxValues)
	if hashPhones {
		k += 2 * min(len(c.Phones), maxValues)
	}
	for _, v := range [...]string{c.FirstName, c.LastName} {
		if v != "" {
			k += 2
		}
	}
	for _, v := range [...]string{c.DateOfBirth, c.Street, c.City, c.State, c.Zip, c.Country} {
		if v != "" {
			k++
		}
	}
	return k
}

// hash is Hash, into n.hashes.
func (n *normalizer) hash(normalized string) string {
	sum := sha256.Sum256([]byte(normalized))
	var out [sha256.Size * 2]byte
	hex.Encode(out[:], sum[:])
	start := n.hashes.Len()
	n.hashes.Write(out[:])
	return n.hashes.String()[start:]
}

// hashCode returns the precomputed hash of a country or state code or gender, else n.hash(v).
func (n *normalizer) hashCode(v string) string {
	if h, ok := codeHashes()[v]; ok {
		return h
	}
	return n.hash(v)
}

// lists gives each platform's list of a field (emails or phones) room for k values in one
// allocation. Each list is capped at its own part, so appending past k reallocates it rather than
// overwriting the next list.
func lists(k int, meta, tiktok, google *[]string) {
	if k == 0 {
		return
	}
	backing := make([]string, 3*k)
	*meta, *tiktok, *google = backing[0:0:k], backing[k:k:2*k], backing[2*k:2*k:3*k]
}

// nilIfEmpty keeps a list that got no value nil, as it was before lists made room for it.
func nilIfEmpty(lists ...*[]string) {
	for _, l := range lists {
		if len(*l) == 0 {
			*l = nil
		}
	}
}

// prepared runs prepare and then a normalizer written for prepared values.
func prepared(raw string, f func(string) (string, error)) (string, error) {
	prep, err := prepare(raw)
	if err != nil || prep == "" {
		return "", err
	}
	return f(prep)
}

// drop records one value left out, so callers can count every one.
func (n *normalizer) drop(field string, err error) {
	n.drops = append(n.drops, Drop{Field: field, Reason: err.Error()})
}

func (n *normalizer) country(raw string) {
	switch {
	case IsHashed(raw):
		n.p.Meta.Country = normalizeHashed(raw)
		n.drop("country", ErrHashedNotPlain)
	case raw != "":
		cc, err := NormalizeCountry(raw)
		if err != nil {
			n.drop("country", err)
		}
		n.cc = cc
	}
	n.geo = n.cc
	if n.geo == "" {
		n.geo, _ = NormalizeCountry(n.opt.DefaultCountry)
	}
	n.setCountry(n.cc)
}

func (n *normalizer) setCountry(cc string) {
	if cc != "" {
		n.p.Meta.Country = n.hashCode(cc)
		n.p.TikTok.Country = cc
		n.p.Google.Country = GoogleCountry(cc)
	}
}

// defaultCountry gives an address that came without a country the default one (DESIGN:
// default_country is for "addresses that lack one"). A customer with no valid address part gets
// none: the default is a guess about where the customer lives, made only to complete an address.
func (n *normalizer) defaultCountry() {
	if n.p.Meta.Country != "" || n.cc != "" {
		return
	}
	m, g := n.p.Meta, n.p.Google
	if m.City != "" || m.State != "" || m.Zip != "" || g.Street != "" || g.City != "" || g.Zip != "" {
		n.setCountry(n.geo)
	}
}

func (n *normalizer) emails(emails []string) {
	k := 0
	for _, raw := range emails {
		if raw != "" {
			k++
		}
	}
	lists(min(k, maxValues), &n.p.Meta.Emails, &n.p.TikTok.Emails, &n.p.Google.Emails)
	defer nilIfEmpty(&n.p.Meta.Emails, &n.p.TikTok.Emails, &n.p.Google.Emails)
	for _, raw := range emails {
		if raw == "" {
			continue
		}
		if len(n.p.Meta.Emails) == maxValues {
			n.drop("email", ErrTooManyValues)
			return
		}
		if IsHashed(raw) {
			h := normalizeHashed(raw)
			n.p.Meta.Emails = appendUnique(n.p.Meta.Emails, h)
			n.p.TikTok.Emails = appendUnique(n.p.TikTok.Emails, h)
			n.p.Google.Emails = appendUnique(n.p.Google.Emails, h)
			continue
		}
		e, err := prepared(raw, normalizeEmailPrepared)
		if err != nil {
			n.drop("email", err)
			continue
		}
		if e == "" {
			continue
		}
		h := n.hash(e)
		n.p.Meta.Emails = appendUnique(n.p.Meta.Emails, h)
		n.p.TikTok.Emails = appendUnique(n.p.TikTok.Emails, h)
		g, err := NormalizeGoogleEmail(e)
		if err != nil {
			// A Gmail address with nothing before its "+": Meta and TikTok take it as written,
			// Google's rule leaves no address.
			n.drop("email", err)
			continue
		}
		if g != e {
			h = n.hash(g)
		}
		n.p.Google.Emails = appendUnique(n.p.Google.Emails, h)
	}
}

func (n *normalizer) phones(phones []string) {
	k := 0
	for _, raw := range phones {
		if trimSpace(raw) != "" {
			k++
		}
	}
	lists(min(k, maxValues), &n.p.Meta.Phones, &n.p.TikTok.Phones, &n.p.Google.Phones)
	defer nilIfEmpty(&n.p.Meta.Phones, &n.p.TikTok.Phones, &n.p.Google.Phones)
	for _, raw := range phones {
		if trimSpace(raw) == "" {
			continue
		}
		if len(n.p.Meta.Phones) == maxValues {
			n.drop("phone", ErrTooManyValues)
			return
		}
		if IsHashed(raw) {
			// Whether it was hashed with or without the "+" cannot be known: send it as it came.
			h := normalizeHashed(raw)
			n.p.Meta.Phones = appendUnique(n.p.Meta.Phones, h)
			n.p.TikTok.Phones = appendUnique(n.p.TikTok.Phones, h)
			n.p.Google.Phones = appendUnique(n.p.Google.Phones, h)
			continue
		}
		var h phoneHashes
		if n.opt.Phones != nil {
			h = n.opt.Phones.hashes(raw, n.geo)
		} else {
			h = n.phoneHashes(raw)
		}
		if h.err != nil {
			n.drop("phone", h.err)
			continue
		}
		n.p.Meta.Phones = appendUnique(n.p.Meta.Phones, h.meta)
		n.p.TikTok.Phones = appendUnique(n.p.TikTok.Phones, h.e164)
		n.p.Google.Phones = appendUnique(n.p.Google.Phones, h.e164)
	}
}

// name handles a first or last name, which every platform receives hashed (Google with its own
// normalization).
func (n *normalizer) name(field, raw string, meta, tiktok, google *string) {
	if raw == "" {
		return
	}
	if IsHashed(raw) {
		h := normalizeHashed(raw)
		*meta, *tiktok, *google = h, h, h
		return
	}
	prep, err := prepare(raw)
	if err == nil && prep == "" {
		return
	}
	var v string
	if err == nil {
		v, err = normalizeNamePrepared(prep)
	}
	if err != nil {
		n.drop(field, err)
		return
	}
	h := n.hash(v)
	*meta, *tiktok = h, h
	if g, err := normalizeGoogleNamePrepared(prep); err == nil {
		if g != v {
			h = n.hash(g)
		}
		*google = h
	}
}

// metaOnly handles a field only Meta receives (date of birth, gender), always hashed.
func (n *normalizer) metaOnly(field, raw string, dst *string, normalize func(string) (string, error)) {
	if raw == "" {
		return
	}
	if IsHashed(raw) {
		*dst = normalizeHashed(raw)
		return
	}
	v, err := normalize(raw)
	if err != nil {
		n.drop(field, err)
		return
	}
	if v != "" {
		*dst = n.hashCode(v)
	}
}

func (n *normalizer) street(raw string) {
	if raw == "" {
		return
	}
	if IsHashed(raw) {
		n.p.Google.Street = normalizeHashed(raw)
		return
	}
	v, err := NormalizeStreet(raw)
	if err != nil {
		n.drop("street", err)
		return
	}
	if v != "" {
		n.p.Google.Street = n.hash(v)
	}
}

func (n *normalizer) city(raw string) {
	if raw == "" {
		return
	}
	if IsHashed(raw) {
		n.p.Meta.City = normalizeHashed(raw)
		n.drop("city", ErrHashedNotPlain)
		return
	}
	prep, err := prepare(raw)
	if err == nil && prep == "" {
		return
	}
	var v string
	if err == nil {
		v, err = normalizeCityPrepared(prep)
	}
	if err != nil {
		n.drop("city", err)
		return
	}
	n.p.Meta.City = n.hash(v)
	n.p.TikTok.City = v
	n.p.Google.City, _ = normalizeGoogleCityPrepared(prep)
}

func (n *normalizer) state(raw string) {
	if raw == "" {
		return
	}
	if IsHashed(raw) {
		n.p.Meta.State = normalizeHashed(raw)
		n.drop("state", ErrHashedNotPlain)
		return
	}
	prep, err := prepare(raw)
	if err == nil && prep == "" {
		return
	}
	var v string
	if err == nil {
		v, err = normalizeStatePrepared(prep, n.geo)
	}
	if err != nil {
		n.drop("state", err)
		return
	}
	n.p.Meta.State = n.hashCode(v)
	n.p.TikTok.State = v
	n.p.Google.State, _ = normalizeGoogleRegionPrepared(prep, n.geo)
}

func (n *normalizer) zip(raw string) {
	if raw == "" {
		return
	}
	if IsHashed(raw) {
		h := normalizeHashed(raw)
		n.p.Meta.Zip, n.p.TikTok.Zip = h, h
		n.drop("zip", ErrHashedNotPlain)
		return
	}
	// zipCore once for both forms, rather than NormalizeZip and NormalizeGoogleZip.
	trimmed, z, err := zipCore(raw, n.geo)
	if err != nil {
		n.drop("zip", err)
		return
	}
	if trimmed == "" {
		return
	}
	h := n.hash(metaZip(z))
	n.p.Meta.Zip, n.p.TikTok.Zip = h, h
	n.p.Google.Zip = googleZip(z)
}

func appendUnique(list []string, v string) []string {
	for _, x := range list {
		if x == v {
			return list
		}
	}
	return append(list, v)
}

// Merge returns the profiles with newer's values laid over p's: a single value in newer replaces
// p's, an empty one keeps p's; emails and phones are the union, newer's first, without duplicates,
// at most 5 of each. It is how a visitor's stored profile absorbs a new form post or webhook.
func (p Profiles) Merge(newer Profiles) Profiles {
	return Profiles{
		Meta:   mergeProfile(p.Meta, newer.Meta),
		TikTok: mergeProfile(p.TikTok, newer.TikTok),
		Google: mergeProfile(p.Google, newer.Google),
	}
}

func mergeProfile(old, newer event.Profile) event.Profile {
	pick := func(o, n string) string {
		if n != "" {
			return n
		}
		return o
	}
	return event.Profile{
		Emails:      mergeList(newer.Emails, old.Emails),
		Phones:      mergeList(newer.Phones, old.Phones),
		FirstName:   pick(old.FirstName, newer.FirstName),
		LastName:    pick(old.LastName, newer.LastName),
		DateOfBirth: pick(old.DateOfBirth, newer.DateOfBirth),
		Gender:      pick(old.Gender, newer.Gender),
		Street:      pick(old.Street, newer.Street),
		City:        pick(old.City, newer.City),
		State:       pick(old.State, newer.State),
		Zip:         pick(old.Zip, newer.Zip),
		Country:     pick(old.Country, newer.Country),
	}
}

// mergeList returns first then second without duplicates or empty values, at most maxValues long,
// in a new slice (neither input is modified).
func mergeList(first, second []string) []string {
	var out []string
	for _, list := range [2][]string{first, second} {
		for _, v := range list {
			if len(out) == maxValues {
				return out
			}
			if v != "" {
				out = appendUnique(out, v)
			}
		}
	}
	return out
}
