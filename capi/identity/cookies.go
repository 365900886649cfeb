package identity

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/platform"
)

// Cookie names. The names for gbraid and wbraid are unconfirmed: Google documents neither
// (spec/tiktok-google.md B4). _gcl_gb is the name commonly reported for gbraid; _gcl_wb is our
// choice for wbraid, by analogy. Both hold GCL.<seconds>.<id> like _gcl_aw; the values are also
// returned in Result, so the click reaches the server either way.
const (
	CookieVisitorID = "_capi_vid"
	CookieFBC       = "_fbc"
	CookieFBP       = "_fbp"
	CookieTTP       = "_ttp"
	CookieTTCLID    = "ttclid"
	CookieGCLAW     = "_gcl_aw"
	CookieGCLGB     = "_gcl_gb"
	CookieGCLWB     = "_gcl_wb"
)

// Cookie lifetimes. Every cookie is re-sent with a fresh lifetime on each visit (sliding expiry), so
// they last this long after the last visit, not the first. All stay within the 400 days that
// Chromium caps cookies to.
const (
	// VisitorIDMaxAge is the visitor ID's lifetime (DESIGN §4: up to 400 days).
	VisitorIDMaxAge = 400 * 24 * time.Hour
	// ClickMaxAge is the lifetime of _fbc, _fbp, ttclid and the Google click cookies: Meta's and
	// Google's 90 days, which is also the default visitor_ttl.
	ClickMaxAge = 90 * 24 * time.Hour
	// TTPMaxAge is _ttp's lifetime: TikTok's pixel cookies last 13 months
	// (spec/tiktok-google.md A5), 395 days.
	TTPMaxAge = 395 * 24 * time.Hour
)

