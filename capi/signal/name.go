package signal

import (
	"strings"
	"unicode"
)

// NormalizeName returns a first or last name as Meta (fn, ln) and TikTok (first_name, last_name)
// hash it: NFC, lower case, punctuation, symbols and whitespace removed, letters of any script kept
// ("Mary" → "mary", "O'Connor" → "oconnor", "Valéry" → "valéry", "정" → "정"). A value with no
// letter left is ErrNoLetters; an empty input gives "" and no error.
//
// Meta's docs say "no punctuation" and its parameter builder also removes whitespace ("Mary Ann"
// → "maryann"); Python's SDK keeps punctuation. We follow the docs and the builder.
func NormalizeName(s string) (string, error) {
	s, err := prepare(s)
	if err != nil || s == "" {
		return "", err
	}
	return normalizeNamePrepared(s)
}

// normalizeNamePrepared is NormalizeName after prepare.
func normalizeNamePrepared(s string) (string, error) {
	s = keepRunes(s, lettersAndDigits)
	if !hasLetter(s) {
		return "", ErrNoLetters
	}
	return s, nil
}

// NormalizeGoogleName returns a first or last name as Google hashes it: lower case, digits,
// punctuation and symbols removed (GA4's user-provided data rules), single spaces between words,
// trimmed, and the honorifics and suffixes the Data Manager API asks to drop ("Mrs.", "Dr.", "Jr.",
// "III") removed when a name remains without them.
func NormalizeGoogleName(s string) (string, error) {
	s, err := prepare(s)
	if err != nil || s == "" {
		return "", err
	}
	return normalizeGoogleNamePrepared(s)
}

// normalizeGoogleNamePrepared is NormalizeGoogleName after prepare.
func normalizeGoogleNamePrepared(s string) (string, error) {
	s = keepRunes(spacesToSingle(s), wordsOfLetters)
	if !hasLetter(s) {
		return "", ErrNoLetters
	}
	if !strings.Contains(s, " ") {
		return s, nil // one word: nothing to drop, since a title alone is kept
	}
	words := strings.Split(s, " ")
	for len(words) > 1 && namePrefixes[words[0]] {
		words = words[1:]
	}
	for len(words) > 1 && nameSuffixes[words[len(words)-1]] {
		words = words[:len(words)-1]
	}
	return strings.Join(words, " "), nil
}

// Honorifics and generational or academic suffixes, after punctuation is removed ("Mrs." → "mrs").
var (
	namePrefixes = setOf("mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "dame", "madam", "mme",
		"mlle", "herr", "frau", "sra", "srta")
	nameSuffixes = setOf("jr", "jnr", "sr", "snr", "ii", "iii", "iv", "phd", "md", "esq", "dds", "mba")
)

func setOf(words ...string) map[string]bool {
	m := make(map[string]bool, len(words))
	for _, w := range words {
		m[w] = true
	}
	return m
}

func hasLetter(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' {
			return true
		}
		if c >= 0x80 {
			return strings.IndexFunc(s[i:], unicode.IsLetter) >= 0
		}
	}
	return false
}
