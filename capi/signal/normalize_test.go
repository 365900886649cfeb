package signal

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/platform"
)

func fullCustomer() Customer {
	return Customer{
		Emails:      []string{"John_Smith@gmail.com", "j.smith+shop@gmail.com"},
		Phones:      []string{"(650)555-1212"},
		FirstName:   "Mary",
		LastName:    "O'Connor Jr.",
		DateOfBirth: "2/16/1997",
		Gender:      "Female",
		Street:      "1600 Amphitheatre Pkwy.",
		City:        "San Francisco",
		State:       "California",
		Zip:         "94035-1234",
		Country:     "United States",
	}
}

var testOptions = Options{DefaultCountry: "US", Now: func() time.Time { return testNow }}

// TestNormalizeFullCustomer checks each platform's profile holds every field in exactly the form
// the platform receives.
func TestNormalizeFullCustomer(t *testing.T) {
	p, drops := Normalize(fullCustomer(), testOptions)
	if len(drops) != 0 {
		t.Fatalf("drops = %v", drops)
	}
	wantMeta := event.Profile{
		Emails:      []string{Hash("john_smith@gmail.com"), Hash("j.smith+shop@gmail.com")},
		Phones:      []string{Hash("16505551212")},
		FirstName:   Hash("mary"),
		LastName:    Hash("oconnorjr"),
		DateOfBirth: Hash("19970216"),
		Gender:      Hash("f"),
		City:        Hash("sanfrancisco"),
		State:       Hash("ca"),
		Zip:         Hash("94035"),
		Country:     Hash("us"),
	}
	if !reflect.DeepEqual(p.Meta, wantMeta) {
		t.Errorf("Meta profile\n got %+v\nwant %+v", p.Meta, wantMeta)
	}
	wantTikTok := event.Profile{
		Emails:    []string{Hash("john_smith@gmail.com"), Hash("j.smith+shop@gmail.com")},
		Phones:    []string{Hash("+16505551212")},
		FirstName: Hash("mary"),
		LastName:  Hash("oconnorjr"),
		City:      "sanfrancisco",
		State:     "ca",
		Zip:       Hash("94035"),
		Country:   "us",
	}
	if !reflect.DeepEqual(p.TikTok, wantTikTok) {
		t.Errorf("TikTok profile\n got %+v\nwant %+v", p.TikTok, wantTikTok)
	}
	wantGoogle := event.Profile{
		Emails:    []string{Hash("john_smith@gmail.com"), Hash("jsmith@gmail.com")},
		Phones:    []string{Hash("+16505551212")},
		FirstName: Hash("mary"),
		LastName:  Hash("oconnor"),
		Street:    Hash("1600 amphitheatre pkwy"),
		City:      "san francisco",
		State:     "ca",
		Zip:       "94035",
		Country:   "US",
	}
	if !reflect.DeepEqual(p.Google, wantGoogle) {
		t.Errorf("Google profile\n got %+v\nwant %+v", p.Google, wantGoogle)
	}
}

// TestNormalizeNeverOutputsPlaintext: hashed fields hold hashes only, and no plaintext input
// appears anywhere in the JSON the queue would store, except the plain address fields.
func TestNormalizeNeverOutputsPlaintext(t *testing.T) {
	c := fullCustomer()
	p, _ := Normalize(c, testOptions)
	for _, prof := range []event.Profile{p.Meta, p.TikTok, p.Google} {
		for _, v := range slices.Concat(prof.Emails, prof.Phones,
			[]string{prof.FirstName, prof.LastName, prof.DateOfBirth, prof.Gender, prof.Street}) {
			if v != "" && !isLowerHex64(v) {
				t.Errorf("hashed field holds %q", v)
			}
		}
	}
	for _, v := range []string{p.Meta.City, p.Meta.State, p.Meta.Zip, p.Meta.Country, p.TikTok.Zip} {
		if !isLowerHex64(v) {
			t.Errorf("Meta/TikTok hashed address field holds %q", v)
		}
	}
	b, _ := json.Marshal(p)
	for _, secret := range []string{"john", "smith", "mary", "connor", "555", "1212", "1997", "amphitheatre"} {
		if strings.Contains(strings.ToLower(string(b)), secret) {
			t.Errorf("profiles JSON contains %q: %s", secret, b)
		}
	}
}

