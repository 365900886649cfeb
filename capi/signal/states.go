package signal

// stateCodes maps folded names (foldKey) and codes of US states, the District of Columbia, US
// territories and Canadian provinces and territories to their lower-case 2-letter codes (ANSI/FIPS
// for the US, Canada Post for Canada). The two sets of codes do not overlap.
var stateCodes = func() map[string]string {
	names := map[string]string{
		"al": "Alabama", "ak": "Alaska", "az": "Arizona", "ar": "Arkansas", "ca": "California",
		"co": "Colorado", "ct": "Connecticut", "de": "Delaware", "fl": "Florida", "ga": "Georgia",
		"hi": "Hawaii", "id": "Idaho", "il": "Illinois", "in": "Indiana", "ia": "Iowa",
		"ks": "Kansas", "ky": "Kentucky", "la": "Louisiana", "me": "Maine", "md": "Maryland",
		"ma": "Massachusetts", "mi": "Michigan", "mn": "Minnesota", "ms": "Mississippi",
		"mo": "Missouri", "mt": "Montana", "ne": "Nebraska", "nv": "Nevada", "nh": "New Hampshire",
		"nj": "New Jersey", "nm": "New Mexico", "ny": "New York", "nc": "North Carolina",
		"nd": "North Dakota", "oh": "Ohio", "ok": "Oklahoma", "or": "Oregon", "pa": "Pennsylvania",
		"ri": "Rhode Island", "sc": "South Carolina", "sd": "South Dakota", "tn": "Tennessee",
		"tx": "Texas", "ut": "Utah", "vt": "Vermont", "va": "Virginia", "wa": "Washington",
		"wv": "West Virginia", "wi": "Wisconsin", "wy": "Wyoming", "dc": "District of Columbia",
		"pr": "Puerto Rico", "gu": "Guam", "vi": "U.S. Virgin Islands", "as": "American Samoa",
		"mp": "Northern Mariana Islands",
		"ab": "Alberta", "bc": "British Columbia", "mb": "Manitoba", "nb": "New Brunswick",
		"nl": "Newfoundland and Labrador", "ns": "Nova Scotia", "nt": "Northwest Territories",
		"nu": "Nunavut", "on": "Ontario", "pe": "Prince Edward Island", "qc": "Quebec",
		"sk": "Saskatchewan", "yt": "Yukon",
	}
	m := make(map[string]string, 3*len(names))
	for code, name := range names {
		m[code] = code
		m[foldKey(name)] = code
	}
	for alias, code := range map[string]string{
		"Washington DC": "dc", "Washington D.C.": "dc", "Virgin Islands": "vi",
		"US Virgin Islands": "vi", "Newfoundland": "nl", "Labrador": "nl", "PEI": "pe",
		"Yukon Territory": "yt", "Québec": "qc", "Nouveau-Brunswick": "nb",
		"Nouvelle-Écosse": "ns", "Colombie-Britannique": "bc", "Île-du-Prince-Édouard": "pe",
		"Terre-Neuve-et-Labrador": "nl", "Territoires du Nord-Ouest": "nt",
		"Calif": "ca", "Mass": "ma", "Penn": "pa", "Wash": "wa", "Tex": "tx", "Fla": "fl",
		"Que": "qc", "Ont": "on", "Sask": "sk", "Alta": "ab", "Man": "mb",
	} {
		m[foldKey(alias)] = code
	}
	return m
}()