const (
	visitorIDLength = 24 // from a-z0-9: about 124 bits
	ttpLength       = 27 // the observed _ttp length
	maxTTPLength    = 64
	lowerAlnum      = "abcdefghijklmnopqrstuvwxyz0123456789"
	alnum           = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// Options says how to resolve a request's identity.
type Options struct {
	// CookieDomain is the site's cookie_domain override; empty means the request host's eTLD+1.
	CookieDomain string
	// Secure marks the cookies Secure. A request that arrived over TLS always does; set it when TLS
	// ends in front of Caddy.
	Secure bool
	// Platforms lists the platforms (platform.Meta, platform.TikTok, platform.Google) whose cookies
	// are resolved; nil means all of them.
	Platforms []string
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Rand is the source of randomness for new IDs; nil means crypto/rand. If it fails, the values
	// it would have minted are left empty.
	Rand io.Reader
}

// Result is a request's identity after Resolve.
type Result struct {
	// VisitorID is the _capi_vid value in force; NewVisitor reports that it was minted now.
	VisitorID  string
	NewVisitor bool

	// Clicks are the valid click IDs in this request's query.
	Clicks ClickIDs
	// Known are the click IDs in force: this request's, else those in the visitor's cookies.
	Known ClickIDs

	// The cookie values in force (kept or newly minted), in their cookie formats; empty when absent.
	FBC    string // fb.<subdomainIndex>.<ms>.<fbclid>[.<appendix>]
	FBP    string // fb.<subdomainIndex>.<ms>.<random>[.<appendix>]
	TTP    string
	TTCLID string
	GCLAW  string // GCL.<seconds>.<gclid>
	GCLGB  string // GCL.<seconds>.<gbraid>
	GCLWB  string // GCL.<seconds>.<wbraid>

	// Cookies are the cookies to set on the response: new values, and, when the request starts a
	// visit (see Renews), the values in force re-sent with a fresh lifetime.
	Cookies []*http.Cookie
	// Domain is the cookies' Domain attribute, "" for host-only cookies; SubdomainIndex is the
	// number of dots in it, as _fbc and _fbp carry it.
	Domain         string
	SubdomainIndex int

	// Rejected counts the click-ID query values that were dropped as invalid.
	Rejected int
	// RefusedCookies counts the cookies whose values were malformed, oversized or outside their
	// charset, and so were treated as absent.
	RefusedCookies int
}

// Resolve reads r's click IDs and identity cookies and returns the values in force and the cookies
// to set. Valid existing values are kept as they are; a click ID in the URL replaces the one in its
// cookie when it differs; missing or refused values are minted. Click IDs are read from r's own
// query only, not from its Referer as Meta's param builder also does: the landing navigation carries
// them, and a Referer is the previous page's URL, which the visitor may not have reached by an ad.
//
// Call it for page navigations, not for every asset. Values in force are re-sent with a fresh
// lifetime when the navigation starts a visit (Renews); new values are always set.
func Resolve(r *http.Request, opt Options) Result {
	now := time.Now
	if opt.Now != nil {
		now = opt.Now
	}
	rnd := opt.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	t := now()
	domain, index := CookieDomain(r.Host, opt.CookieDomain)
	res := Result{Domain: domain, SubdomainIndex: index}
	renew := Renews(r)
	if r.URL.RawQuery != "" { // most pages have no query: skip building an empty map
		res.Clicks, res.Rejected = ClickIDsFromQuery(r.URL.Query())
	}
	res.Known = res.Clicks
	secure := opt.Secure || r.TLS != nil
	set := func(name, value string, maxAge time.Duration, httpOnly bool) {
		res.Cookies = append(res.Cookies, &http.Cookie{
			Name:     name,
			Value:    value,
			Path:     "/",
			Domain:   domain,
			MaxAge:   int(maxAge / time.Second),
			Expires:  t.Add(maxAge).UTC(),
			Secure:   secure,
			HttpOnly: httpOnly,
			SameSite: http.SameSiteLaxMode,
		})
	}
	// The request's identity cookies, read in one pass over its Cookie lines.
	jar := readIdentityCookies(r.Header)
	// existing returns the first valid value of the named cookie, counting a refusal when the
	// cookie is present but no value is valid.
	existing := func(name string) string {
		c := jar[identityCookieIndex(name)]
		if c.value == "" && c.refused {
			res.RefusedCookies++
		}
		return c.value
	}
	enabled := func(p string) bool { return opt.Platforms == nil || slices.Contains(opt.Platforms, p) }

	// keep sets a value unless it is the one the request already carried and the visit is not
	// starting: then the browser's cookie is still fresh.
	keep := func(name, value, old string, maxAge time.Duration, httpOnly bool) {
		if value != "" && (renew || value != old) {
			set(name, value, maxAge, httpOnly)
		}
	}

	old := existing(CookieVisitorID)
	if old != "" {
		res.VisitorID = old
	} else if v, err := randomString(rnd, visitorIDLength, lowerAlnum); err == nil {
		res.VisitorID, res.NewVisitor = v, true
	}
	keep(CookieVisitorID, res.VisitorID, old, VisitorIDMaxAge, true)

	if enabled(platform.Meta) {
		res.FBC = existing(CookieFBC)
		old := res.FBC
		if id := res.Clicks.FBCLID; id != "" && id != FBCLIDOf(res.FBC) && framable(id) {
			res.FBC = "fb." + strconv.Itoa(index) + "." + strconv.FormatInt(t.UnixMilli(), 10) + "." + id
		}
		if res.Known.FBCLID == "" {
			res.Known.FBCLID = FBCLIDOf(res.FBC)
		}
		keep(CookieFBC, res.FBC, old, ClickMaxAge, false)
		res.FBP = existing(CookieFBP)
		old = res.FBP
		if res.FBP == "" {
			if n, err := fbpRandom(rnd); err == nil {
				res.FBP = "fb." + strconv.Itoa(index) + "." + strconv.FormatInt(t.UnixMilli(), 10) + "." + strconv.FormatUint(uint64(n), 10)
			}
		}
		keep(CookieFBP, res.FBP, old, ClickMaxAge, false)
	}

	if enabled(platform.TikTok) {
		res.TTP = existing(CookieTTP)
		old := res.TTP
		if res.TTP == "" {
			if v, err := randomString(rnd, ttpLength, alnum); err == nil {
				res.TTP = v
			}
		}
		keep(CookieTTP, res.TTP, old, TTPMaxAge, false)
		res.TTCLID = existing(CookieTTCLID)
		old = res.TTCLID
		if id := res.Clicks.TTCLID; id != "" {
			res.TTCLID = id // the latest click wins
		}
		if res.Known.TTCLID == "" {
			res.Known.TTCLID = res.TTCLID
		}
		keep(CookieTTCLID, res.TTCLID, old, ClickMaxAge, false)
	}

	if enabled(platform.Google) {
		google := func(name, clickID string, known *string) string {
			v := existing(name)
			old := v
			if clickID != "" && clickID != ClickIDOfGCL(v) && framable(clickID) {
				// The timestamp's unit is unconfirmed (spec/tiktok-google.md B4); readers only use
				// the last segment, and seconds is what the observed values look like.
				v = "GCL." + strconv.FormatInt(t.Unix(), 10) + "." + clickID
			}
			if *known == "" {
				*known = ClickIDOfGCL(v)
			}
			keep(name, v, old, ClickMaxAge, false)
			return v
		}
		res.GCLAW = google(CookieGCLAW, res.Clicks.GCLID, &res.Known.GCLID)
		res.GCLGB = google(CookieGCLGB, res.Clicks.GBRAID, &res.Known.GBRAID)
		res.GCLWB = google(CookieGCLWB, res.Clicks.WBRAID, &res.Known.WBRAID)
	}
	return res
}

// identityCookies are the cookies Resolve reads, each with the check its value must pass.
var identityCookies = [...]struct {
	name  string
	valid func(string) bool
}{
	{CookieVisitorID, ValidVisitorID},
	{CookieFBC, ValidFBC},
	{CookieFBP, ValidFBP},
	{CookieTTP, ValidTTP},
	{CookieTTCLID, ValidClickID},
	{CookieGCLAW, ValidGCL},
	{CookieGCLGB, ValidGCL},
	{CookieGCLWB, ValidGCL},
}

// identityJar holds, per entry of identityCookies, the first valid value the request carried, and
// whether a value was refused.
type identityJar [len(identityCookies)]struct {
	value   string
	refused bool
}

// readIdentityCookies reads the identity cookies of h in one pass.
func readIdentityCookies(h http.Header) identityJar {
	var jar identityJar
	eachCookie(h, func(name, value string) bool {
		i := identityCookieIndex(name)
		if i < 0 || jar[i].value != "" {
			return true
		}
		if identityCookies[i].valid(value) {
			jar[i].value = value
		} else {
			jar[i].refused = true
		}
		return true
	})
	return jar
}

// identityCookieIndex returns the position of name in identityCookies, or -1.
func identityCookieIndex(name string) int {
	for i, c := range identityCookies {
		if c.name == name {
			return i
		}
	}
	return -1
}

// eachCookie calls fn with the name and value of each cookie in h's Cookie lines, in order, until
// fn returns false. It reads them as http.Request.Cookies does (pairs split on ";", trimmed, one
// pair of surrounding double quotes taken off the value) without allocating: it runs on every page,
// and a shop's pages carry dozens of cookies, of which the identity cookies are a handful. Names and
// values are not validated here; the callers compare names exactly and validate values strictly.
func eachCookie(h http.Header, fn func(name, value string) bool) {
	for _, line := range h["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			name, value, ok := strings.Cut(part, "=")
			if !ok || name == "" {
				continue
			}
			if len(value) > 1 && value[0] == '"' && value[len(value)-1] == '"' {
				value = value[1 : len(value)-1]
			}
			if !fn(name, value) {
				return
			}
		}
	}
}