func TestNormalizeReportsDropsWithoutValues(t *testing.T) {
	c := Customer{
		Emails:      []string{"not-an-email", "ok@example.com"},
		Phones:      []string{"12", "+1 650 555 1212"},
		FirstName:   "!!!",
		DateOfBirth: "31/02/1990",
		Gender:      "nonbinary",
		Country:     "Atlantis",
		Zip:         "1",
	}
	p, drops := Normalize(c, Options{Now: func() time.Time { return testNow }})
	want := []Drop{
		{"country", ErrUnknownCountry.Error()},
		{"email", ErrInvalidEmail.Error()},
		{"phone", ErrNoPhoneCountry.Error()},
		{"first_name", ErrNoLetters.Error()},
		{"date_of_birth", ErrInvalidDate.Error()},
		{"gender", ErrUnknownGender.Error()},
		{"zip", ErrInvalidZip.Error()},
	}
	if !reflect.DeepEqual(drops, want) {
		t.Errorf("drops\n got %v\nwant %v", drops, want)
	}
	if len(p.Meta.Emails) != 1 || len(p.Meta.Phones) != 1 || p.Meta.FirstName != "" || p.Meta.Country != "" {
		t.Errorf("valid values lost or invalid ones kept: %+v", p.Meta)
	}
	for _, d := range drops {
		for _, v := range []string{"not-an-email", "Atlantis", "nonbinary", "31/02"} {
			if strings.Contains(d.Reason, v) || strings.Contains(d.Field, v) {
				t.Errorf("drop %v carries the value", d)
			}
		}
	}
}

func TestNormalizePhoneCountry(t *testing.T) {
	now := func() time.Time { return testNow }
	cases := []struct {
		name    string
		c       Customer
		opt     Options
		want    string // E.164, "" when dropped
		dropped bool
	}{
		{"customer's country", Customer{Phones: []string{"030 1234567"}, Country: "Germany"},
			Options{DefaultCountry: "US", Now: now}, "+49301234567", false},
		{"default country when the customer has none", Customer{Phones: []string{"(650) 555-1212"}},
			Options{DefaultCountry: "us", Now: now}, "+16505551212", false},
		{"default country when the customer's is unknown", Customer{Phones: []string{"(650) 555-1212"}, Country: "Narnia"},
			Options{DefaultCountry: "us", Now: now}, "+16505551212", false},
		{"no country at all: dropped, not guessed", Customer{Phones: []string{"6505551212"}},
			Options{Now: now}, "", true},
		{"international number needs no country", Customer{Phones: []string{"+33 1 42 68 53 00"}},
			Options{Now: now}, "+33142685300", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, drops := Normalize(c.c, c.opt)
			if c.dropped {
				if len(p.TikTok.Phones) != 0 || len(drops) == 0 || drops[len(drops)-1].Field != "phone" {
					t.Errorf("phones %v, drops %v; want a phone drop", p.TikTok.Phones, drops)
				}
				return
			}
			if !slices.Equal(p.TikTok.Phones, []string{Hash(c.want)}) || !slices.Equal(p.Google.Phones, []string{Hash(c.want)}) ||
				!slices.Equal(p.Meta.Phones, []string{Hash(MetaPhone(c.want))}) {
				t.Errorf("phone hashes do not match %s", c.want)
			}
		})
	}
}

func TestNormalizeDefaultCountryFillsAddressesOnly(t *testing.T) {
	p, _ := Normalize(Customer{Emails: []string{"a@example.com"}}, testOptions)
	if p.Meta.Country != "" || p.Google.Country != "" {
		t.Error("a customer with no address got the default country")
	}
	p, _ = Normalize(Customer{City: "Austin"}, testOptions)
	if p.Meta.Country != Hash("us") || p.TikTok.Country != "us" || p.Google.Country != "US" {
		t.Errorf("address without country: %+v", p)
	}
}

func TestNormalizePassesHashedValuesThrough(t *testing.T) {
	em, ph, fn, city, zip := Hash("a@example.com"), Hash("+16505551212"), Hash("mary"), Hash("austin"), Hash("78701")
	c := Customer{
		Emails:    []string{strings.ToUpper(em)},
		Phones:    []string{" " + ph + " "},
		FirstName: fn,
		City:      strings.ToUpper(city),
		Zip:       zip,
		Gender:    Hash("f"),
		Street:    Hash("1 main st"),
	}
	p, drops := Normalize(c, testOptions)
	for _, prof := range []event.Profile{p.Meta, p.TikTok, p.Google} {
		if !slices.Equal(prof.Emails, []string{em}) || !slices.Equal(prof.Phones, []string{ph}) || prof.FirstName != fn {
			t.Errorf("hashed email/phone/name not passed through lower-cased: %+v", prof)
		}
	}
	if p.Meta.City != city || p.TikTok.City != "" || p.Google.City != "" {
		t.Errorf("hashed city: Meta %q TikTok %q Google %q; want only Meta", p.Meta.City, p.TikTok.City, p.Google.City)
	}
	if p.Meta.Zip != zip || p.TikTok.Zip != zip || p.Google.Zip != "" {
		t.Errorf("hashed zip: Meta %q TikTok %q Google %q; want Meta and TikTok", p.Meta.Zip, p.TikTok.Zip, p.Google.Zip)
	}
	if p.Meta.Gender != Hash("f") || p.Google.Street != Hash("1 main st") || p.Meta.Street != "" {
		t.Errorf("hashed gender/street misplaced: %+v", p)
	}
	want := []Drop{{"city", ErrHashedNotPlain.Error()}, {"zip", ErrHashedNotPlain.Error()}}
	if !reflect.DeepEqual(drops, want) {
		t.Errorf("drops = %v, want %v", drops, want)
	}
}

