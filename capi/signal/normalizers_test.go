package signal

import (
	"errors"
	"strings"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

type normCase struct {
	name, in, country, want string
	err                     error
}

func runNormCases(t *testing.T, normalizer string, cases []normCase) {
	t.Helper()
	f := normalizers[normalizer]
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := f(c.in, c.country)
			if !errors.Is(err, c.err) || got != c.want {
				t.Errorf("%s(%q, %q) = %q, %v; want %q, %v", normalizer, c.in, c.country, got, err, c.want, c.err)
			}
			if err != nil && got != "" {
				t.Errorf("%s(%q) returned %q together with an error", normalizer, c.in, got)
			}
			if err != nil && c.in != "" && strings.Contains(err.Error(), c.in) {
				t.Errorf("error %q carries the input", err)
			}
		})
	}
}

var hostile = strings.Repeat("a", 1<<20)

func TestNormalizeEmail(t *testing.T) {
	runNormCases(t, "email", []normCase{
		{"empty is unknown, not invalid", "", "", "", nil},
		{"whitespace only is unknown", " \t\n", "", "", nil},
		{"lower-cased and trimmed", "  Jane.Doe@Example.COM ", "", "jane.doe@example.com", nil},
		{"inner spaces from autofill removed", "jane doe@example.com", "", "janedoe@example.com", nil},
		{"plus kept outside Google", "a+b@example.com", "", "a+b@example.com", nil},
		{"NFD composed", "jose\u0301@example.com", "", "jos\u00e9@example.com", nil},
		{"international domain", "user@bücher.de", "", "user@bücher.de", nil},
		{"no at sign", "jane.example.com", "", "", ErrInvalidEmail},
		{"two at signs", "a@b@example.com", "", "", ErrInvalidEmail},
		{"no dot in domain", "jane@localhost", "", "", ErrInvalidEmail},
		{"empty local part", "@example.com", "", "", ErrInvalidEmail},
		{"leading dot in local part", ".jane@example.com", "", "", ErrInvalidEmail},
		{"double dot", "ja..ne@example.com", "", "", ErrInvalidEmail},
		{"angle brackets", "<jane@example.com>", "", "", ErrInvalidEmail},
		{"control character", "ja\x00ne@example.com", "", "", ErrInvalidEmail},
		{"label starting with hyphen", "jane@-example.com", "", "", ErrInvalidEmail},
		{"1 MB", hostile + "@example.com", "", "", ErrTooLong},
		{"invalid UTF-8 dropped", "ja\xffne@example.com", "", "jane@example.com", nil},
	})
}

func TestNormalizeGoogleEmail(t *testing.T) {
	runNormCases(t, "google_email", []normCase{
		{"gmail dots and plus", "J.A.N.E+promo+x@Gmail.com", "", "jane@gmail.com", nil},
		{"gmail subdomain is not gmail", "j.ane+x@mail.gmail.com", "", "j.ane+x@mail.gmail.com", nil},
		{"lookalike domain is not gmail", "j.ane@gmail.co", "", "j.ane@gmail.co", nil},
		{"nothing left before the plus", "+promo@gmail.com", "", "", ErrInvalidEmail},
		{"empty", "", "", "", nil},
	})
}

func TestNormalizePhone(t *testing.T) {
	runNormCases(t, "phone", []normCase{
		{"empty", "", "us", "", nil},
		{"national US with country", "650-555-1212", "us", "+16505551212", nil},
		{"dots removed", "650.555.1212", "US", "+16505551212", nil},
		{"country code already there", "+44 20 7946 0958", "us", "+442079460958", nil},
		{"national prefix 0 dropped", "0151 12345678", "de", "+4915112345678", nil},
		{"00 international prefix", "0044 20 7946 0958", "de", "+442079460958", nil},
		{"extension cut", "+1 650 555 1212 ext. 5", "", "+16505551212", nil},
		{"vanity letters mapped", "1-800-FLOWERS", "us", "+18003569377", nil},
		{"full-width digits", "＋１ ６５０ ５５５ １２１２", "", "+16505551212", nil},
		{"no country code and no country", "650-555-1212", "", "", ErrNoPhoneCountry},
		{"unknown country treated as unknown", "650-555-1212", "xx", "", ErrNoPhoneCountry},
		{"too short", "12345", "us", "", ErrInvalidPhone},
		{"not a number", "call me", "us", "", ErrInvalidPhone},
		{"invalid for its country", "+1 123 456 7890", "", "", ErrInvalidPhone},
		{"1 MB", hostile, "us", "", ErrTooLong},
	})
	if got := MetaPhone("+16505551212"); got != "16505551212" {
		t.Errorf("MetaPhone = %q", got)
	}
}

