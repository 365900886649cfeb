package signal

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
)

// Hash returns the lowercase hex SHA-256 of a value that is already normalized.
func Hash(normalized string) string {
	sum := sha256.Sum256([]byte(normalized))
	var out [sha256.Size * 2]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}

// ExternalID returns the external_id every platform receives for a visitor: the lowercase hex
// SHA-256 of the visitor ID, the same value the browser tags carry.
func ExternalID(visitorID string) string {
	if visitorID == "" {
		return ""
	}
	return Hash(visitorID)
}

// IsHashed reports whether s (surrounding whitespace ignored) is a SHA-256 hex digest, in either case.
func IsHashed(s string) bool {
	s = trimSpace(s)
	if len(s) != sha256.Size*2 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// normalizeHashed returns the lower-case form of a value IsHashed accepted.
func normalizeHashed(s string) string {
	s = trimSpace(s)
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'F' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'F' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// isLowerHex64 reports whether s is already in the form Hash produces.
func isLowerHex64(s string) bool {
	return IsHashed(s) && normalizeHashed(s) == s
}

// codeHashes holds the hashes of the short codes every customer repeats (country and state codes,
// "f" and "m"), computed once so Normalize looks them up instead of hashing them each time.
var codeHashes = sync.OnceValue(func() map[string]string {
	m := make(map[string]string, 330)
	for _, cc := range countryTable() {
		m[cc] = Hash(cc)
	}
	for _, code := range stateCodes {
		m[code] = Hash(code)
	}
	m["f"], m["m"] = Hash("f"), Hash("m")
	return m
})

// hashCode is Hash for values that are often one of codeHashes' codes.
func hashCode(v string) string {
	if h, ok := codeHashes()[v]; ok {
		return h
	}
	return Hash(v)
}
