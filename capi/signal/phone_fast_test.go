package signal

import (
	"maps"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// samePhoneAnswer checks that the fast path, when it answers, answers as phonenumbers does, and
// reports whether it answered.
func samePhoneAnswer(t testing.TB, s, region string) bool {
	t.Helper()
	got, gotErr := normalizePhoneFast(s, region)
	if gotErr == errNeedsFullParse {
		return false
	}
	want, wantErr := normalizePhoneFull(s, region)
	if got != want || gotErr != wantErr {
		t.Errorf("region %s, %q: fast path gives %q, %v; phonenumbers %q, %v", region, s, got, gotErr, want, wantErr)
	}
	return true
}

var phoneNumberTypes = []phonenumbers.PhoneNumberType{phonenumbers.FIXED_LINE, phonenumbers.MOBILE,
	phonenumbers.TOLL_FREE, phonenumbers.PREMIUM_RATE, phonenumbers.SHARED_COST, phonenumbers.VOIP,
	phonenumbers.PERSONAL_NUMBER, phonenumbers.PAGER, phonenumbers.UAN, phonenumbers.VOICEMAIL}

// exampleNumbers returns every example number libphonenumber's metadata gives, each with the
// region it belongs to ("001" for non-geographic entities).
func exampleNumbers() (nums []*phonenumbers.PhoneNumber, regions []string) {
	all := slices.Sorted(maps.Keys(phonenumbers.GetSupportedRegions()))
	for _, r := range all {
		for _, typ := range phoneNumberTypes {
			if n := phonenumbers.GetExampleNumberForType(r, typ); n != nil {
				nums, regions = append(nums, n), append(regions, r)
			}
		}
	}
	for _, cc := range slices.Sorted(maps.Keys(phonenumbers.GetSupportedGlobalNetworkCallingCodes())) {
		if n := phonenumbers.GetExampleNumberForNonGeoEntity(cc); n != nil {
			nums, regions = append(nums, n), append(regions, "001")
		}
	}
	return nums, regions
}

// writtenForms returns the ways a customer may type n: libphonenumber's international, national
// and E.164 formats, with other separators, without them, with the area code in parentheses,
// without the "+", with a national prefix before the calling code, and with the last digit
// changed, dropped or doubled (mostly invalid numbers).
func writtenForms(n *phonenumbers.PhoneNumber) []string {
	intl := phonenumbers.Format(n, phonenumbers.INTERNATIONAL)
	national := phonenumbers.Format(n, phonenumbers.NATIONAL)
	e164 := phonenumbers.Format(n, phonenumbers.E164)
	nsn := phonenumbers.GetNationalSignificantNumber(n)
	cc := strconv.Itoa(int(n.GetCountryCode()))
	forms := []string{intl, national, e164, e164[1:], nsn, "0" + nsn, "1" + nsn, cc + "0" + nsn,
		"00" + e164[1:], "011" + e164[1:], "+" + cc + " (0) " + nsn}
	for _, f := range []string{intl, national} {
		forms = append(forms,
			strings.ReplaceAll(f, " ", "-"), strings.ReplaceAll(f, " ", "."), strings.ReplaceAll(f, " ", ""),
			strings.ReplaceAll(f, " ", "/"), " "+f+" ")
		if i := strings.IndexByte(f, ' '); i > 0 {
			if j := strings.IndexByte(f[i+1:], ' '); j > 0 {
				forms = append(forms, f[:i]+" ("+f[i+1:i+1+j]+")"+f[i+1+j:])
			}
			forms = append(forms, "("+f[:i]+")"+f[i:])
		}
	}
	last := e164[len(e164)-1]
	forms = append(forms, e164[:len(e164)-1]+string('0'+(last-'0'+1)%10), e164[:len(e164)-1], e164+string(last),
		national+string(last), national[:len(national)-1])
	return forms
}

func TestPhoneFastPathAgreesWithPhonenumbersOnExamples(t *testing.T) {
	nums, regions := exampleNumbers()
	if len(nums) < 1000 {
		t.Fatalf("only %d example numbers in libphonenumber's metadata", len(nums))
	}
	all := slices.Sorted(maps.Keys(phonenumbers.GetSupportedRegions()))
	var total, fast, validFast int
	for i, n := range nums {
		// The number's own region, no region, and one other region (some of them sharing its
		// calling code), so numbers are read both at home and from abroad.
		readIn := []string{"ZZ", all[i%len(all)]}
		if regions[i] != "001" {
			readIn = append(readIn, regions[i])
		}
		if shared := phonenumbers.GetRegionCodesForCountryCode(int(n.GetCountryCode())); len(shared) > 1 {
			readIn = append(readIn, shared[i%len(shared)])
		}
		for _, s := range writtenForms(n) {
			for _, r := range readIn {
				total++
				if samePhoneAnswer(t, s, r) {
					fast++
					if _, err := normalizePhoneFast(s, r); err == nil {
						validFast++
					}
				}
			}
		}
	}
	t.Logf("%d example numbers, %d readings, %d by the fast path (%d valid)", len(nums), total, fast, validFast)
	// The fast path exists for the common shapes: most readings must take it.
	if fast < total*3/4 {
		t.Errorf("fast path answered %d of %d readings; want at least three quarters", fast, total)
	}
}

func TestPhoneFastPathAgreesWithPhonenumbersOnRandomDigits(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 14))
	regions := slices.Sorted(maps.Keys(phonenumbers.GetSupportedRegions()))
	regions = append(regions, "ZZ")
	n := 30000
	if testing.Short() {
		n = 3000
	}
	seps := []string{"", "", "", " ", "-", ".", "(", ")", "/"}
	fast := 0
	for range n {
		var b strings.Builder
		if rng.IntN(3) == 0 {
			b.WriteByte('+')
		}
		for range 3 + rng.IntN(16) {
			b.WriteByte(byte('0' + rng.IntN(10)))
			b.WriteString(seps[rng.IntN(len(seps))])
		}
		if samePhoneAnswer(t, b.String(), regions[rng.IntN(len(regions))]) {
			fast++
		}
	}
	if fast < n/2 {
		t.Errorf("fast path answered %d of %d random numbers; want at least half", fast, n)
	}
}