// Renews reports whether a navigation starts a visit, so that the identity cookies in force are
// re-sent with a fresh lifetime (DESIGN §4: "renewed on visits"). A browser says where a navigation
// comes from in Sec-Fetch-Site: "same-origin" or "same-site" is a click inside the shop, whose
// visit already renewed the cookies; "none" (typed, bookmarked), "cross-site" (an ad, a search, a
// mail) or no header at all (a browser that does not send it) starts one. Renewing on every page
// would re-send the same half a dozen Set-Cookie lines, about 1 KB, with every page of a visit.
func Renews(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "same-site":
		return false
	}
	return true
}

// framable reports whether a click ID can be the last dot-separated segment of a cookie value. The
// unreserved set allows '.', which would make the value ambiguous; such an ID (real ones have none)
// stays in Result.Clicks for the server events but gets no cookie.
func framable(id string) bool { return !strings.Contains(id, ".") }

// ValidVisitorID reports whether s is a visitor ID: 24 characters from a-z0-9.
func ValidVisitorID(s string) bool {
	if len(s) != visitorIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !strings.Contains(lowerAlnum, s[i:i+1]) {
			return false
		}
	}
	return true
}

// ValidFBC reports whether s is an _fbc value: fb.<subdomainIndex>.<ms>.<fbclid>, optionally followed
// by the appendix Meta's param builder adds (a 2-character legacy token or 8 characters of
// URL-safe base64), the parsing rule of Meta's param builder (spec/meta-capi.md §4) with the fbclid
// held to the click-ID rules.
func ValidFBC(s string) bool {
	payload, ok := parseFB(s)
	return ok && ValidClickID(payload)
}

