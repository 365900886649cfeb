package signal

import (
	"strings"
	"sync"

	"golang.org/x/text/language"
	"golang.org/x/text/language/display"
)

// countryTable maps folded country names and codes (foldKey) to lower-case ISO 3166-1 alpha-2 codes.
// It is built once from CLDR (golang.org/x/text): the alpha-2 and alpha-3 codes of every country,
// and its name in English, German, French, Spanish, Italian, Portuguese and Dutch — about 250
// countries — plus the common English variants CLDR does not list.
var countryTable = sync.OnceValue(func() map[string]string {
	table := make(map[string]string, 4096)
	dicts := []*display.Dictionary{display.English, display.German, display.French, display.Spanish,
		display.Italian, display.Portuguese, display.Dutch}
	var code [2]byte
	for a := byte('A'); a <= 'Z'; a++ {
		for b := byte('A'); b <= 'Z'; b++ {
			code[0], code[1] = a, b
			r, err := language.ParseRegion(string(code[:]))
			if err != nil || !r.IsCountry() || r.Canonicalize().String() != string(code[:]) ||
				notISO[r.String()] || display.English.Regions().Name(r) == "" {
				continue // not a current ISO 3166-1 country (historical codes have no name)
			}
			cc := strings.ToLower(r.String())
			table[cc] = cc
			if iso3 := r.ISO3(); len(iso3) == 3 {
				table[strings.ToLower(iso3)] = cc
			}
			for _, d := range dicts {
				name := d.Regions().Name(r)
				if name == "" {
					continue
				}
				addCountryName(table, name, cc)
				// CLDR writes "St. Kitts & Nevis", "Bosnia & Herzegovina"; shoppers write them out.
				addCountryName(table, strings.NewReplacer("&", "and", "St.", "Saint").Replace(name), cc)
				// "Myanmar (Burma)", "Congo - Kinshasa": each part alone names the country too,
				// unless the part is ambiguous (handled by the variants below overriding it).
				if i := strings.IndexAny(name, "(-"); i > 0 && d == display.English {
					addCountryName(table, name[:i], cc)
				}
			}
		}
	}
	for name, cc := range countryVariants {
		table[foldKey(name)] = cc
	}
	return table
})

// notISO are codes CLDR counts as countries that ISO 3166-1 does not assign (exceptional
// reservations, the Eurozone, the United Nations, Kosovo's user-assigned XK), which no platform
// accepts as a country.
var notISO = setOf("AC", "CP", "DG", "EA", "IC", "TA", "EZ", "UN", "XK")

// addCountryName adds name unless another country already has it: the first dictionary (English)
// wins, so a foreign name that happens to equal an English one cannot take it over.
func addCountryName(table map[string]string, name, cc string) {
	if k := foldKey(name); k != "" {
		if _, taken := table[k]; !taken {
			table[k] = cc
		}
	}
}

// countryVariants are names in common use that CLDR does not give, or gives differently.
var countryVariants = map[string]string{
	"USA": "us", "U.S.": "us", "U.S.A.": "us", "United States of America": "us", "America": "us",
	"US of A": "us", "UK": "gb", "U.K.": "gb", "Great Britain": "gb", "Britain": "gb",
	"England": "gb", "Scotland": "gb", "Wales": "gb", "Northern Ireland": "gb",
	"United Kingdom of Great Britain and Northern Ireland": "gb", "Holland": "nl",
	"The Netherlands": "nl", "Deutschland": "de", "Federal Republic of Germany": "de",
	"Turkey": "tr", "Türkiye": "tr", "Korea": "kr", "Republic of Korea": "kr", "South Korea": "kr",
	"North Korea": "kp", "Russian Federation": "ru", "Czech Republic": "cz", "Ivory Coast": "ci",
	"Vatican": "va", "Holy See": "va", "Burma": "mm", "Macedonia": "mk", "Swaziland": "sz",
	"Cabo Verde": "cv", "Lao": "la", "Syrian Arab Republic": "sy", "Iran, Islamic Republic of": "ir",
	"Viet Nam": "vn", "Taiwan, Province of China": "tw", "Republic of China": "tw",
	"People's Republic of China": "cn", "PRC": "cn", "Tanzania, United Republic of": "tz",
	"Bolivia, Plurinational State of": "bo", "Venezuela, Bolivarian Republic of": "ve",
	"Moldova, Republic of": "md", "Palestine": "ps", "State of Palestine": "ps",
	"Brunei Darussalam": "bn", "UAE": "ae", "Emirates": "ae", "DRC": "cd", "DR Congo": "cd",
	"Democratic Republic of the Congo": "cd", "Congo": "cg", "Republic of the Congo": "cg",
	"Hong Kong": "hk", "Macau": "mo", "Macao": "mo", "East Timor": "tl",
	"Saint Vincent and the Grenadines": "vc", "Trinidad": "tt", "Micronesia": "fm",
	"The Bahamas": "bs", "The Gambia": "gm", "Republic of Ireland": "ie", "Eire": "ie",
	"Österreich": "at", "Schweiz": "ch", "Suisse": "ch", "Svizzera": "ch", "España": "es",
	"Sverige": "se", "Norge": "no", "Danmark": "dk", "Suomi": "fi", "Polska": "pl", "Nederland": "nl",
	"België": "be", "Belgique": "be", "Magyarország": "hu", "Česko": "cz", "Hellas": "gr",
	"Nippon": "jp", "Nihon": "jp", "Brasil": "br", "México": "mx",
}

// NormalizeCountry returns the lower-case ISO 3166-1 alpha-2 code of a country given by code
// (alpha-2 or alpha-3, any case) or by name ("United States" → "us", "Deutschland" → "de",
// "Côte d'Ivoire" → "ci"). Meta hashes this form; TikTok receives it plain; Google receives it
// upper-case (GoogleCountry). Anything else is ErrUnknownCountry; an empty input gives "".
func NormalizeCountry(s string) (string, error) {
	s, err := prepare(s)
	if err != nil || s == "" {
		return "", err
	}
	return normalizeCountryPrepared(s)
}

// normalizeCountryPrepared is NormalizeCountry after prepare.
func normalizeCountryPrepared(s string) (string, error) {
	table := countryTable()
	if cc, ok := lookupFolded(table, s); ok {
		return cc, nil
	}
	if k := foldKey(s); strings.HasPrefix(k, "the") {
		if cc, ok := table[k[3:]]; ok {
			return cc, nil
		}
	}
	return "", ErrUnknownCountry
}

// GoogleCountry turns a NormalizeCountry result into Google's form: upper-case alpha-2.
func GoogleCountry(cc string) string {
	return strings.ToUpper(cc)
}
