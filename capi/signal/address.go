package signal

import (
	"strings"
)

// NormalizeCity returns the city as Meta hashes it (ct) and TikTok sends it plain: lower case, NFC,
// letters only — no spaces, digits or punctuation ("New York" → "newyork", "São Paulo" →
// "sãopaulo"). Meta recommends a–z but accepts UTF-8; we keep accented letters rather than delete
// them as the parameter builder does, which would turn "São Paulo" into "sopaulo".
func NormalizeCity(s string) (string, error) {
	s, err := prepare(s)
	if err != nil || s == "" {
		return "", err
	}
	return normalizeCityPrepared(s)
}

// normalizeCityPrepared is NormalizeCity after prepare.
func normalizeCityPrepared(s string) (string, error) {
	s = keepRunes(s, lettersOnly)
	if !hasLetter(s) {
		return "", ErrNoLetters
	}
	return s, nil
}

// NormalizeGoogleCity returns the city as Google receives it (plain): digits and symbols removed,
// lower case, words separated by single spaces ("San Francisco" → "san francisco").
func NormalizeGoogleCity(s string) (string, error) {
	s, err := prepare(s)
	if err != nil || s == "" {
		return "", err
	}
	return normalizeGoogleCityPrepared(s)
}

// normalizeGoogleCityPrepared is NormalizeGoogleCity after prepare.
func normalizeGoogleCityPrepared(s string) (string, error) {
	s = keepRunes(spacesToSingle(s), wordsOfLetters)
	if !hasLetter(s) {
		return "", ErrNoLetters
	}
	return s, nil
}

// NormalizeState returns the state or region as Meta hashes it (st) and TikTok sends it plain.
// US states and Canadian provinces, by name or code, become their lower-case 2-letter code
// ("California" → "ca", "Québec" → "qc") when country is "us", "ca" or unknown; other regions are
// lower case with letters only ("Baden-Württemberg" → "badenwürttemberg").
func NormalizeState(s, country string) (string, error) {
	s, err := prepare(s)
	if err != nil || s == "" {
		return "", err
	}
	return normalizeStatePrepared(s, country)
}

// normalizeStatePrepared is NormalizeState after prepare.
func normalizeStatePrepared(s, country string) (string, error) {
	if code, ok := stateCode(s, country); ok {
		return code, nil
	}
	s = keepRunes(s, lettersOnly)
	if !hasLetter(s) {
		return "", ErrNoLetters
	}
	return s, nil
}

// NormalizeGoogleRegion returns the state or region as Google receives it (plain, "region"): the
// same 2-letter codes as NormalizeState for the US and Canada, otherwise lower case with digits and
// symbols removed and single spaces between words.
func NormalizeGoogleRegion(s, country string) (string, error) {
	s, err := prepare(s)
	if err != nil || s == "" {
		return "", err
	}
	return normalizeGoogleRegionPrepared(s, country)
}

// normalizeGoogleRegionPrepared is NormalizeGoogleRegion after prepare.
func normalizeGoogleRegionPrepared(s, country string) (string, error) {
	if code, ok := stateCode(s, country); ok {
		return code, nil
	}
	return normalizeGoogleCityPrepared(s)
}

func stateCode(s, country string) (string, bool) {
	switch country {
	case "", "us", "ca", "US", "CA":
		return lookupFolded(stateCodes, s)
	}
	return "", false
}

// NormalizeStreet returns the street address as Google hashes it: symbols and punctuation removed,
// lower case, single spaces ("1600 Amphitheatre Pkwy." → "1600 amphitheatre pkwy"). Meta and
// TikTok have no street field.
func NormalizeStreet(s string) (string, error) {
	s, err := prepare(s)
	if err != nil || s == "" {
		return "", err
	}
	return normalizeStreetPrepared(s)
}

// normalizeStreetPrepared is NormalizeStreet after prepare.
func normalizeStreetPrepared(s string) (string, error) {
	s = keepRunes(spacesToSingle(s), wordsOfLettersAndDigits)
	if s == "" {
		return "", ErrNoLetters
	}
	return s, nil
}

// NormalizeZip returns the postal code as Meta (zp) and TikTok (zip_code) hash it: lower case,
// letters and digits only — no spaces, no dashes ("SW1A 1AA" → "sw1a1aa", "75018" → "75018"). A US
// zip is cut to its first 5 digits ("94035-1234" → "94035") when country is "us", or when country is
// unknown and the value is shaped like a ZIP+4. A value left with fewer than 2 characters, or a US
// zip with fewer than 5 digits, is ErrInvalidZip.
func NormalizeZip(s, country string) (string, error) {
	raw, z, err := zipCore(s, country)
	if err != nil || raw == "" {
		return "", err
	}
	return metaZip(z), nil
}

// NormalizeGoogleZip returns the postal code as Google receives it (plain, "postal_code"): upper
// case, single spaces kept as the country writes them ("sw1a 1aa" → "SW1A 1AA"), US zips cut to 5
// digits like NormalizeZip. Google documents only trimming; upper case is the postal services' own
// form.
func NormalizeGoogleZip(s, country string) (string, error) {
	raw, z, err := zipCore(s, country)
	if err != nil || raw == "" {
		return "", err
	}
	return googleZip(z), nil
}

// metaZip and googleZip turn zipCore's postal code into NormalizeZip's and NormalizeGoogleZip's
// forms.
func metaZip(z string) string   { return strings.ToLower(strings.ReplaceAll(z, " ", "")) }
func googleZip(z string) string { return strings.ToUpper(z) }

// zipCore trims a postal code to letters, digits and single spaces, and applies the US rule.
func zipCore(s, country string) (raw, z string, err error) {
	if len(s) > maxInputLen {
		return "", "", ErrTooLong
	}
	raw = trimSpace(s)
	if raw == "" {
		return "", "", nil
	}
	z = keepRunes(spacesToSingle(raw), zipRunes)
	if country == "us" || country == "US" || country == "" && isZipPlus4(raw) {
		digits := keepRunes(z, asciiDigits)
		if len(digits) < 5 || len(digits) != len(strings.ReplaceAll(z, " ", "")) {
			return raw, "", ErrInvalidZip
		}
		return raw, digits[:5], nil
	}
	if n := len(strings.ReplaceAll(z, " ", "")); n < 2 || n > 12 {
		return raw, "", ErrInvalidZip
	}
	return raw, z, nil
}

// isZipPlus4 reports whether s looks like "12345-6789": a US zip whatever the country field says.
func isZipPlus4(s string) bool {
	if len(s) != 10 || s[5] != '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if i != 5 && (s[i] < '0' || s[i] > '9') {
			return false
		}
	}
	return true
}
