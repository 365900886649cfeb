package signal

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

var knownErrors = []error{ErrTooLong, ErrInvalidEmail, ErrInvalidPhone, ErrNoPhoneCountry, ErrNoLetters,
	ErrInvalidDate, ErrDateOutOfRange, ErrUnknownGender, ErrUnknownCountry, ErrInvalidZip,
	ErrHashedNotPlain, ErrTooManyValues}

// emptyHash is Hash(""): a hashed field holding it carries nothing but claims a signal.
var emptyHash = Hash("")

var fuzzSeeds = []string{"", " ", "John_Smith@gmail.com", "cloudy.sanfrancisco+shopping@gmail.com",
	"(650)555-1212", "+1 800 5550102", "0151 12345678", "Mary", "정", "Vale\u0301ry", "O'Connor Jr.",
	"2/16/1997", "16 Feb 1997", "16.02.1997", "19970216", "Female", "Mr.", "São Paulo", "New York",
	"Québec", "SW1A 1AA", "94035-1234", "United States", "Côte d'Ivoire", "1600 Amphitheatre Pkwy.",
	"\x00\x1b\xff", "Ann❤️™", "ΑΛΈΞΗΣ", "a\u0301\u0302\u0303", "İstanbul", "ǅ", "\u200d\ufe0f",
	strings.Repeat("9", 600), strings.Repeat(".", 64) + "@gmail.com"}

// checkNormalized asserts the invariants every normalizer keeps, and returns whether the output is
// non-empty so callers can check its charset.
func checkNormalized(t *testing.T, name, in, out string, err error, again func(string) (string, error)) bool {
	t.Helper()
	if err != nil {
		if out != "" {
			t.Fatalf("%s(%q) = %q with error %v", name, in, out, err)
		}
		if !slices.ContainsFunc(knownErrors, func(e error) bool { return errors.Is(err, e) }) {
			t.Fatalf("%s(%q): unexpected error %v", name, in, err)
		}
		return false
	}
	if out == "" {
		return false
	}
	if !utf8.ValidString(out) || !norm.NFC.IsNormalString(out) {
		t.Fatalf("%s(%q) = %q: not valid NFC UTF-8", name, in, out)
	}
	if strings.IndexFunc(out, unicode.IsControl) >= 0 {
		t.Fatalf("%s(%q) = %q: control character", name, in, out)
	}
	if again != nil {
		if out2, err2 := again(out); out2 != out || err2 != nil {
			t.Fatalf("%s not idempotent: %q → %q → %q, %v", name, in, out, out2, err2)
		}
	}
	return true
}

func onlyRunes(s string, ok func(rune) bool) bool {
	for _, r := range s {
		if !ok(r) {
			return false
		}
	}
	return true
}

func fuzzField(f *testing.F, name string, charset func(string) bool) {
	for _, s := range fuzzSeeds {
		for _, cc := range []string{"", "us", "gb", "de", "ca"} {
			f.Add(s, cc)
		}
	}
	normalize := normalizers[name]
	f.Fuzz(func(t *testing.T, in, country string) {
		out, err := normalize(in, country)
		again := func(s string) (string, error) { return normalize(s, country) }
		if checkNormalized(t, name, in, out, err, again) && !charset(out) {
			t.Fatalf("%s(%q, %q) = %q: outside its charset", name, in, country, out)
		}
	})
}

func noSpaceLower(s string) bool {
	return strings.ToLower(s) == s && strings.IndexFunc(s, unicode.IsSpace) < 0
}

func wordsLower(s string) bool {
	return strings.ToLower(s) == s && !strings.Contains(s, "  ") && strings.TrimSpace(s) == s &&
		onlyRunes(s, func(r rune) bool { return r == ' ' || !unicode.IsSpace(r) && !unicode.IsPunct(r) })
}

func FuzzNormalizeEmail(f *testing.F) {
	fuzzField(f, "email", func(s string) bool { return noSpaceLower(s) && strings.Count(s, "@") == 1 })
}

func FuzzNormalizeGoogleEmail(f *testing.F) {
	fuzzField(f, "google_email", func(s string) bool {
		local, domain, _ := strings.Cut(s, "@")
		gmail := domain == "gmail.com" || domain == "googlemail.com"
		return noSpaceLower(s) && (!gmail || !strings.ContainsAny(local, ".+"))
	})
}

func FuzzNormalizePhone(f *testing.F) {
	fuzzField(f, "phone", isE164)
}

func FuzzNormalizeName(f *testing.F) {
	fuzzField(f, "name", func(s string) bool {
		return noSpaceLower(s) && hasLetter(s) && onlyRunes(s, func(r rune) bool { return !unicode.IsPunct(r) && !unicode.IsSymbol(r) })
	})
}

func FuzzNormalizeGoogleName(f *testing.F) {
	fuzzField(f, "google_name", func(s string) bool { return wordsLower(s) && !strings.ContainsAny(s, "0123456789") })
}

func FuzzNormalizeDateOfBirth(f *testing.F) {
	fuzzField(f, "dob", func(s string) bool {
		return len(s) == 8 && onlyRunes(s, func(r rune) bool { return '0' <= r && r <= '9' }) && s >= "19000101" && s <= "20261127"
	})
}

func FuzzNormalizeGender(f *testing.F) {
	fuzzField(f, "gender", func(s string) bool { return s == "f" || s == "m" })
}

func FuzzNormalizeCity(f *testing.F) {
	fuzzField(f, "city", func(s string) bool { return noSpaceLower(s) && onlyRunes(s, letterOrMark) })
}

