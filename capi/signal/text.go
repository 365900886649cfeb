package signal

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
)

// maxInputLen bounds every value this package reads: no real name, address or email comes near it,
// and hostile input (a megabyte pasted into a form field) is refused before any work is done on it.
const maxInputLen = 512

// Reasons a value is dropped. Their texts go into Drop.Reason and may be counted in metrics, so the
// set is fixed and none of them carries the value.
var (
	ErrTooLong        = errors.New("value too long")
	ErrInvalidEmail   = errors.New("not a valid email address")
	ErrInvalidPhone   = errors.New("not a valid phone number")
	ErrNoPhoneCountry = errors.New("phone number without country code and no country known")
	ErrNoLetters      = errors.New("no letters left after normalization")
	ErrInvalidDate    = errors.New("not a recognizable date")
	ErrDateOutOfRange = errors.New("date outside 1900 to today")
	ErrUnknownGender  = errors.New("gender not recognizable as f or m")
	ErrUnknownCountry = errors.New("not an ISO 3166 country")
	ErrInvalidZip     = errors.New("not a valid postal code")
	ErrHashedNotPlain = errors.New("already hashed but the platform needs it plain")
	ErrTooManyValues  = errors.New("more than 5 values")
)

// prepare bounds, trims, composes (NFC) and lower-cases a value. Every normalizer starts here, so
// NFD input and upper case never reach a hash.
func prepare(s string) (string, error) {
	if len(s) > maxInputLen {
		return "", ErrTooLong
	}
	s = trimSpace(s)
	if isASCII(s) {
		return asciiLower(s), nil
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "")
	}
	return norm.NFC.String(strings.ToLower(norm.NFC.String(s))), nil
}

func trimSpace(s string) string {
	// Fast path for the common case of nothing to trim.
	if s == "" || (s[0] > ' ' && s[0] < utf8.RuneSelf && s[len(s)-1] > ' ' && s[len(s)-1] < utf8.RuneSelf) {
		return s
	}
	return strings.TrimSpace(s)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// runeFilter is a set of runes for keepRunes. Its ASCII members are also in a table, so the
// common ASCII value is filtered without a function call per byte.
type runeFilter struct {
	ascii [utf8.RuneSelf]bool
	keep  func(rune) bool
}

func newRuneFilter(keep func(rune) bool) *runeFilter {
	f := &runeFilter{keep: keep}
	for r := range rune(utf8.RuneSelf) {
		f.ascii[r] = keep(r)
	}
	return f
}

// The sets of runes the normalizers keep.
var (
	lettersOnly             = newRuneFilter(letterOrMark)
	lettersAndDigits        = newRuneFilter(letterMarkOrDigit)
	wordsOfLetters          = newRuneFilter(func(r rune) bool { return r == ' ' || letterOrMark(r) })
	wordsOfLettersAndDigits = newRuneFilter(func(r rune) bool { return r == ' ' || letterMarkOrDigit(r) })
	asciiDigits             = newRuneFilter(func(r rune) bool { return '0' <= r && r <= '9' })
	zipRunes                = newRuneFilter(func(r rune) bool {
		return r == ' ' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9'
	})
)

// keepRunes returns s with only the runes of keep, re-composed to NFC because removing a rune
// can bring a base letter and a combining mark together. Runs of kept spaces collapse to one space
// and leading or trailing spaces are dropped, so callers that keep spaces get tidy words.
func keepRunes(s string, keep *runeFilter) string {
	if isASCII(s) {
		// ASCII never needs re-composition; filter bytes without decoding runes, and return s
		// itself when nothing goes (the common case) so no copy is made.
		drop := len(s) > 0 && s[len(s)-1] == ' '
		for i := 0; i < len(s) && !drop; i++ {
			c := s[i]
			drop = !keep.ascii[c] || c == ' ' && (i == 0 || s[i-1] == ' ')
		}
		if !drop {
			return s
		}
		b := make([]byte, 0, len(s))
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !keep.ascii[c] || c == ' ' && (len(b) == 0 || b[len(b)-1] == ' ') {
				continue
			}
			b = append(b, c)
		}
		if len(b) > 0 && b[len(b)-1] == ' ' {
			b = b[:len(b)-1]
		}
		return string(b)
	}
	var sb strings.Builder
	sb.Grow(len(s))
	lastSpace, prevKept := true, false
	for _, r := range s {
		// A combining mark belongs to the rune before it: it goes when that rune goes (the
		// variation selector of a removed emoji), and stays with a kept letter.
		if !keep.keep(r) || unicode.IsMark(r) && !prevKept || isVariationSelector(r) {
			prevKept = false
			continue
		}
		prevKept = r != ' ' // a mark cannot sit on a space, which may be trimmed away
		if r == ' ' {
			if lastSpace {
				continue
			}
			lastSpace = true
		} else {
			lastSpace = false
		}
		sb.WriteRune(r)
	}
	out := strings.TrimRight(sb.String(), " ")
	if norm.NFC.IsNormalString(out) {
		return out
	}
	return norm.NFC.String(out)
}

func isVariationSelector(r rune) bool {
	return 0xFE00 <= r && r <= 0xFE0F || 0xE0100 <= r && r <= 0xE01EF
}

// letterOrMark keeps letters and the combining marks that may follow them (Devanagari vowel signs,
// marks without a precomposed form).
func letterOrMark(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z'
	}
	return unicode.IsLetter(r) || unicode.IsMark(r)
}

func letterMarkOrDigit(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9'
	}
	return unicode.IsLetter(r) || unicode.IsMark(r) || unicode.IsDigit(r)
}

// spacesToSingle maps every kind of whitespace (and the punctuation that separates words) to a
// plain space so keepRunes can collapse it; other runes pass unchanged.
func spacesToSingle(s string) string {
	if isASCII(s) {
		// unicode.IsSpace's ASCII members, found without decoding runes.
		if strings.IndexAny(s, "\t\n\v\f\r") < 0 {
			return s
		}
	} else if strings.IndexFunc(s, func(r rune) bool { return r != ' ' && unicode.IsSpace(r) }) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return ' '
		}
		return r
	}, s)
}

// lookupFolded looks s up in a table keyed by foldKey. Short ASCII values, nearly all of them, are
// folded into a stack buffer: indexing a map with string(bytes) does not allocate.
func lookupFolded[V any](table map[string]V, s string) (V, bool) {
	if len(s) <= 64 && isASCII(s) {
		var buf [64]byte
		b := buf[:0]
		for i := 0; i < len(s); i++ {
			c := s[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if 'a' <= c && c <= 'z' {
				b = append(b, c)
			}
		}
		v, ok := table[string(b)]
		return v, ok
	}
	v, ok := table[foldKey(s)]
	return v, ok
}

// foldKey reduces a name to the form the lookup tables use: lower-case ASCII letters with accents
// stripped ("Québec" → "quebec", "Côte d'Ivoire" → "cotedivoire").
func foldKey(s string) string {
	if !isASCII(s) {
		t := transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC)
		if r, _, err := transform.String(t, s); err == nil {
			s = r
		}
		s = strings.ToLower(s)
	} else {
		s = asciiLower(s)
	}
	return keepRunes(s, lettersOnly)
}
