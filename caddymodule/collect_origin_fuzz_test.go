package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// browserOrigin matches an Origin header as a browser serializes it (RFC 6454 §6.2): a lowercase
// http(s) scheme, a host (a name or a bracketed IPv6 literal) and an optional port, nothing else.
// Browsers send nothing else in Origin apart from "null"; only these can arrive from a page the
// visitor's browser loaded from another site.
var browserOrigin = regexp.MustCompile(`^https?://((?:[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?)$`)

// FuzzSameOriginHeader is sameOrigin on the Origin header alone, as older browsers send it: an
// Origin a browser on another site could send (another host, another port) is never accepted, one
// naming the request's own host is, "null" and an absent Origin never are, and whatever is accepted
// parses as an http(s) origin on the request's host with no path. With Sec-Fetch-Site present,
// that header alone decides.
func FuzzSameOriginHeader(f *testing.F) {
	for _, tc := range []struct{ host, origin, site string }{
		{"shop.example.com", "https://shop.example.com", ""},
		{"shop.example.com", "http://shop.example.com", ""},
		{"Shop.Example.com", "https://shop.example.com", ""},
		{"shop.example.com:8443", "https://shop.example.com:8443", ""},
		{"shop.example.com", "https://shop.example.com:8443", ""},
		{"shop.example.com", "https://evil.example", ""},
		{"shop.example.com", "https://shop.example.com.evil.example", ""},
		{"shop.example.com", "https://evil.example/shop.example.com", ""},
		{"shop.example.com", "https://shop.example.com@evil.example", ""},
		{"shop.example.com", "https://evil.example@shop.example.com", ""},
		{"shop.example.com", "https://shop.example.com/", ""},
		{"shop.example.com", "https://shop.example.com?x", ""},
		{"shop.example.com", "ftp://shop.example.com", ""},
		{"shop.example.com", "null", ""},
		{"shop.example.com", "", ""},
		{"[::1]:8080", "http://[::1]:8080", ""},
		{"", "https://", ""},
		{"shop.example.com", "https://shop.example.com\r\nX: y", ""},
		{"shop.example.com", "https://evil.example", "same-origin"},
		{"shop.example.com", "https://shop.example.com", "cross-site"},
		{"shop.example.com", "https://shop.example.com", "Same-Origin"},
	} {
		f.Add(tc.host, tc.origin, tc.site)
	}
	f.Fuzz(func(t *testing.T, host, origin, site string) {
		r := httptest.NewRequest(http.MethodPost, "/capi/collect", nil)
		r.Host = host
		if origin != "" {
			r.Header["Origin"] = []string{origin}
		}
		if site != "" {
			r.Header["Sec-Fetch-Site"] = []string{site}
		}
		got := sameOrigin(r)

		if site != "" {
			// Every browser that sends Sec-Fetch-Site sends it on every fetch; Origin is then moot.
			if want := site == "same-origin"; got != want {
				t.Fatalf("Sec-Fetch-Site %q, Origin %q: sameOrigin = %v, want %v", site, origin, got, want)
			}
			return
		}
		if (origin == "" || origin == "null") && got {
			t.Fatalf("Origin %q accepted", origin)
		}
		if m := browserOrigin.FindStringSubmatch(origin); m != nil && isPrintableASCII(host) {
			if want := strings.EqualFold(m[1], host); got != want {
				t.Fatalf("browser Origin %q on host %q: sameOrigin = %v, want %v", origin, host, got, want)
			}
		}
		if got {
			u, err := url.Parse(origin)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Path != "" || !strings.EqualFold(u.Host, host) {
				t.Fatalf("accepted Origin %q for host %q, which is not an http(s) origin on that host", origin, host)
			}
		}
	})
}

// browserPageURL matches a page URL as location.href gives it for an http(s) page, in the ASCII a
// browser serializes it to (non-ASCII is percent-encoded or punycode): scheme, host, optional
// port, then path, query and fragment of URL code points and valid escapes.
var browserPageURL = regexp.MustCompile(`^(?i:https?)://([A-Za-z0-9.-]+(?::[0-9]*)?)` +
	`((?:/(?:[A-Za-z0-9._~!$&'()*+,;=:@/-]|%[0-9A-Fa-f]{2})*)?` +
	`(?:\?(?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?` +
	`(?:#(?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?)$`)

// FuzzSameHostURL is sameHostURL on the url field of a posted event: it returns the posted value
// unchanged or nothing; what it returns parses as an absolute http(s) URL on the request's host
// and holds no control character (it goes into an event and a log line); and a page URL a browser
// reports is kept exactly when it is on the request's host, whatever its path and query hold.
func FuzzSameHostURL(f *testing.F) {
	for _, tc := range []struct{ raw, host, rest string }{
		{"https://shop.example.com/products/tee?variant=1#reviews", "shop.example.com", "/p"},
		{"HTTPS://SHOP.EXAMPLE.COM/", "shop.example.com", ""},
		{"http://shop.example.com:8080/x", "shop.example.com:8080", "?q=1"},
		{"https://shop.example.com:8080/x", "shop.example.com", "#f"},
		{"https://evil.example/https://shop.example.com/", "shop.example.com", "/%2e%2e"},
		{"https://shop.example.com.evil.example/", "shop.example.com", ".evil.example/"},
		{"https://evil.example@shop.example.com/", "shop.example.com", "@evil.example"},
		{"https://shop.example.com@evil.example/", "shop.example.com", ":443/"},
		{"javascript://shop.example.com/%0aalert(1)", "shop.example.com", "/a%zz"},
		{"//shop.example.com/p", "shop.example.com", "\\evil.example"},
		{"/relative/path", "shop.example.com", "/\r\nSet-Cookie: x=1"},
		{"https://shop.example.com/a\nb", "shop.example.com", ""},
		{"", "shop.example.com", ""},
		{"http:", "", ""},
	} {
		f.Add(tc.raw, tc.host, tc.rest, true)
	}
	f.Fuzz(func(t *testing.T, raw, host, rest string, secure bool) {
		checkSameHostURL(t, raw, host)
		// The same host with anything after it, the shape a browser posts most.
		scheme := "http://"
		if secure {
			scheme = "https://"
		}
		checkSameHostURL(t, scheme+host+rest, host)
	})
}

func checkSameHostURL(t *testing.T, raw, host string) {
	t.Helper()
	got := sameHostURL(raw, host)
	if got != "" && got != raw {
		t.Fatalf("sameHostURL(%q, %q) = %q, neither the URL nor nothing", raw, host, got)
	}
	if m := browserPageURL.FindStringSubmatch(raw); m != nil && isPrintableASCII(host) {
		if want := strings.EqualFold(m[1], host); (got != "") != want {
			t.Fatalf("page URL %q on host %q: kept = %v, want %v", raw, host, got != "", want)
		}
	}
	if got == "" {
		return
	}
	u, err := url.Parse(got)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || !strings.EqualFold(u.Host, host) {
		t.Fatalf("kept %q for host %q, which is not an http(s) URL on that host", got, host)
	}
	if strings.ContainsFunc(got, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		t.Fatalf("kept %q, which holds a control character", got)
	}
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