func TestNormalizeName(t *testing.T) {
	runNormCases(t, "name", []normCase{
		{"empty", "", "", "", nil},
		{"apostrophe removed", "O'Connor", "", "oconnor", nil},
		{"hyphen and spaces removed", "Mary-Ann  Smith", "", "maryannsmith", nil},
		{"accents kept", "José", "", "josé", nil},
		{"greek lower-cased", "ΑΛΈΞΗΣ", "", "αλέξησ", nil},
		{"cyrillic", "Иван", "", "иван", nil},
		{"emoji and symbols removed", "Ann❤️™", "", "ann", nil},
		{"control characters removed", "An\x00n\x1b", "", "ann", nil},
		{"punctuation only", "-.-", "", "", ErrNoLetters},
		{"digits only", "1234", "", "", ErrNoLetters},
		{"1 MB", hostile, "", "", ErrTooLong},
	})
}

func TestNormalizeGoogleName(t *testing.T) {
	runNormCases(t, "google_name", []normCase{
		{"prefix dropped", "Dr. Jane", "", "jane", nil},
		{"several prefixes", "Prof. Dr. Jane", "", "jane", nil},
		{"suffix dropped", "Smith III", "", "smith", nil},
		{"title alone kept", "Mr.", "", "mr", nil},
		{"digits removed", "Jane2", "", "jane", nil},
		{"inner spaces kept single", "  Mary   Ann ", "", "mary ann", nil},
		{"tab between words", "Mary\tAnn", "", "mary ann", nil},
		{"NFD", "Zoe\u0308", "", "zoë", nil},
		{"no letters", "123", "", "", ErrNoLetters},
	})
}

func TestNormalizeDateOfBirth(t *testing.T) {
	runNormCases(t, "dob", []normCase{
		{"empty", "", "", "", nil},
		{"ISO", "1997-02-16", "", "19970216", nil},
		{"ISO with time", "1997-02-16T10:00:00Z", "", "19970216", nil},
		{"year first with slashes", "1997/2/16", "", "19970216", nil},
		{"compact", "19970216", "", "19970216", nil},
		{"US month first", "02/16/1997", "", "19970216", nil},
		{"ambiguous reads month first", "03/04/1997", "", "19970304", nil},
		{"day > 12 disambiguates", "16/02/1997", "", "19970216", nil},
		{"dots are day first", "04.03.1997", "", "19970304", nil},
		{"day month-name year", "16 Feb 1997", "", "19970216", nil},
		{"month-name day, year", "February 16th, 1997", "", "19970216", nil},
		{"German month", "16. Februar 1997", "", "19970216", nil},
		{"French month", "16 février 1997", "", "19970216", nil},
		{"leap day", "2000-02-29", "", "20000229", nil},
		{"no 29 February 1999", "1999-02-29", "", "", ErrInvalidDate},
		{"month 13", "1997-13-01", "", "", ErrInvalidDate},
		{"two-digit year refused", "2/16/97", "", "", ErrInvalidDate},
		{"year before 1900", "1899-12-31", "", "", ErrDateOutOfRange},
		{"in the future", "2026-12-01", "", "", ErrDateOutOfRange},
		{"next year", "2027-01-01", "", "", ErrDateOutOfRange},
		{"today is fine", "2026-11-27", "", "20261127", nil},
		{"words", "yesterday", "", "", ErrInvalidDate},
		{"too many numbers", "1 2 3 4 5 6 7 8", "", "", ErrInvalidDate},
		{"1 MB", hostile, "", "", ErrTooLong},
	})
}

