package identity

import (
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/platform"
)

// now is the param builder tests' Date.now (ms).
var now = time.UnixMilli(1234567890)

// maxRand makes every random draw 0x7F 0xFF…: _fbp's random part becomes 2147483647, the param
// builder tests' mocked value.
type maxRand struct{}

func (maxRand) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 0xFF
		if i%4 == 0 {
			p[i] = 0x7F
		}
	}
	return len(p), nil
}

type failingRand struct{}

func (failingRand) Read(p []byte) (int, error) { return 0, errors.New("entropy exhausted") }

func request(host, query string, cookies ...string) *http.Request {
	r := httptest.NewRequest("GET", "http://"+host+"/landing?"+query, nil)
	r.Host = host
	for _, c := range cookies {
		r.Header.Add("Cookie", c)
	}
	return r
}

func cookieMap(cs []*http.Cookie) map[string]*http.Cookie {
	m := map[string]*http.Cookie{}
	for _, c := range cs {
		m[c.Name] = c
	}
	return m
}

// TestResolveParamBuilderCases mirrors the cases of Meta's param builder tests (spec/meta-capi.md
// §4), adapted to our rules: no appendix is added to values we mint or keep, the domain is always
// the eTLD+1 (the param builder's "no list" fallback just dropped a label), values in force are
// re-sent with a fresh lifetime, and click IDs come from the request's own query, not its Referer.
func TestResolveParamBuilderCases(t *testing.T) {
	const rnd = "2147483647"
	tests := []struct {
		name      string
		host      string
		query     string
		cookies   string
		fbc, fbp  string
		domain    string
		refused   int
		wantFBCLI string
	}{
		{"new click on a subdomain", "a.builder.example.com:8080", "fbclid=abcd", "",
			"fb.1.1234567890.abcd", "fb.1.1234567890." + rnd, "example.com", 0, "abcd"},
		{"same fbclid keeps the cookie", "a.builder.example.com:8080", "fbclid=abc", "_fbc=fb.1.123.abc",
			"fb.1.123.abc", "fb.1.1234567890." + rnd, "example.com", 0, "abc"},
		{"param builder cookies with appendix kept", "example.com", "", "_fbc=fb.1.123.abc.BA; _fbp=fb.1.123.123456.BA",
			"fb.1.123.abc.BA", "fb.1.123.123456.BA", "example.com", 0, "abc"},
		{"8-char appendix kept", "example.com", "fbclid=abc", "_fbc=fb.1.123.abc.AQQAAQAA; _fbp=fb.1.123.2147483647.AQQCAQAA",
			"fb.1.123.abc.AQQAAQAA", "fb.1.123.2147483647.AQQCAQAA", "example.com", 0, "abc"},
		{"new fbclid replaces the cookie", "a.builder.example.com", "fbclid=def", "_fbc=fb.1.123.abc",
			"fb.1.1234567890.def", "fb.1.1234567890." + rnd, "example.com", 0, "def"},
		{"fbclid compared case-sensitively", "example.com", "fbclid=ABC", "_fbc=fb.1.123.abc",
			"fb.1.1234567890.ABC", "fb.1.1234567890." + rnd, "example.com", 0, "ABC"},
		{"unknown appendix refused", "example.com", "", "_fbc=fb.1.123.abc.invalid", "", "fb.1.1234567890." + rnd, "example.com", 1, ""},
		{"wrong version refused", "example.com", "", "_fbc=fb1.1.123.abc", "", "fb.1.1234567890." + rnd, "example.com", 1, ""},
		{"non-digit time refused", "example.com", "", "_fbc=fb.1.123aa.abc", "", "fb.1.1234567890." + rnd, "example.com", 1, ""},
		{"empty fbp random refused", "example.com", "", "_fbp=fb.1.123.", "", "fb.1.1234567890." + rnd, "example.com", 1, ""},
		{"non-digit fbp index refused", "example.com", "", "_fbp=fb.1b.123.456", "", "fb.1.1234567890." + rnd, "example.com", 1, ""},
		{"fbp with underscore refused", "example.com", "", "_fbp=fb.000000.123_1.test", "", "fb.1.1234567890." + rnd, "example.com", 1, ""},
		{"refused fbc replaced by a click", "example.com", "fbclid=new", "_fbc=fb.1.123.<script>",
			"fb.1.1234567890.new", "fb.1.1234567890." + rnd, "example.com", 1, "new"},
		{"IPv4 host", "127.0.0.1:8080", "fbclid=abc", "", "fb.0.1234567890.abc", "fb.0.1234567890." + rnd, "", 0, "abc"},
		{"IPv6 host", "[::1]:8080", "", "", "", "fb.0.1234567890." + rnd, "", 0, ""},
		{"localhost", "localhost:2015", "fbclid=abc", "", "fb.0.1234567890.abc", "fb.0.1234567890." + rnd, "", 0, "abc"},
		{"co.uk", "shop.example.co.uk", "fbclid=abc", "", "fb.2.1234567890.abc", "fb.2.1234567890." + rnd, "example.co.uk", 0, "abc"},
		{"fbclid with a dot gets no cookie", "example.com", "fbclid=a.b", "", "", "fb.1.1234567890." + rnd, "example.com", 0, "a.b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cookies []string
			if tt.cookies != "" {
				cookies = []string{tt.cookies}
			}
			res := Resolve(request(tt.host, tt.query, cookies...), Options{Now: func() time.Time { return now }, Rand: maxRand{}, Platforms: []string{platform.Meta}})
			if res.FBC != tt.fbc || res.FBP != tt.fbp {
				t.Fatalf("fbc %q fbp %q; want %q %q", res.FBC, res.FBP, tt.fbc, tt.fbp)
			}
			if res.RefusedCookies != tt.refused || res.Known.FBCLID != tt.wantFBCLI {
				t.Fatalf("refused %d known fbclid %q; want %d %q", res.RefusedCookies, res.Known.FBCLID, tt.refused, tt.wantFBCLI)
			}
			set := cookieMap(res.Cookies)
			if tt.fbc != "" {
				if c := set[CookieFBC]; c == nil || c.Value != tt.fbc || c.Domain != tt.domain {
					t.Fatalf("_fbc cookie %v", c)
				}
			} else if set[CookieFBC] != nil {
				t.Fatalf("_fbc set to %q", set[CookieFBC].Value)
			}
			if c := set[CookieFBP]; c == nil || c.Value != tt.fbp || c.Domain != tt.domain {
				t.Fatalf("_fbp cookie %v", c)
			}
		})
	}
}

