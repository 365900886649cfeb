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
func NormalizePhone(s, country string) (string, error) {
	if len(s) > maxInputLen {
		return "", ErrTooLong
	}
	s = trimSpace(s)
	if s == "" {
		return "", nil
	}
	region := strings.ToUpper(country)
	if len(region) != 2 || phonenumbers.GetCountryCodeForRegion(region) == 0 {
		region = "ZZ"
	}
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

// PhoneCache remembers the outcome of normalizing and hashing recent phone numbers. libphonenumber's
// parsing and validation cost tens of microseconds (regular expressions over its metadata), far more
// than everything else in Normalize together, and the same customer's number comes back with every
// form post, webhook and postback of an order. The cache holds no plaintext: it is keyed by a
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

func computePhoneHashes(raw, country string) phoneHashes {
	e164, err := NormalizePhone(raw, country)
	if err != nil || e164 == "" {
		return phoneHashes{err: err}
	}
	return phoneHashes{meta: Hash(MetaPhone(e164)), e164: Hash(e164)}
}