func TestNormalizeGender(t *testing.T) {
	runNormCases(t, "gender", []normCase{
		{"empty", "", "", "", nil},
		{"m", "M", "", "m", nil},
		{"male", " Male ", "", "m", nil},
		{"mr with dot", "Mr.", "", "m", nil},
		{"he", "he", "", "m", nil},
		{"german", "männlich", "", "m", nil},
		{"f", "F", "", "f", nil},
		{"woman", "Woman", "", "f", nil},
		{"ma'am", "Ma'am", "", "f", nil},
		{"ms", "Ms", "", "f", nil},
		{"spanish", "Mujer", "", "f", nil},
		{"french", "Femme", "", "f", nil},
		{"non-binary cannot be sent", "non-binary", "", "", ErrUnknownGender},
		{"unknown word", "banana", "", "", ErrUnknownGender},
	})
}

func TestNormalizeCity(t *testing.T) {
	runNormCases(t, "city", []normCase{
		{"accents kept", "São Paulo", "", "sãopaulo", nil},
		{"punctuation and digits removed", "St. Louis 2", "", "stlouis", nil},
		{"NFD composed", "Mu\u0308nchen", "", "münchen", nil},
		{"digits only", "12345", "", "", ErrNoLetters},
	})
	runNormCases(t, "google_city", []normCase{
		{"hyphen removed", "Winston-Salem", "", "winstonsalem", nil},
		{"digits removed", "Paris 18", "", "paris", nil},
	})
}

func TestNormalizeState(t *testing.T) {
	runNormCases(t, "state", []normCase{
		{"full name", "New York", "us", "ny", nil},
		{"code upper-case", "TX", "", "tx", nil},
		{"unknown country still maps", "Texas", "", "tx", nil},
		{"Canadian province French name", "Québec", "ca", "qc", nil},
		{"Canadian province", "British Columbia", "", "bc", nil},
		{"District of Columbia", "Washington, D.C.", "us", "dc", nil},
		{"outside the US letters only", "Baden-Württemberg", "de", "badenwürttemberg", nil},
		{"US name not mapped abroad", "Georgia", "ge", "georgia", nil},
		{"no letters", "123", "de", "", ErrNoLetters},
	})
	runNormCases(t, "google_region", []normCase{
		{"US code", "new york", "us", "ny", nil},
		{"abroad words kept", "Île-de-France", "fr", "îledefrance", nil},
		{"abroad spaces", "Greater  London", "gb", "greater london", nil},
	})
}

func TestNormalizeZip(t *testing.T) {
	runNormCases(t, "zip", []normCase{
		{"US 9 digits", "940351234", "us", "94035", nil},
		{"ZIP+4 with unknown country", "94035-1234", "", "94035", nil},
		{"US too short", "9403", "us", "", ErrInvalidZip},
		{"US with letters", "9403A", "us", "", ErrInvalidZip},
		{"UK lower, no space", "SW1A 1AA", "gb", "sw1a1aa", nil},
		{"Canada", "K1A 0B1", "ca", "k1a0b1", nil},
		{"Poland dash removed, not cut", "00-950", "pl", "00950", nil},
		{"Brazil not treated as US", "01310-100", "", "01310100", nil},
		{"one character", "7", "fr", "", ErrInvalidZip},
		{"1 MB", hostile, "fr", "", ErrTooLong},
	})
	runNormCases(t, "google_zip", []normCase{
		{"UK upper with space", "sw1a  1aa", "gb", "SW1A 1AA", nil},
		{"US cut", "94035-1234", "us", "94035", nil},
	})
}

func TestNormalizeStreet(t *testing.T) {
	runNormCases(t, "street", []normCase{
		{"symbols removed", "12, Rue de l'Église #3", "", "12 rue de léglise 3", nil},
		{"only symbols", "#-/", "", "", ErrNoLetters},
	})
}

