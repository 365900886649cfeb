package signal

import (
	"strings"
	"unicode"
)

// NormalizeEmail returns the email address as Meta and TikTok hash it: trimmed, lower-cased, NFC,
// with any whitespace inside removed (forms and autofill leave stray spaces). An address without
// exactly one "@", an empty local part, or a domain that is not dotted labels is ErrInvalidEmail.
// An empty input gives "" and no error.
func NormalizeEmail(s string) (string, error) {
	s, err := prepare(s)
	if err != nil || s == "" {
		return "", err
	}
	return normalizeEmailPrepared(s)
}

// normalizeEmailPrepared is NormalizeEmail after prepare.
func normalizeEmailPrepared(s string) (string, error) {
	if strings.IndexFunc(s, unicode.IsSpace) >= 0 {
		s = strings.Map(func(r rune) rune {
			if unicode.IsSpace(r) {
				return -1
			}
			return r
		}, s)
	}
	if !validEmail(s) {
		return "", ErrInvalidEmail
	}
	return s, nil
}

// NormalizeGoogleEmail returns the address as Google hashes it: NormalizeEmail, and for gmail.com
// and googlemail.com only (exact domain match, neither rewritten to the other) every dot removed
// from the local part and "+" with everything after it cut, per the Data Manager formatting page:
// "cloudy.sanfrancisco+shopping@gmail.com" → "cloudysanfrancisco@gmail.com", while
// "user.name+NYC@Example.com" → "user.name+nyc@example.com".
func NormalizeGoogleEmail(s string) (string, error) {
	s, err := NormalizeEmail(s)
	if err != nil || s == "" {
		return s, err
	}
	at := strings.LastIndexByte(s, '@')
	local, domain := s[:at], s[at+1:]
	if domain != "gmail.com" && domain != "googlemail.com" {
		return s, nil
	}
	if i := strings.IndexByte(local, '+'); i >= 0 {
		local = local[:i]
	}
	local = strings.ReplaceAll(local, ".", "")
	if local == "" {
		return "", ErrInvalidEmail
	}
	return local + "@" + domain, nil
}

// validEmail accepts what a store's checkout accepts: one "@", a local part of at most 64 bytes
// without control or RFC 5322 special characters, and a domain of dotted labels (letters in any
// script, digits, hyphens). Quoted local parts are refused: no shopper has one, and a platform
// would not match it.
func validEmail(s string) bool {
	if len(s) > 254 {
		return false
	}
	at := strings.IndexByte(s, '@')
	if at <= 0 || at > 64 || strings.IndexByte(s[at+1:], '@') >= 0 {
		return false
	}
	local, domain := s[:at], s[at+1:]
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return false
	}
	for _, r := range local {
		if unicode.IsControl(r) || unicode.IsSpace(r) || strings.ContainsRune(`"(),:;<>[\]`, r) ||
			r == unicode.ReplacementChar {
			return false
		}
	}
	labels := 0
	for label := range strings.SplitSeq(domain, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if r != '-' && !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.IsMark(r) {
				return false
			}
		}
		labels++
	}
	return labels >= 2
}
