package signal

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/nyaruka/phonenumbers"
)

// This file is a fast path for phonenumbers.Parse followed by the validity check of
// NormalizePhone, for the shapes customers type: ASCII digits with an optional leading "+",
// spaces, dashes, dots, slashes and parentheses. For those, libphonenumber's parser reduces to a
// few steps on the digits alone (the country calling code after a "+", the default region's
// calling code written without one, the national prefix), which are done here with
// libphonenumber's own metadata and in its order; its validity decision is its metadata patterns,
// run by digitPatterns. Anything else — letters, extensions, "00" and other international
// prefixes, a "+" not followed by a known calling code, regions whose metadata uses features
// not implemented here — is left to phonenumbers itself (errNeedsFullParse). The differential test and
// fuzz target in phone_fast_test.go hold the two paths to the same answers.

// Validity patterns of a phoneMetadata's digitPatterns, in getNumberTypeHelper's order.
const (
	patGeneral = iota
	patPremiumRate
	patTollFree
	patSharedCost
	patVoip
	patPersonalNumber
	patPager
	patUAN
	patVoicemail
	patFixedLine
	patMobile
	patLeadingDigits // a prefix pattern: the region's share of a shared calling code
	patIDD           // a prefix pattern: the international prefix dialled from the region
	patCount
)

// phoneMetadata is one region's (or non-geographic entity's) libphonenumber metadata, prepared
// for the fast path.
type phoneMetadata struct {
	md          *phonenumbers.PhoneMetadata
	countryCode int
	ccDigits    string // countryCode in decimal
	descs       [patMobile + 1]*phonenumbers.PhoneNumberDesc
	patterns    *digitPatterns
	// nationalPrefix is `^(?:national_prefix_for_parsing)`, nil when the region has none.
	nationalPrefix *regexp.Regexp
	// nationalPrefixLiteral is the prefix when nationalPrefix is a plain digit string without
	// groups, which is then stripped without running the regular expression.
	nationalPrefixLiteral string
}

// phoneMetadataIndex holds every region's phoneMetadata, built on first use of each.
var phoneMetadataIndex = sync.OnceValue(func() *phoneIndex {
	idx := &phoneIndex{regions: make(map[string]*lazyPhoneMetadata), nonGeo: make(map[int]*lazyPhoneMetadata)}
	coll, err := phonenumbers.MetadataCollection()
	if err != nil {
		return idx // no fast path: every number goes to phonenumbers.Parse
	}
	for _, md := range coll.GetMetadata() {
		l := &lazyPhoneMetadata{md: md}
		if md.GetId() == "001" {
			idx.nonGeo[int(md.GetCountryCode())] = l
		} else {
			idx.regions[md.GetId()] = l
		}
	}
	return idx
})

type phoneIndex struct {
	regions map[string]*lazyPhoneMetadata
	nonGeo  map[int]*lazyPhoneMetadata
}

type lazyPhoneMetadata struct {
	md   *phonenumbers.PhoneMetadata
	once sync.Once
	pm   *phoneMetadata // nil when the region's metadata is beyond the fast path
}

func (l *lazyPhoneMetadata) get() *phoneMetadata {
	if l == nil {
		return nil
	}
	l.once.Do(func() { l.pm = newPhoneMetadata(l.md) })
	return l.pm
}

// forRegion returns the metadata of a region code ("US"), nil when unknown or unsupported.
func (idx *phoneIndex) forRegion(region string) *phoneMetadata {
	return idx.regions[region].get()
}

// forRegionOrCallingCode is libphonenumber's getMetadataForRegionOrCallingCode.
func (idx *phoneIndex) forRegionOrCallingCode(cc int, region string) *phoneMetadata {
	if region == "001" {
		return idx.nonGeo[cc].get()
	}
	return idx.regions[region].get()
}