func TestNormalizeGmailAliasWithoutName(t *testing.T) {
	p, drops := Normalize(Customer{Emails: []string{"+promo@gmail.com"}}, testOptions)
	if !slices.Equal(p.Meta.Emails, []string{Hash("+promo@gmail.com")}) || len(p.Google.Emails) != 0 {
		t.Errorf("Meta %v, Google %v; want Meta only", p.Meta.Emails, p.Google.Emails)
	}
	if !reflect.DeepEqual(drops, []Drop{{"email", ErrInvalidEmail.Error()}}) {
		t.Errorf("drops = %v", drops)
	}
}

func TestNormalizeCapsAndDeduplicatesEmails(t *testing.T) {
	c := Customer{Emails: []string{"A@example.com", "a@example.com ", "b@example.com", "c@example.com",
		"d@example.com", "e@example.com", "f@example.com"}}
	p, drops := Normalize(c, testOptions)
	if len(p.Meta.Emails) != 5 || p.Meta.Emails[0] != Hash("a@example.com") || p.Meta.Emails[4] != Hash("e@example.com") {
		t.Errorf("emails = %d, want the first 5 distinct", len(p.Meta.Emails))
	}
	if !reflect.DeepEqual(drops, []Drop{{"email", ErrTooManyValues.Error()}}) {
		t.Errorf("drops = %v", drops)
	}
}

func TestNormalizeEmptyCustomer(t *testing.T) {
	p, drops := Normalize(Customer{Emails: []string{"", "  "}, Phones: []string{" "}, FirstName: " "}, testOptions)
	if !p.Meta.IsZero() || !p.TikTok.IsZero() || !p.Google.IsZero() || len(drops) != 0 {
		t.Errorf("empty customer gave %+v, %v", p, drops)
	}
}

func TestNormalizeUsesPhoneCache(t *testing.T) {
	cache := NewPhoneCache(2)
	opt := testOptions
	opt.Phones = cache
	want, _ := Normalize(fullCustomer(), testOptions)
	for range 3 {
		got, _ := Normalize(fullCustomer(), opt)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("cached result differs: %+v", got)
		}
	}
	for _, ph := range []string{"+442079460958", "+33142685300", "bad"} {
		Normalize(Customer{Phones: []string{ph}}, opt)
	}
	if len(cache.entries) > 2 {
		t.Errorf("cache grew to %d entries, bound is 2", len(cache.entries))
	}
	_, drops := Normalize(Customer{Phones: []string{"bad"}}, opt)
	if len(drops) != 1 || drops[0].Field != "phone" {
		t.Errorf("cached invalid phone not dropped again: %v", drops)
	}
	for k, v := range cache.entries {
		for _, s := range []string{v.meta, v.e164} {
			if s != "" && !isLowerHex64(s) {
				t.Errorf("cache holds a non-hash %q under %x", s, k)
			}
		}
	}
}

