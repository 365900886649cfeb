package signal

import (
	"crypto/sha256"
	"errors"
	"strings"
	"sync"

	"github.com/nyaruka/phonenumbers"
)

// NormalizePhone returns the number in E.164 ("+16505551212"), the form TikTok and Google hash;
// Meta hashes the same digits without the "+" (MetaPhone). country is the ISO 3166 alpha-2 code of
// the customer's country (any case, "" when unknown); a number written without its country code
// gets that country's calling code, by libphonenumber's rules for that country (national prefixes
// such as a leading 0 removed, letters of vanity numbers mapped to digits, extensions cut).
//
// A number is never guessed: one that libphonenumber does not consider valid is ErrInvalidPhone,
// and one without a country code when country is unknown is ErrNoPhoneCountry. An empty input
// gives "" and no error.
//
// Numbers typed the usual way (digits, an optional leading "+", spaces, dashes, dots, slashes,
// parentheses) are read by a fast path over libphonenumber's metadata (phonefast.go) that gives
// the same answers as its parser in a fraction of the time; everything else goes to
// phonenumbers.Parse.
func NormalizePhone(s, country string) (string, error) {
	if len(s) > maxInputLen {
		return "", ErrTooLong
	}
	s = trimSpace(s)
	if s == "" {
		return "", nil
	}
	region := phoneRegion(country)
	e164, err := normalizePhoneFast(s, region)
	if err == errNeedsFullParse {
		return normalizePhoneFull(s, region)
	}
	return e164, err
}

// phoneRegion returns the upper-case region code libphonenumber reads a number in: the
// customer's country, "ZZ" when it is unknown to libphonenumber.
func phoneRegion(country string) string {
	if len(country) != 2 {
		return "ZZ"
	}
	if region, ok := phoneRegions()[country]; ok {
		return region
	}
	region := strings.ToUpper(country)
	if phonenumbers.GetCountryCodeForRegion(region) == 0 {
		return "ZZ"
	}
	return region
}

// phoneRegions maps libphonenumber's region codes, upper- and lower-case, to themselves, so
// phoneRegion does not allocate an upper-case copy of the usual lower-case country.
var phoneRegions = sync.OnceValue(func() map[string]string {
	m := make(map[string]string, 2*len(phonenumbers.GetSupportedRegions()))
	for region := range phonenumbers.GetSupportedRegions() {
		if phonenumbers.GetCountryCodeForRegion(region) != 0 {
			m[region], m[strings.ToLower(region)] = region, region
		}
	}
	return m
})

// normalizePhoneFull is NormalizePhone by phonenumbers' parser and validation alone, for input
// the fast path (phonefast.go) leaves to it; tests hold the fast path to its answers.
func normalizePhoneFull(s, region string) (string, error) {
	num, err := phonenumbers.Parse(s, region)
	if err != nil {
		if errors.Is(err, phonenumbers.ErrInvalidCountryCode) && region == "ZZ" {
			return "", ErrNoPhoneCountry
		}
		return "", ErrInvalidPhone
	}
	if !validPhone(num, region) {
		return "", ErrInvalidPhone
	}
	e164 := phonenumbers.Format(num, phonenumbers.E164)
	if !isE164(e164) {
		return "", ErrInvalidPhone
	}
	return e164, nil
}

// validPhone is phonenumbers.IsValidNumber, first trying the customer's own region: a number valid
// for that region is valid, and the check skips IsValidNumber's search through every region sharing
// the calling code (25 for +1), which costs more than the check itself.
func validPhone(num *phonenumbers.PhoneNumber, region string) bool {
	if region != "ZZ" && int(num.GetCountryCode()) == phonenumbers.GetCountryCodeForRegion(region) &&
		phonenumbers.IsValidNumberForRegion(num, region) {
		return true
	}
	return phonenumbers.IsValidNumber(num)
}

// MetaPhone turns an E.164 number into Meta's ph form: the digits with the country code and no
// "+" ("+16505551212" → "16505551212").
func MetaPhone(e164 string) string {
	return strings.TrimPrefix(e164, "+")
}

func isE164(s string) bool {
	if len(s) < 3 || len(s) > 16 || s[0] != '+' || s[1] == '0' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// PhoneCache remembers the outcome of normalizing and hashing recent phone numbers. A number in a
// common shape costs about a microsecond to parse, validate and hash, but one that needs
// libphonenumber's full parser (letters, extensions, an international prefix such as "00") costs
// tens of microseconds, and the same customer's number comes back with every form post, webhook
// and postback of an order. The cache holds no plaintext: it is keyed by a
// SHA-256 of country and input and keeps only the hashes each platform receives.
//
// A PhoneCache is safe for concurrent use. Pass one in Options.Phones; its owner decides its
// lifetime.
type PhoneCache struct {
	mu      sync.Mutex
	entries map[[sha256.Size]byte]phoneHashes
	max     int
}

type phoneHashes struct {
	meta, e164 string // Hash(MetaPhone(e164)), Hash(e164)
	err        error
}

// NewPhoneCache returns a cache of at most size entries (1024 when size < 1). When full, a random
// entry makes room for the new one.
func NewPhoneCache(size int) *PhoneCache {
	if size < 1 {
		size = 1024
	}
	return &PhoneCache{entries: make(map[[sha256.Size]byte]phoneHashes, size), max: size}
}

// hashes normalizes and hashes a phone for all platforms, through the cache when there is one.
func (c *PhoneCache) hashes(raw, country string) phoneHashes {
	if c == nil || len(raw) > maxInputLen {
		// Too long to be a phone: refused before its key is hashed.
		return computePhoneHashes(raw, country)
	}
	var buf [2 + 1 + maxInputLen]byte
	key := sha256.Sum256(append(append(append(buf[:0], country...), 0), raw...))
	c.mu.Lock()
	h, ok := c.entries[key]
	c.mu.Unlock()
	if ok {
		return h
	}
	h = computePhoneHashes(raw, country)
	c.mu.Lock()
	if len(c.entries) >= c.max {
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[key] = h
	c.mu.Unlock()
	return h
}

// phoneHashes normalizes and hashes a phone for all platforms without a cache, into n.hashes.
func (n *normalizer) phoneHashes(raw string) phoneHashes {
	e164, err := NormalizePhone(raw, n.geo)
	if err != nil || e164 == "" {
		return phoneHashes{err: err}
	}
	return phoneHashes{meta: n.hash(MetaPhone(e164)), e164: n.hash(e164)}
}

// computePhoneHashes is phoneHashes for the cache, whose entries must not hold on to a customer's
// other hashes.
func computePhoneHashes(raw, country string) phoneHashes {
	e164, err := NormalizePhone(raw, country)
	if err != nil || e164 == "" {
		return phoneHashes{err: err}
	}
	return phoneHashes{meta: Hash(MetaPhone(e164)), e164: Hash(e164)}
}