func newPhoneMetadata(md *phonenumbers.PhoneMetadata) *phoneMetadata {
	pm := &phoneMetadata{
		md:          md,
		countryCode: int(md.GetCountryCode()),
		ccDigits:    strconv.Itoa(int(md.GetCountryCode())),
		descs: [...]*phonenumbers.PhoneNumberDesc{
			md.GetGeneralDesc(), md.GetPremiumRate(), md.GetTollFree(), md.GetSharedCost(),
			md.GetVoip(), md.GetPersonalNumber(), md.GetPager(), md.GetUan(), md.GetVoicemail(),
			md.GetFixedLine(), md.GetMobile(),
		},
	}
	// libphonenumber dereferences every description and indexes the general one's possible
	// lengths; metadata without them is left to it.
	for _, d := range pm.descs {
		if d == nil {
			return nil
		}
	}
	if len(pm.descs[patGeneral].PossibleLength) == 0 {
		return nil
	}
	patterns := make([]string, patCount)
	prefix := make([]bool, patCount)
	for i, d := range pm.descs {
		patterns[i] = d.GetNationalNumberPattern()
	}
	patterns[patLeadingDigits], prefix[patLeadingDigits] = md.GetLeadingDigits(), true
	patterns[patIDD], prefix[patIDD] = md.GetInternationalPrefix(), true
	var err error
	if pm.patterns, err = newDigitPatterns(patterns, prefix); err != nil {
		return nil
	}
	if npp := md.GetNationalPrefixForParsing(); npp != "" {
		re, err := regexp.Compile("^(?:" + npp + ")")
		if err != nil {
			return nil
		}
		pm.nationalPrefix = re
		if isDigits(npp) {
			pm.nationalPrefixLiteral = npp
		}
	}
	return pm
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// match runs the region's patterns over digits; ok false means the caller must use phonenumbers.
func (pm *phoneMetadata) match(digits string) (uint32, bool) {
	return pm.patterns.match(digits)
}

// matchesDesc is libphonenumber's isNumberMatchingDesc given the pattern results of nsn.
func (pm *phoneMetadata) matchesDesc(matched uint32, i int, nsn string) bool {
	if matched&(1<<i) == 0 {
		return false
	}
	lengths := pm.descs[i].PossibleLength
	return len(lengths) == 0 || containsLength(lengths, len(nsn))
}

func containsLength(lengths []int32, n int) bool {
	for _, l := range lengths {
		if int(l) == n {
			return true
		}
	}
	return false
}

// valid is getNumberTypeHelper(nsn, md) != UNKNOWN, the core of IsValidNumberForRegion.
func (pm *phoneMetadata) valid(nsn string) (valid, ok bool) {
	matched, ok := pm.match(nsn)
	if !ok {
		return false, false
	}
	return pm.validMatched(matched, nsn), true
}

func (pm *phoneMetadata) validMatched(matched uint32, nsn string) bool {
	if !pm.matchesDesc(matched, patGeneral, nsn) {
		return false
	}
	for i := patPremiumRate; i <= patFixedLine; i++ {
		if pm.matchesDesc(matched, i, nsn) {
			return true
		}
	}
	return !pm.md.GetSameMobileAndFixedLinePattern() && pm.matchesDesc(matched, patMobile, nsn)
}

// lengthResult is libphonenumber's testNumberLength(number, metadata, UNKNOWN).
func (pm *phoneMetadata) lengthResult(n int) phonenumbers.ValidationResult {
	gen := pm.descs[patGeneral]
	lengths := gen.PossibleLength
	if lengths[0] == -1 {
		return phonenumbers.INVALID_LENGTH
	}
	if containsLength(gen.PossibleLengthLocalOnly, n) {
		return phonenumbers.IS_POSSIBLE_LOCAL_ONLY
	}
	switch {
	case int(lengths[0]) == n:
		return phonenumbers.IS_POSSIBLE
	case int(lengths[0]) > n:
		return phonenumbers.TOO_SHORT
	case int(lengths[len(lengths)-1]) < n:
		return phonenumbers.TOO_LONG
	case containsLength(lengths[1:], n):
		return phonenumbers.IS_POSSIBLE
	}
	return phonenumbers.INVALID_LENGTH
}

// stripNationalPrefix is libphonenumber's maybeStripNationalPrefixAndCarrierCode without the
// carrier code, which Parse discards. ok is false when the general pattern needs phonenumbers.
func (pm *phoneMetadata) stripNationalPrefix(number string) (string, bool) {
	if number == "" || pm.nationalPrefix == nil {
		return number, true
	}
	var groups []int
	if lit := pm.nationalPrefixLiteral; lit != "" {
		if !strings.HasPrefix(number, lit) {
			return number, true
		}
		groups = []int{0, len(lit)}
	} else if groups = pm.nationalPrefix.FindStringSubmatchIndex(number); groups == nil {
		return number, true
	}
	viable := func(s string) (bool, bool) {
		m, ok := pm.match(s)
		return m&(1<<patGeneral) != 0, ok
	}
	viableOriginal, ok := viable(number)
	if !ok {
		return "", false
	}
	numGroups := len(groups)/2 - 1
	rule := pm.md.GetNationalPrefixTransformRule()
	if rule == "" || groups[numGroups*2] < 0 {
		rest := number[groups[1]:]
		if viableOriginal {
			v, ok := viable(rest)
			if !ok {
				return "", false
			}
			if !v {
				return number, true
			}
		}
		return rest, true
	}
	transformed := pm.nationalPrefix.ReplaceAllString(number, rule)
	if viableOriginal {
		v, ok := viable(transformed)
		if !ok {
			return "", false
		}
		if !v {
			return number, true
		}
	}
	return transformed, true
}

// errNeedsFullParse is normalizePhoneFast's answer for input it leaves to phonenumbers.
var errNeedsFullParse = errors.New("signal: phone number needs phonenumbers' parser")

// normalizePhoneFast is NormalizePhone's parse and validation for common shapes of input (s is
// trimmed, region upper-case or "ZZ"). It returns errNeedsFullParse when the input is not one of
// them, or when the answer needs phonenumbers for another reason.
func normalizePhoneFast(s, region string) (e164 string, err error) {
	if len(s) > 250 { // phonenumbers' MAX_INPUT_STRING_LENGTH
		return "", errNeedsFullParse
	}
	var buf [250]byte
	digits := buf[:0]
	plus := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case '0' <= c && c <= '9':
			digits = append(digits, c)
		case c == '+' && !plus && len(digits) == 0:
			plus = true
		case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' || c == '/':
		default:
			return "", errNeedsFullParse
		}
	}
	if len(digits) < 3 {
		// phonenumbers reads two digits alone as a short number, and fewer as none.
		return "", errNeedsFullParse
	}
	d := string(digits)
	idx := phoneMetadataIndex()
	var home *phoneMetadata // the default region's metadata
	if region != "ZZ" {
		if home = idx.forRegion(region); home == nil {
			return "", errNeedsFullParse
		}
	} else if !plus {
		return "", ErrNoPhoneCountry
	}

	var cc int
	var national string
	var meta *phoneMetadata // metadata the national number is read with
	if plus {
		if d[0] == '0' {
			return "", errNeedsFullParse
		}
		for i := 1; i <= 3; i++ {
			c, _ := strconv.Atoi(d[:i])
			if len(phonenumbers.GetRegionCodesForCountryCode(c)) > 0 {
				cc, national = c, d[i:]
				break
			}
		}
		if cc == 0 {
			return "", errNeedsFullParse
		}
	} else {
		whole, ok := home.match(d)
		if !ok || whole&(1<<patIDD) != 0 {
			return "", errNeedsFullParse
		}
		if strings.HasPrefix(d, home.ccDigits) {
			// Maybe the default region's calling code written without "+": libphonenumber takes
			// it as one when that makes a valid-looking number out of an invalid-looking one, or
			// when the number is too long otherwise.
			potential, ok := home.stripNationalPrefix(d[len(home.ccDigits):])
			if !ok {
				return "", errNeedsFullParse
			}
			rest, ok := home.match(potential)
			if !ok {
				return "", errNeedsFullParse
			}
			fullValid, nationalValid := whole&(1<<patGeneral) != 0, rest&(1<<patGeneral) != 0
			if (!fullValid && nationalValid) || home.lengthResult(len(d)) == phonenumbers.TOO_LONG {
				cc, national = home.countryCode, potential
			}
		}
		if cc == 0 {
			cc, national, meta = home.countryCode, d, home
		}
	}
	if meta == nil {
		if main := phonenumbers.GetRegionCodeForCountryCode(cc); main == region {
			meta = home
		} else if meta = idx.forRegionOrCallingCode(cc, main); meta == nil {
			return "", errNeedsFullParse
		}
	}
	if len(national) < 2 {
		return "", ErrInvalidPhone
	}
	stripped, ok := meta.stripNationalPrefix(national)
	if !ok {
		return "", errNeedsFullParse
	}
	switch meta.lengthResult(len(stripped)) {
	case phonenumbers.TOO_SHORT, phonenumbers.IS_POSSIBLE_LOCAL_ONLY, phonenumbers.INVALID_LENGTH:
	default:
		national = stripped
	}
	if len(national) < 2 || len(national) > 17 {
		return "", ErrInvalidPhone
	}

	valid, ok := validPhoneFast(idx, cc, national, region, home)
	if !ok {
		return "", errNeedsFullParse
	}
	if !valid {
		return "", ErrInvalidPhone
	}
	e164 = "+" + strconv.Itoa(cc) + national
	if !isE164(e164) {
		return "", ErrInvalidPhone
	}
	return e164, nil
}