func TestResolveCookieAttributes(t *testing.T) {
	tests := []struct {
		name   string
		tls    bool
		secure bool
	}{{"http", false, false}, {"https", true, true}, {"TLS ended in front", false, true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := request("www.shop.example", "fbclid=f&gclid=g&gbraid=gb&wbraid=wb&ttclid=tt")
			if tt.tls {
				r.TLS = &tls.ConnectionState{}
			}
			res := Resolve(r, Options{Now: func() time.Time { return now }, Secure: tt.secure && !tt.tls})
			set := cookieMap(res.Cookies)
			want := map[string]time.Duration{
				CookieVisitorID: 400 * 24 * time.Hour, CookieFBC: 90 * 24 * time.Hour, CookieFBP: 90 * 24 * time.Hour,
				CookieTTP: 395 * 24 * time.Hour, CookieTTCLID: 90 * 24 * time.Hour, CookieGCLAW: 90 * 24 * time.Hour,
				CookieGCLGB: 90 * 24 * time.Hour, CookieGCLWB: 90 * 24 * time.Hour,
			}
			if len(set) != len(want) || len(res.Cookies) != len(want) {
				t.Fatalf("cookies %v", res.Cookies)
			}
			for name, age := range want {
				c := set[name]
				if c == nil {
					t.Fatalf("%s not set", name)
				}
				if c.Path != "/" || c.Domain != "shop.example" || c.SameSite != http.SameSiteLaxMode || c.Secure != tt.secure {
					t.Errorf("%s: %s", name, c)
				}
				if c.MaxAge != int(age.Seconds()) || !c.Expires.Equal(now.Add(age)) {
					t.Errorf("%s: Max-Age %d, Expires %v", name, c.MaxAge, c.Expires)
				}
				if c.HttpOnly != (name == CookieVisitorID) {
					t.Errorf("%s: HttpOnly %v (only the visitor ID is hidden from scripts; the pixels read the rest)", name, c.HttpOnly)
				}
				if err := c.Valid(); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
		})
	}
}