// TestPhoneFastPathLeavesUnusualInputToPhonenumbers lists shapes the fast path must not read
// itself; NormalizePhone still answers them through phonenumbers.
func TestPhoneFastPathLeavesUnusualInputToPhonenumbers(t *testing.T) {
	for _, c := range []struct{ name, in, region, want string }{
		{"vanity letters", "1-800-FLOWERS", "US", "+18003569377"},
		{"extension", "(650) 555-1212 ext. 12", "US", "+16505551212"},
		{"international prefix 00", "0044 20 7946 0958", "DE", "+442079460958"},
		{"international prefix 011", "011 44 20 7946 0958", "US", "+442079460958"},
		{"full-width digits", "６５０５５５１２１２", "US", "+16505551212"},
		{"tel URI", "tel:+1-650-555-1212", "ZZ", "+16505551212"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := normalizePhoneFast(c.in, c.region); err != errNeedsFullParse {
				t.Errorf("fast path read %q itself", c.in)
			}
			if got, err := NormalizePhone(c.in, c.region); got != c.want || err != nil {
				t.Errorf("NormalizePhone(%q, %s) = %q, %v; want %q", c.in, c.region, got, err, c.want)
			}
		})
	}
}

// TestDigitPatternsMatchLikeRegexp runs every region's metadata patterns both as digitPatterns
// and as the regular expressions libphonenumber compiles from them, over each region's example
// numbers and random digit strings.
func TestDigitPatternsMatchLikeRegexp(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 71))
	idx := phoneMetadataIndex()
	check := func(name string, pm *phoneMetadata) {
		if pm == nil {
			t.Errorf("%s: no fast path metadata", name)
			return
		}
		var res [patCount]*regexp.Regexp
		for i, d := range pm.descs {
			res[i] = regexp.MustCompile("^(?:" + d.GetNationalNumberPattern() + ")$")
		}
		res[patLeadingDigits] = regexp.MustCompile("^(?:" + pm.md.GetLeadingDigits() + ")")
		res[patIDD] = regexp.MustCompile("^(?:" + pm.md.GetInternationalPrefix() + ")")
		var inputs []string
		for _, d := range pm.descs {
			if ex := d.GetExampleNumber(); ex != "" {
				inputs = append(inputs, ex, ex[:len(ex)-1], ex+"0")
			}
		}
		for range 200 {
			b := make([]byte, rng.IntN(18))
			for i := range b {
				b[i] = byte('0' + rng.IntN(10))
			}
			inputs = append(inputs, string(b))
		}
		for _, in := range inputs {
			got, ok := pm.match(in)
			if !ok {
				t.Fatalf("%s: automaton full after %q", name, in)
			}
			for i, re := range res {
				if want := re.MatchString(in); want != (got&(1<<i) != 0) {
					t.Errorf("%s pattern %d %q on %q: digitPatterns %v, regexp %v", name, i, re, in, !want, want)
				}
			}
		}
	}
	for _, r := range slices.Sorted(maps.Keys(idx.regions)) {
		check(r, idx.forRegion(r))
	}
	for _, cc := range slices.Sorted(maps.Keys(idx.nonGeo)) {
		check("+"+strconv.Itoa(cc), idx.nonGeo[cc].get())
	}
}

// TestNormalizePhoneConcurrently reads numbers of every region from several goroutines while the
// regions' automata are still being built (run it alone, with -race, to see the building).
func TestNormalizePhoneConcurrently(t *testing.T) {
	nums, regions := exampleNumbers()
	type reading struct{ in, region, want string }
	var readings []reading
	for i, n := range nums {
		if regions[i] == "001" || i%3 != 0 {
			continue
		}
		in := phonenumbers.Format(n, phonenumbers.NATIONAL)
		want, _ := normalizePhoneFull(in, regions[i])
		readings = append(readings, reading{in, regions[i], want})
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for j := range readings {
				r := readings[(j+g*len(readings)/4)%len(readings)]
				if got, _ := NormalizePhone(r.in, r.region); got != r.want {
					t.Errorf("NormalizePhone(%q, %s) = %q; want %q", r.in, r.region, got, r.want)
				}
			}
		})
	}
	wg.Wait()
}

func FuzzPhoneFastPath(f *testing.F) {
	for _, s := range []string{"(650) 555-1212", "+44 20 7946 0958", "030 1234567", "1 650 555 1212",
		"+1 (268) 464-1234", "0176 12345678", "+800 1234 5678", "11 91234-5678", "+0 650", "++1 650 555 1212"} {
		f.Add(s, "US")
		f.Add(s, "de")
		f.Add(s, "")
	}
	f.Fuzz(func(t *testing.T, s, country string) {
		samePhoneAnswer(t, trimSpace(s), phoneRegion(country))
	})
}