// validPhoneFast is validPhone for a parsed number (calling code cc, national significant number
// nsn): valid for the customer's region, else phonenumbers.IsValidNumber.
func validPhoneFast(idx *phoneIndex, cc int, nsn, region string, home *phoneMetadata) (valid, ok bool) {
	if home != nil && cc == home.countryCode {
		if valid, ok = home.valid(nsn); !ok || valid {
			return valid, ok
		}
	}
	// IsValidNumber: the number's region, then validity for that region.
	regions := phonenumbers.GetRegionCodesForCountryCode(cc)
	var numberRegion string
	switch len(regions) {
	case 0:
		return false, true
	case 1:
		numberRegion = regions[0]
	default:
		for _, r := range regions {
			pm := idx.forRegion(r)
			if pm == nil {
				return false, false
			}
			m, ok := pm.match(nsn)
			if !ok {
				return false, false
			}
			if pm.md.GetLeadingDigits() != "" {
				if m&(1<<patLeadingDigits) != 0 {
					numberRegion = r
					break
				}
			} else if pm.validMatched(m, nsn) {
				numberRegion = r
				break
			}
		}
		if numberRegion == "" {
			return false, true
		}
	}
	pm := idx.forRegionOrCallingCode(cc, numberRegion)
	if pm == nil {
		return false, false
	}
	if numberRegion != "001" && cc != pm.countryCode {
		return false, true
	}
	return pm.valid(nsn)
}