func TestNormalizeCountry(t *testing.T) {
	runNormCases(t, "country", []normCase{
		{"alpha-2", "DE", "", "de", nil},
		{"alpha-3", "DEU", "", "de", nil},
		{"English name", "Germany", "", "de", nil},
		{"native name", "Deutschland", "", "de", nil},
		{"French name", "Allemagne", "", "de", nil},
		{"USA", "U.S.A.", "", "us", nil},
		{"UK is GB", "UK", "", "gb", nil},
		{"United Kingdom", "United Kingdom", "", "gb", nil},
		{"accents optional", "Cote d'Ivoire", "", "ci", nil},
		{"ampersand", "Bosnia and Herzegovina", "", "ba", nil},
		{"the prefix", "The Netherlands", "", "nl", nil},
		{"Turkey and Türkiye", "Turkey", "", "tr", nil},
		{"Türkiye", "Türkiye", "", "tr", nil},
		{"South Korea", "South Korea", "", "kr", nil},
		{"Czech Republic", "Czech Republic", "", "cz", nil},
		{"not a country", "Atlantis", "", "", ErrUnknownCountry},
		{"EU is not a country", "EU", "", "", ErrUnknownCountry},
		{"private-use code", "XX", "", "", ErrUnknownCountry},
	})
	// About 250 ISO countries are known by their code.
	n := 0
	for k, v := range countryTable() {
		if k == v {
			n++
		}
	}
	if n < 240 || n > 260 {
		t.Errorf("country table knows %d alpha-2 codes, want about 250", n)
	}
}

func TestHash(t *testing.T) {
	if got := Hash(""); got != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("Hash(\"\") = %s", got)
	}
	if got := ExternalID("k3j5h2g7f8d9s0a1q2w3e4r5"); got != Hash("k3j5h2g7f8d9s0a1q2w3e4r5") || !isLowerHex64(got) {
		t.Errorf("ExternalID = %s", got)
	}
	if ExternalID("") != "" {
		t.Error("ExternalID of no visitor must be empty")
	}
	upper := strings.ToUpper(Hash("x"))
	if !IsHashed(" "+upper+" ") || normalizeHashed(upper) != Hash("x") {
		t.Error("upper-case SHA-256 not recognized and lower-cased")
	}
	for _, s := range []string{"", Hash("x")[:63], Hash("x") + "0", strings.Repeat("g", 64), "5f4dcc3b5aa765d61d8327deb882cf99"} {
		if IsHashed(s) {
			t.Errorf("IsHashed(%q) = true", s)
		}
	}
}

// TestNormalizePhoneAgreesWithLibphonenumber: the region-first validity shortcut accepts and
// refuses exactly what phonenumbers.IsValidNumber does, across regions sharing a calling code.
func TestNormalizePhoneAgreesWithLibphonenumber(t *testing.T) {
	for _, c := range []struct{ in, region string }{
		{"416 555 0123", "US"}, {"416 979 2000", "US"}, {"416 979 2000", "CA"}, {"212 555 0100", "CA"},
		{"876 555 0100", "US"}, {"876 927 1660", "JM"}, {"020 7946 0958", "GB"}, {"01534 123456", "GB"},
		{"01534 123456", "JE"}, {"+7 701 123 4567", "RU"}, {"+7 495 123 4567", "KZ"}, {"0 12 34", "FR"},
	} {
		got, err := NormalizePhone(c.in, c.region)
		num, perr := phonenumbers.Parse(c.in, c.region)
		want := perr == nil && phonenumbers.IsValidNumber(num)
		if (err == nil) != want {
			t.Errorf("NormalizePhone(%q, %s) = %q, %v; libphonenumber valid = %v", c.in, c.region, got, err, want)
		}
		if want && got != phonenumbers.Format(num, phonenumbers.E164) {
			t.Errorf("NormalizePhone(%q, %s) = %q, want %s", c.in, c.region, got, phonenumbers.Format(num, phonenumbers.E164))
		}
	}
}
