package signal

import (
	"encoding/json"
	"os"
	"testing"
	"time"
)

// testNow is the "now" of every test that reads dates: fixed, so the tests do not age.
var testNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// normalizers names every per-field normalizer for table-driven and golden tests, each taking the
// value and a country (ignored where the field has none).
var normalizers = map[string]func(in, country string) (string, error){
	"email":        func(s, _ string) (string, error) { return NormalizeEmail(s) },
	"google_email": func(s, _ string) (string, error) { return NormalizeGoogleEmail(s) },
	"phone":        NormalizePhone,
	"meta_phone": func(s, cc string) (string, error) {
		e, err := NormalizePhone(s, cc)
		return MetaPhone(e), err
	},
	"name":          func(s, _ string) (string, error) { return NormalizeName(s) },
	"google_name":   func(s, _ string) (string, error) { return NormalizeGoogleName(s) },
	"dob":           func(s, _ string) (string, error) { return NormalizeDateOfBirth(s, testNow) },
	"gender":        func(s, _ string) (string, error) { return NormalizeGender(s) },
	"city":          func(s, _ string) (string, error) { return NormalizeCity(s) },
	"google_city":   func(s, _ string) (string, error) { return NormalizeGoogleCity(s) },
	"state":         NormalizeState,
	"google_region": NormalizeGoogleRegion,
	"zip":           NormalizeZip,
	"google_zip":    NormalizeGoogleZip,
	"street":        func(s, _ string) (string, error) { return NormalizeStreet(s) },
	"country":       func(s, _ string) (string, error) { return NormalizeCountry(s) },
	"google_country": func(s, _ string) (string, error) {
		cc, err := NormalizeCountry(s)
		return GoogleCountry(cc), err
	},
}

// TestGoldenDocumentedExamples reproduces every example of the spec notes: the normalized form and,
// where the platform documents it, the exact SHA-256.
func TestGoldenDocumentedExamples(t *testing.T) {
	raw, err := os.ReadFile("testdata/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Doc, Normalizer, In, Country, Want, SHA256 string
	}
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) < 30 {
		t.Fatalf("golden file has %d cases, want the full set", len(cases))
	}
	for _, c := range cases {
		f, ok := normalizers[c.Normalizer]
		if !ok {
			t.Fatalf("%s: unknown normalizer %q", c.Doc, c.Normalizer)
		}
		got, err := f(c.In, c.Country)
		if err != nil || got != c.Want {
			t.Errorf("%s: %s(%q, %q) = %q, %v; want %q", c.Doc, c.Normalizer, c.In, c.Country, got, err, c.Want)
			continue
		}
		if c.SHA256 != "" && Hash(got) != c.SHA256 {
			t.Errorf("%s: Hash(%q) = %s, want %s", c.Doc, got, Hash(got), c.SHA256)
		}
	}
}