func FuzzNormalizeGoogleCity(f *testing.F) {
	fuzzField(f, "google_city", func(s string) bool { return wordsLower(s) && !strings.ContainsAny(s, "0123456789") })
}

func FuzzNormalizeState(f *testing.F) {
	fuzzField(f, "state", func(s string) bool { return noSpaceLower(s) && onlyRunes(s, letterOrMark) })
}

func FuzzNormalizeGoogleRegion(f *testing.F) {
	fuzzField(f, "google_region", wordsLower)
}

func FuzzNormalizeZip(f *testing.F) {
	fuzzField(f, "zip", func(s string) bool {
		return len(s) >= 2 && onlyRunes(s, func(r rune) bool { return 'a' <= r && r <= 'z' || '0' <= r && r <= '9' })
	})
}

func FuzzNormalizeGoogleZip(f *testing.F) {
	fuzzField(f, "google_zip", func(s string) bool {
		return strings.TrimSpace(s) == s && onlyRunes(s, func(r rune) bool { return r == ' ' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' })
	})
}

func FuzzNormalizeStreet(f *testing.F) {
	fuzzField(f, "street", wordsLower)
}

func FuzzNormalizeCountry(f *testing.F) {
	fuzzField(f, "country", func(s string) bool { return len(s) == 2 && countryTable()[s] == s })
}

func FuzzHash(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h := Hash(s)
		if !isLowerHex64(h) || h == s || Hash(s) != h {
			t.Fatalf("Hash(%q) = %q", s, h)
		}
		if IsHashed(s) && !isLowerHex64(normalizeHashed(s)) {
			t.Fatalf("normalizeHashed(%q) = %q", s, normalizeHashed(s))
		}
	})
}

// FuzzNormalize drives the whole pipeline: whatever arrives, every hashed field holds a hash that
// is not the plaintext it came from, plain fields are stable, and drops carry only fixed reasons.
func FuzzNormalize(f *testing.F) {
	c := fullCustomer()
	f.Add(c.Emails[0], c.Phones[0], c.FirstName, c.LastName, c.DateOfBirth, c.Gender, c.Street, c.City, c.State, c.Zip, c.Country)
	f.Add("+promo@gmail.com", "0", "Mr", "III", "29.02.2000", "she", "#", "1", "ON", "K1A 0B1", "CA")
	f.Add(Hash("x"), "+44 20 7946 0958", "정", "Vale\u0301ry", "16.02.1997", "Mrs", "", "São Paulo", "Québec", "SW1A 1AA", "gb")
	f.Fuzz(func(t *testing.T, email, phone, fn, ln, dob, gender, street, city, state, zip, country string) {
		in := Customer{Emails: []string{email}, Phones: []string{phone}, FirstName: fn, LastName: ln,
			DateOfBirth: dob, Gender: gender, Street: street, City: city, State: state, Zip: zip, Country: country}
		p, drops := Normalize(in, testOptions)
		inputs := []string{email, phone, fn, ln, dob, gender, street, city, state, zip, country}
		hashed := slices.Concat(p.Meta.Emails, p.Meta.Phones, p.TikTok.Emails, p.TikTok.Phones, p.Google.Emails, p.Google.Phones,
			[]string{p.Meta.FirstName, p.Meta.LastName, p.Meta.DateOfBirth, p.Meta.Gender, p.Meta.City, p.Meta.State,
				p.Meta.Zip, p.Meta.Country, p.TikTok.FirstName, p.TikTok.LastName, p.TikTok.Zip, p.Google.FirstName,
				p.Google.LastName, p.Google.Street})
		for _, h := range hashed {
			if h == "" {
				continue
			}
			if !isLowerHex64(h) || h == emptyHash {
				t.Fatalf("hashed field holds %q", h)
			}
			for _, v := range inputs {
				if h == v && !IsHashed(v) {
					t.Fatalf("plaintext %q passed into a hashed field", v)
				}
			}
		}
		if p.Meta.Street != "" || p.TikTok.Street != "" || p.TikTok.DateOfBirth != "" || p.Google.Gender != "" {
			t.Fatalf("field sent to a platform that has none: %+v", p)
		}
		for _, d := range drops {
			if !slices.ContainsFunc(knownErrors, func(e error) bool { return e.Error() == d.Reason }) {
				t.Fatalf("drop with unknown reason %+v", d)
			}
		}
		geo := country
		if cc, err := NormalizeCountry(country); err == nil && cc != "" {
			geo = cc
		} else {
			geo = "us"
		}
		for _, plain := range []struct {
			name, v string
			f       func(string) (string, error)
		}{
			{"tiktok city", p.TikTok.City, NormalizeCity},
			{"tiktok state", p.TikTok.State, func(s string) (string, error) { return NormalizeState(s, geo) }},
			{"google city", p.Google.City, NormalizeGoogleCity},
			{"google region", p.Google.State, func(s string) (string, error) { return NormalizeGoogleRegion(s, geo) }},
			{"google zip", p.Google.Zip, func(s string) (string, error) { return NormalizeGoogleZip(s, geo) }},
			{"google country", p.Google.Country, func(s string) (string, error) {
				cc, err := NormalizeCountry(s)
				return GoogleCountry(cc), err
			}},
		} {
			if plain.v == "" {
				continue
			}
			if again, err := plain.f(plain.v); again != plain.v || err != nil {
				t.Fatalf("%s %q is not stable: %q, %v", plain.name, plain.v, again, err)
			}
		}
	})
}