func TestMerge(t *testing.T) {
	old := Profiles{Meta: event.Profile{Emails: []string{"e1", "e2"}, Phones: []string{"p1"}, FirstName: "fOld", City: "cOld"}}
	newer := Profiles{Meta: event.Profile{Emails: []string{"e3", "e1"}, FirstName: "fNew"}, Google: event.Profile{Zip: "z"}}
	got := old.Merge(newer)
	want := Profiles{
		Meta:   event.Profile{Emails: []string{"e3", "e1", "e2"}, Phones: []string{"p1"}, FirstName: "fNew", City: "cOld"},
		Google: event.Profile{Zip: "z"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Merge\n got %+v\nwant %+v", got, want)
	}
	if !slices.Equal(old.Meta.Emails, []string{"e1", "e2"}) {
		t.Error("Merge modified the receiver")
	}
	many := Profiles{TikTok: event.Profile{Phones: []string{"a", "b", "c", "d"}}}
	got = many.Merge(Profiles{TikTok: event.Profile{Phones: []string{"x", "y", "a"}}})
	if !slices.Equal(got.TikTok.Phones, []string{"x", "y", "a", "b", "c"}) {
		t.Errorf("merged phones = %v, want newest first, capped at 5", got.TikTok.Phones)
	}
}

func TestCoverageOfFullCustomer(t *testing.T) {
	p, _ := Normalize(fullCustomer(), testOptions)
	u := event.User{
		ExternalID: ExternalID("k3j5h2g7f8d9s0a1q2w3e4r5"), IP: "2001:db8::1", UserAgent: "Mozilla/5.0",
		Locale: "en-US", FBC: "fb.1.1554763741205.AbCd", FBP: "fb.1.1596403881668.1116446470",
		TTCLID: "E.C.P.abc", TTP: "2F7h37YkS1j57AYSKTI7IHhJPYH", GCLID: "Cj0KCQ",
		Meta: p.Meta, TikTok: p.TikTok, Google: p.Google,
	}
	for _, c := range []struct {
		platform string
		want     []string
		n        int
	}{
		{platform.Meta, MetaSignals, 15}, {platform.TikTok, TikTokSignals, 12}, {platform.Google, GoogleSignals, 9},
	} {
		cov := CoverageOf(c.platform, u)
		if len(c.want) != c.n || !slices.Equal(cov.Present, c.want) || len(cov.Missing) != 0 || cov.Platform != c.platform {
			t.Errorf("%s coverage = %+v, want all %d signals", c.platform, cov, c.n)
		}
	}
}

func TestCoverageOfPartialUser(t *testing.T) {
	u := event.User{IP: "192.0.2.1", UserAgent: "UA", TikTok: event.Profile{State: "ca"}}
	cov := CoverageOf(platform.TikTok, u)
	if !slices.Equal(cov.Present, []string{"ip", "user_agent", "address"}) || len(cov.Missing) != 9 {
		t.Errorf("TikTok coverage = %+v", cov)
	}
	cov = CoverageOf(platform.Meta, u)
	if !slices.Equal(cov.Present, []string{"client_ip_address", "client_user_agent"}) || len(cov.Missing) != 13 {
		t.Errorf("Meta coverage = %+v", cov)
	}
	if cov := CoverageOf("bing", u); len(cov.Present)+len(cov.Missing) != 0 {
		t.Errorf("unknown platform coverage = %+v", cov)
	}
}

func TestNormalizeHostileInput(t *testing.T) {
	big := strings.Repeat("A\u0301\x00", 1<<18) // about 1 MB of letters, combining marks and NULs
	c := Customer{Emails: []string{big}, Phones: []string{big}, FirstName: big, LastName: big, DateOfBirth: big,
		Gender: big, Street: big, City: big, State: big, Zip: big, Country: big}
	opt := testOptions
	opt.Phones = NewPhoneCache(8)
	p, drops := Normalize(c, opt)
	if !p.Meta.IsZero() || !p.TikTok.IsZero() || !p.Google.IsZero() {
		t.Errorf("1 MB values produced a profile: %+v", p)
	}
	if len(drops) != 11 {
		t.Errorf("drops = %v, want one per field", drops)
	}
	for _, d := range drops {
		if d.Reason != ErrTooLong.Error() {
			t.Errorf("drop %v, want %q", d, ErrTooLong)
		}
	}

	ctrl := Customer{FirstName: "Ma\x00ry\x1b[31m", City: "Aus\ttin\r\n", Emails: []string{"a@example.com\x00"}}
	p, drops = Normalize(ctrl, testOptions)
	if p.Meta.FirstName != Hash("mary31m") || p.TikTok.City != "austin" {
		t.Errorf("control characters not removed: %+v", p.TikTok)
	}
	if len(p.Meta.Emails) != 0 || len(drops) != 1 || drops[0].Field != "email" {
		t.Errorf("email with a NUL: %v, drops %v", p.Meta.Emails, drops)
	}
}

func TestPhoneCacheConcurrentUse(t *testing.T) {
	cache := NewPhoneCache(4)
	opt := testOptions
	opt.Phones = cache
	phones := []string{"(650) 555-1212", "+44 20 7946 0958", "+33 1 42 68 53 00", "030 1234567", "12", "+1 212 555 0100"}
	done := make(chan bool)
	for g := range 4 {
		go func() {
			defer func() { done <- true }()
			for i := range 50 {
				ph := phones[(g+i)%len(phones)]
				got, _ := Normalize(Customer{Phones: []string{ph}}, opt)
				want, _ := Normalize(Customer{Phones: []string{ph}}, testOptions)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("cached %v differs from uncached %v", got, want)
					return
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
}