func TestResolveVisitorID(t *testing.T) {
	opt := Options{Now: func() time.Time { return now }}
	first := Resolve(request("example.com", ""), opt)
	if !first.NewVisitor || !regexp.MustCompile(`^[a-z0-9]{24}$`).MatchString(first.VisitorID) {
		t.Fatalf("minted %q (new %v)", first.VisitorID, first.NewVisitor)
	}
	again := Resolve(request("example.com", "", CookieVisitorID+"="+first.VisitorID), opt)
	if again.NewVisitor || again.VisitorID != first.VisitorID {
		t.Fatalf("visitor ID not kept: %q", again.VisitorID)
	}
	if c := cookieMap(again.Cookies)[CookieVisitorID]; c == nil || c.Value != first.VisitorID {
		t.Fatal("visitor ID not renewed")
	}
	for _, hostile := range []string{"ABCDEFGHIJKLMNOPQRSTUVWX", "abc", strings.Repeat("a", 25), "aaaaaaaaaaaa-aaaaaaaaaaa"} {
		res := Resolve(request("example.com", "", CookieVisitorID+"="+hostile), opt)
		if !res.NewVisitor || res.VisitorID == hostile || res.RefusedCookies != 1 {
			t.Errorf("%q accepted as visitor ID", hostile)
		}
	}
	// Two visitors never share an ID.
	if other := Resolve(request("example.com", ""), opt); other.VisitorID == first.VisitorID {
		t.Fatal("visitor IDs repeat")
	}
}

func TestResolveTikTok(t *testing.T) {
	opt := Options{Now: func() time.Time { return now }, Platforms: []string{platform.TikTok}}
	res := Resolve(request("example.com", "ttclid=E.C.P.click1"), opt)
	if !regexp.MustCompile(`^[A-Za-z0-9]{27}$`).MatchString(res.TTP) {
		t.Fatalf("minted _ttp %q", res.TTP)
	}
	if res.TTCLID != "E.C.P.click1" || res.Known.TTCLID != "E.C.P.click1" {
		t.Fatalf("ttclid %q", res.TTCLID)
	}
	pixelTTP := "01HXYZabcdEFGH_1234567-89.tt.1" // a format we have not seen is still the pixel's
	kept := Resolve(request("example.com", "", "_ttp="+pixelTTP+"; ttclid=old"), opt)
	if kept.TTP != pixelTTP || kept.TTCLID != "old" || kept.Known.TTCLID != "old" {
		t.Fatalf("kept %q %q", kept.TTP, kept.TTCLID)
	}
	latest := Resolve(request("example.com", "ttclid=new", "_ttp="+pixelTTP+"; ttclid=old"), opt)
	if latest.TTCLID != "new" || cookieMap(latest.Cookies)[CookieTTCLID].Value != "new" {
		t.Fatalf("latest click lost: %q", latest.TTCLID)
	}
	hostile := Resolve(request("example.com", "", "_ttp="+strings.Repeat("x", 65)+"; ttclid=a~b~"+strings.Repeat("c", 500)), opt)
	if len(hostile.TTP) != 27 || hostile.TTCLID != "" || hostile.RefusedCookies != 2 {
		t.Fatalf("hostile values kept: %q %q", hostile.TTP, hostile.TTCLID)
	}
	for _, c := range hostile.Cookies {
		if c.Name == CookieVisitorID || c.Name == CookieFBP || c.Name == CookieGCLAW {
			continue
		}
		if c.Name != CookieTTP {
			t.Errorf("unexpected cookie %s", c.Name)
		}
	}
}

