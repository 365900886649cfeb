// Package identity reads ad click IDs from requests and decides the first-party cookies that carry
// them and the visitor's identity across visits: Meta's _fbc and _fbp, TikTok's _ttp and ttclid,
// Google's _gcl_aw, _gcl_gb and _gcl_wb, and caddy-capi's own visitor ID, _capi_vid (DESIGN §4).
//
// It owns the rules for these values: which query values are accepted as click IDs, the formats of
// the cookie values, which existing values are kept (valid values the vendors' pixels set are never
// rewritten) and which are refused (anything malformed, oversized or outside its charset is treated
// as absent and never echoed), the cookie domain (eTLD+1, or host-only for IPs and single-label
// hosts) and the cookies' attributes and lifetimes.
//
// It does not store anything, hash anything or know about events: the caller puts the Result into
// the visitor record and the events. It must not import Caddy.
package identity

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"

	"golang.org/x/net/publicsuffix"
)

// MaxClickIDLength is the longest click ID accepted (DESIGN §4; Meta's own param builder ignores
// longer fbclids too).
const MaxClickIDLength = 500

// Query parameters that carry click IDs.
const (
	ParamFBCLID = "fbclid"
	ParamGCLID  = "gclid"
	ParamGBRAID = "gbraid"
	ParamWBRAID = "wbraid"
	ParamTTCLID = "ttclid"
)

// ClickIDs are the ad platforms' click IDs, exactly as they appeared in the URL (fbclid is case
// sensitive). An empty field means none.
type ClickIDs struct {
	FBCLID string // Meta
	GCLID  string // Google Ads
	GBRAID string // Google Ads, iOS app campaigns
	WBRAID string // Google Ads, iOS web campaigns
	TTCLID string // TikTok
}

// IsZero reports whether no click ID is set.
func (c ClickIDs) IsZero() bool { return c == ClickIDs{} }

// ValidClickID reports whether s is acceptable as a click ID: 1 to MaxClickIDLength characters from
// the URL's unreserved set (A-Z a-z 0-9 . _ ~ -). Everything else could be an injection attempt and
// is never stored, set as a cookie or echoed.
func ValidClickID(s string) bool {
	if len(s) == 0 || len(s) > MaxClickIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isUnreserved(s[i]) {
			return false
		}
	}
	return true
}

// ClickIDsFromQuery returns the valid click IDs in q and how many values it rejected. When a
// parameter is repeated, the first valid value wins (a link builder appending a second copy does not
// change the click); every invalid value is counted, empty values are ignored as absent.
func ClickIDsFromQuery(q url.Values) (ids ClickIDs, rejected int) {
	pick := func(name string) string {
		var got string
		for _, v := range q[name] {
			switch {
			case v == "":
			case !ValidClickID(v):
				rejected++
			case got == "":
				got = v
			}
		}
		return got
	}
	ids.FBCLID = pick(ParamFBCLID)
	ids.GCLID = pick(ParamGCLID)
	ids.GBRAID = pick(ParamGBRAID)
	ids.WBRAID = pick(ParamWBRAID)
	ids.TTCLID = pick(ParamTTCLID)
	return ids, rejected
}

// CookieDomain returns the Domain attribute for cookies on requests to host (a Host header, with or
// without a port) and Meta's subdomainIndex for it: the number of dots in the domain (example.com →
// 1).
//
// The domain is the registrable domain (eTLD+1, from the public suffix list including its private
// section, so shop.myshopify.com and foo.blogspot.com keep their own), so that www. and shop. share
// the cookies. IP literals, single-label hosts (localhost) and hosts without a registrable domain
// get host-only cookies: "" and index 0.
//
// override, the site's cookie_domain, is used when host is that domain or a subdomain of it;
// otherwise it is ignored, because a browser rejects a cookie whose Domain does not domain-match the
// host (one Caddy site may answer for several hosts). A public suffix is never accepted as override.
func CookieDomain(host, override string) (domain string, subdomainIndex int) {
	key := domainKey{host, override}
	domainCache.RLock()
	d, ok := domainCache.m[key]
	domainCache.RUnlock()
	if ok {
		return d.domain, d.index
	}
	domain, subdomainIndex = lookupCookieDomain(host, override)
	// A site answers for a handful of hosts; the Host header is the client's to choose, so the
	// cache stops growing at its bound and later hosts are looked up each time.
	domainCache.Lock()
	if len(domainCache.m) < maxDomainCache {
		domainCache.m[key] = cookieDomain{domain, subdomainIndex}
	}
	domainCache.Unlock()
	return domain, subdomainIndex
}

// domainCache memoizes CookieDomain, which runs on every page: a public suffix search, address
// parsing and cookie validation that always give the same answer for the same host. A map keyed by
// a struct of strings is read without allocating, which a sync.Map's interface keys would not be.
var domainCache = struct {
	sync.RWMutex
	m map[domainKey]cookieDomain
}{m: make(map[domainKey]cookieDomain)}

const maxDomainCache = 1024

type domainKey struct{ host, override string }

type cookieDomain struct {
	domain string
	index  int
}

func lookupCookieDomain(host, override string) (domain string, subdomainIndex int) {
	h := hostname(host)
	if _, err := netip.ParseAddr(h); err == nil || !validHostname(h) {
		return "", 0
	}
	if o := strings.ToLower(strings.Trim(override, ".")); o != "" && validHostname(o) && strings.Contains(o, ".") &&
		(h == o || strings.HasSuffix(h, "."+o)) {
		if suffix, _ := publicsuffix.PublicSuffix(o); suffix != o && cookieDomainOK(o) {
			return o, strings.Count(o, ".")
		}
	}
	if !strings.Contains(h, ".") {
		return "", 0
	}
	d, err := publicsuffix.EffectiveTLDPlusOne(h)
	if err != nil || !cookieDomainOK(d) {
		return "", 0
	}
	return d, strings.Count(d, ".")
}

// cookieDomainOK reports whether net/http will send d as a Domain attribute; it drops (and logs)
// names it considers invalid, such as all-digit ones.
func cookieDomainOK(d string) bool {
	return (&http.Cookie{Name: "x", Domain: d}).Valid() == nil
}

// hostname strips the port, IPv6 brackets and a trailing dot, and lowercases.
func hostname(host string) string {
	h := host
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return ""
		}
		h = h[1:end]
	} else if strings.Count(h, ":") == 1 {
		var err error
		if h, _, err = net.SplitHostPort(h); err != nil {
			return ""
		}
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// validHostname accepts what a cookie Domain attribute may carry: ASCII letters, digits, '-', '_'
// in non-empty dot-separated labels of at most 63 characters.
func validHostname(h string) bool {
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(h); i++ {
		switch c := h[i]; {
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
			continue
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
		label++
		if label > 63 {
			return false
		}
	}
	return label > 0
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func isDigits(s string, minLen, maxLen int) bool {
	if len(s) < minLen || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// randomString returns n characters drawn uniformly from alphabet (at most 256 characters), by
// rejection sampling so that no character is more likely than another.
func randomString(r io.Reader, n int, alphabet string) (string, error) {
	limit := 256 - 256%len(alphabet)
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/2+8)
	for range maxDraws {
		if len(out) == n {
			return string(out), nil
		}
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	if len(out) == n {
		return string(out), nil
	}
	return "", errBiasedRand
}