// ValidFBP reports whether s is an _fbp value: fb.<subdomainIndex>.<ms>.<random digits>, optionally
// with the param builder's appendix.
func ValidFBP(s string) bool {
	payload, ok := parseFB(s)
	return ok && isDigits(payload, 1, 20)
}

// FBCLIDOf returns the fbclid inside a valid _fbc value, or "".
func FBCLIDOf(fbc string) string {
	if payload, ok := parseFB(fbc); ok && ValidClickID(payload) {
		return payload
	}
	return ""
}

// parseFB splits fb.<index>.<ms>.<payload>[.<appendix>] and returns the payload.
func parseFB(s string) (payload string, ok bool) {
	if len(s) > 4+3+1+16+1+MaxClickIDLength+1+8 {
		return "", false
	}
	// Cut rather than Split: this runs on every page for _fbc and _fbp, and allocates nothing.
	prefix, rest, ok1 := strings.Cut(s, ".")
	index, rest, ok2 := strings.Cut(rest, ".")
	ms, rest, ok3 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || !ok3 {
		return "", false
	}
	payload, appendix, hasAppendix := strings.Cut(rest, ".")
	if hasAppendix && (strings.Contains(appendix, ".") || !validAppendix(appendix)) {
		return "", false
	}
	if prefix != "fb" || !isDigits(index, 1, 3) || !isDigits(ms, 1, 16) || payload == "" {
		return "", false
	}
	return payload, true
}

func validAppendix(s string) bool {
	if len(s) != 2 && len(s) != 8 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ValidTTP reports whether s is acceptable as a _ttp value. TikTok's own values look like 27
// alphanumerics, but the format is not documented (spec/tiktok-google.md A5), so any value of up to
// 64 characters from A-Z a-z 0-9 . _ - is kept rather than overwriting what the pixel set.
func ValidTTP(s string) bool {
	if len(s) == 0 || len(s) > maxTTPLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isUnreserved(c) || c == '~' {
			return false
		}
	}
	return true
}

// ValidGCL reports whether s is a Google click cookie value: GCL.<timestamp>.<click id>.
func ValidGCL(s string) bool { return ClickIDOfGCL(s) != "" }

// ClickIDOfGCL returns the click ID inside a valid GCL.<timestamp>.<click id> value, or "".
func ClickIDOfGCL(s string) string {
	rest, ok := strings.CutPrefix(s, "GCL.")
	if !ok {
		return ""
	}
	ts, id, ok := strings.Cut(rest, ".")
	if !ok || !isDigits(ts, 1, 16) || !framable(id) || !ValidClickID(id) {
		return ""
	}
	return id
}

// maxDraws bounds rejection sampling: a working source is accepted about half the time, so only a
// broken one (constant output) runs out.
const maxDraws = 64

var errBiasedRand = errors.New("identity: random source keeps producing rejected values")

// fbpRandom returns a random 10-digit number below 2^31, like the Pixel's _fbp random part.
func fbpRandom(r io.Reader) (uint32, error) {
	var b [4]byte
	for range maxDraws {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, err
		}
		if n := binary.BigEndian.Uint32(b[:]) & 0x7FFFFFFF; n >= 1_000_000_000 {
			return n, nil
		}
	}
	return 0, errBiasedRand
}