func TestResolveGoogle(t *testing.T) {
	opt := Options{Now: func() time.Time { return now }, Platforms: []string{platform.Google}}
	res := Resolve(request("example.com", "gclid=Cj0KCQ&gbraid=0AAA&wbraid=CkQK"), opt)
	if res.GCLAW != "GCL.1234567.Cj0KCQ" || res.GCLGB != "GCL.1234567.0AAA" || res.GCLWB != "GCL.1234567.CkQK" {
		t.Fatalf("%q %q %q", res.GCLAW, res.GCLGB, res.GCLWB)
	}
	set := cookieMap(res.Cookies)
	if set[CookieGCLAW] == nil || set[CookieGCLGB] == nil || set[CookieGCLWB] == nil || set[CookieFBP] != nil || set[CookieTTP] != nil {
		t.Fatalf("cookies %v", res.Cookies)
	}
	// The tag's own cookie with the same gclid is kept with its timestamp.
	same := Resolve(request("example.com", "gclid=Cj0KCQ", "_gcl_aw=GCL.1600000000.Cj0KCQ"), opt)
	if same.GCLAW != "GCL.1600000000.Cj0KCQ" {
		t.Fatalf("rewrote the tag's cookie: %q", same.GCLAW)
	}
	// Without a click in the URL the cookie's gclid is the one in force.
	later := Resolve(request("example.com", "", "_gcl_aw=GCL.1600000000.Cj0KCQ"), opt)
	if later.Known.GCLID != "Cj0KCQ" || later.Clicks.GCLID != "" {
		t.Fatalf("known %+v clicks %+v", later.Known, later.Clicks)
	}
	newer := Resolve(request("example.com", "gclid=Other", "_gcl_aw=GCL.1600000000.Cj0KCQ"), opt)
	if newer.GCLAW != "GCL.1234567.Other" {
		t.Fatalf("new click lost: %q", newer.GCLAW)
	}
	for _, bad := range []string{"GCL..x", "GCL.12.", "gcl.12.x", "GCL.12.a.b", "GCL.12.a;b", "GCL.1a.x"} {
		if ValidGCL(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestResolveRandomnessFailure(t *testing.T) {
	res := Resolve(request("example.com", "fbclid=abc"), Options{Rand: failingRand{}})
	if res.VisitorID != "" || res.FBP != "" || res.TTP != "" {
		t.Fatalf("values minted without randomness: %+v", res)
	}
	if res.FBC == "" {
		t.Fatal("the click's _fbc needs no randomness and must still be set")
	}
	// A source stuck on rejected values ends too.
	zero := Resolve(request("example.com", ""), Options{Rand: zeroRand{}})
	if zero.FBP != "" || zero.VisitorID == "" {
		t.Fatalf("fbp %q visitor %q", zero.FBP, zero.VisitorID)
	}
}

type zeroRand struct{}

func (zeroRand) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestFBPRandomIsTenDigitsBelow2To31(t *testing.T) {
	for range 1000 {
		res := Resolve(request("example.com", ""), Options{Platforms: []string{platform.Meta}})
		parts := strings.Split(res.FBP, ".")
		if len(parts) != 4 || len(parts[3]) != 10 || parts[3] >= "2147483648" {
			t.Fatalf("fbp %q", res.FBP)
		}
	}
}

// TestResolveRenewsOnlyWhenAVisitStarts: a navigation inside the shop (Sec-Fetch-Site same-origin
// or same-site) re-sends no cookie whose value the request already carried, yet still sets every
// new value; a navigation that starts a visit (none, cross-site, or a browser without the header)
// renews them all.
func TestResolveRenewsOnlyWhenAVisitStarts(t *testing.T) {
	opt := Options{Now: func() time.Time { return now }}
	first := Resolve(request("shop.example.com", "fbclid=IwAR1&gclid=Cj0a&ttclid=E.C.P.t1"), opt)
	var jar []string
	for _, c := range first.Cookies {
		jar = append(jar, c.Name+"="+c.Value)
	}
	all := len(first.Cookies)
	if all != 6 {
		t.Fatalf("first visit set %d cookies, want 6 (_capi_vid, _fbc, _fbp, _ttp, ttclid, _gcl_aw): %v", all, jar)
	}
	for _, tt := range []struct {
		site  string
		query string
		want  []string // the cookies that must be set, in any order
	}{
		{"", "", nil}, // no header: renews, checked below
		{"none", "", nil},
		{"cross-site", "", nil},
		{"same-origin", "", []string{}},
		{"same-site", "", []string{}},
		{"same-origin", "gclid=Cj0b", []string{CookieGCLAW}},
		{"same-origin", "fbclid=IwAR2", []string{CookieFBC}},
	} {
		r := request("shop.example.com", tt.query, strings.Join(jar, "; "))
		if tt.site != "" {
			r.Header.Set("Sec-Fetch-Site", tt.site)
		}
		res := Resolve(r, opt)
		if res.VisitorID != first.VisitorID || res.FBP != first.FBP {
			t.Fatalf("%s: identity changed", tt.site)
		}
		got := cookieMap(res.Cookies)
		if tt.want == nil {
			if len(got) != all || !Renews(r) {
				t.Errorf("Sec-Fetch-Site %q: %d cookies re-sent, want all %d", tt.site, len(got), all)
			}
			continue
		}
		if len(got) != len(tt.want) || Renews(r) {
			t.Errorf("Sec-Fetch-Site %q, query %q: set %d cookies, want exactly %v", tt.site, tt.query, len(got), tt.want)
		}
		for _, name := range tt.want {
			if got[name] == nil {
				t.Errorf("Sec-Fetch-Site %q, query %q: new %s not set", tt.site, tt.query, name)
			}
		}
	}
	// A value minted on an in-shop navigation (the cookie was lost or refused) is set.
	r := request("shop.example.com", "", CookieVisitorID+"="+first.VisitorID)
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	res := cookieMap(Resolve(r, opt).Cookies)
	if res[CookieFBP] == nil || res[CookieTTP] == nil || res[CookieVisitorID] != nil {
		t.Errorf("in-shop navigation without _fbp and _ttp: set %v", res)
	}
}

// FuzzEachCookieAgreesWithNetHTTP: for any Cookie header, the cookies eachCookie yields whose
// names and values pass the validators the identity cookies use are exactly those that
// http.Request.Cookies yields, in the same order.
func FuzzEachCookieAgreesWithNetHTTP(f *testing.F) {
	f.Add("_capi_vid=abcdefghijklmnopqrstuvwx; _fbp=fb.1.1700000000000.123")
	f.Add(`_fbc="fb.1.1.x"; a=b;;c; _ttp=  x ; ttclid=E.C.P.1`)
	f.Add("=x; _gcl_aw=GCL.1.Cj0; _gcl_aw=bad value")
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest("GET", "http://example.com/", nil)
		r.Header["Cookie"] = []string{header}
		valid := func(name, value string) bool {
			return (name == CookieVisitorID && ValidVisitorID(value)) || (name == CookieFBP && ValidFBP(value)) ||
				(name == CookieFBC && ValidFBC(value)) || (name == CookieTTP && ValidTTP(value)) ||
				(name == CookieTTCLID && ValidClickID(value)) || (name == CookieGCLAW && ValidGCL(value))
		}
		var ours, theirs []string
		eachCookie(r.Header, func(name, value string) bool {
			if valid(name, value) {
				ours = append(ours, name+"="+value)
			}
			return true
		})
		for _, c := range r.Cookies() {
			if valid(c.Name, c.Value) {
				theirs = append(theirs, c.Name+"="+c.Value)
			}
		}
		if !slices.Equal(ours, theirs) {
			t.Fatalf("eachCookie %q, net/http %q", ours, theirs)
		}
	})
}

// parseFBSplit is parseFB as it was written with strings.Split, kept as the reference.
func parseFBSplit(s string) (string, bool) {
	if len(s) > 4+3+1+16+1+MaxClickIDLength+1+8 {
		return "", false
	}
	parts := strings.Split(s, ".")
	switch len(parts) {
	case 4:
	case 5:
		if !validAppendix(parts[4]) {
			return "", false
		}
	default:
		return "", false
	}
	if parts[0] != "fb" || !isDigits(parts[1], 1, 3) || !isDigits(parts[2], 1, 16) || parts[3] == "" {
		return "", false
	}
	return parts[3], true
}

// FuzzParseFBAgreesWithSplit: parseFB reads every _fbc/_fbp value exactly as the Split version
// did, and CookieDomain's memoized answer is the lookup's.
func FuzzParseFBAgreesWithSplit(f *testing.F) {
	f.Add("fb.1.1700000000000.IwAR1", "shop.example.com:443")
	f.Add("fb.1.1700000000000.IwAR1.Bg", "127.0.0.1")
	f.Add("fb.1.1.x.y.z", "[::1]:8080")
	f.Add("fb..1.x", "localhost")
	f.Fuzz(func(t *testing.T, value, host string) {
		p1, ok1 := parseFB(value)
		p2, ok2 := parseFBSplit(value)
		if p1 != p2 || ok1 != ok2 {
			t.Fatalf("parseFB(%q) = %q, %v; Split version %q, %v", value, p1, ok1, p2, ok2)
		}
		d1, i1 := CookieDomain(host, "")
		d2, i2 := lookupCookieDomain(host, "")
		if d1 != d2 || i1 != i2 {
			t.Fatalf("CookieDomain(%q) = %q, %d; lookup %q, %d", host, d1, i1, d2, i2)
		}
	})
}
