package identity

import (
	"net/url"
	"strings"
	"testing"
)

func TestClickIDsFromQuery(t *testing.T) {
	long := strings.Repeat("a", MaxClickIDLength)
	tests := []struct {
		name     string
		query    string
		want     ClickIDs
		rejected int
	}{
		{"all five", "fbclid=IwAR2F4-dbP0l7&gclid=Cj0KCQ_x~y.z&gbraid=0AAAAA&wbraid=CkQK&ttclid=E.C.P.abc", ClickIDs{"IwAR2F4-dbP0l7", "Cj0KCQ_x~y.z", "0AAAAA", "CkQK", "E.C.P.abc"}, 0},
		{"case kept", "fbclid=AbCdEf", ClickIDs{FBCLID: "AbCdEf"}, 0},
		{"percent-decoded value checked", "fbclid=ab%2Dcd", ClickIDs{FBCLID: "ab-cd"}, 0},
		{"500 chars accepted", "gclid=" + long, ClickIDs{GCLID: long}, 0},
		{"501 chars rejected", "gclid=" + long + "a", ClickIDs{}, 1},
		{"script rejected", "fbclid=%3Cscript%3E", ClickIDs{}, 1},
		{"space rejected", "ttclid=a+b", ClickIDs{}, 1},
		{"quote and semicolon rejected", "gclid=a%22%3Bb", ClickIDs{}, 1},
		{"non-ASCII rejected", "fbclid=caf%C3%A9", ClickIDs{}, 1},
		{"empty ignored", "fbclid=&gclid=", ClickIDs{}, 0},
		{"first valid of repeated", "fbclid=%3Cx%3E&fbclid=first&fbclid=second", ClickIDs{FBCLID: "first"}, 1},
		{"every invalid counted", "fbclid=a%20b&gclid=%00&ttclid=ok", ClickIDs{TTCLID: "ok"}, 2},
		{"names are case-sensitive", "FBCLID=abc", ClickIDs{}, 0},
		{"none", "utm_source=x", ClickIDs{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			got, rejected := ClickIDsFromQuery(q)
			if got != tt.want || rejected != tt.rejected {
				t.Fatalf("got %+v, %d rejected; want %+v, %d", got, rejected, tt.want, tt.rejected)
			}
		})
	}
}

func TestCookieDomain(t *testing.T) {
	tests := []struct {
		name, host, override string
		domain               string
		index                int
	}{
		{"registrable domain", "example.com", "", "example.com", 1},
		{"subdomain with port", "a.builder.example.com:8080", "", "example.com", 1},
		{"case and trailing dot", "Shop.Example.COM.", "", "example.com", 1},
		{"two-level suffix", "www.example.co.uk", "", "example.co.uk", 2},
		{"private suffix", "foo.blogspot.com", "", "foo.blogspot.com", 2},
		{"private suffix under a subdomain", "www.user.github.io", "", "user.github.io", 2},
		{"hosted shop", "my-store.myshopify.com", "", "my-store.myshopify.com", 2},
		{"public suffix itself", "co.uk", "", "", 0},
		{"IPv4", "127.0.0.1", "", "", 0},
		{"IPv4 with port", "192.168.1.10:8080", "", "", 0},
		{"IPv6 with port", "[::1]:8080", "", "", 0},
		{"IPv6 in brackets", "[2001:db8::1]", "", "", 0},
		{"bare IPv6", "2001:db8::1", "", "", 0},
		{"localhost", "localhost", "", "", 0},
		{"localhost with port", "localhost:2015", "", "", 0},
		{"single label", "intranet", "", "", 0},
		{"empty", "", "", "", 0},
		{"space", "exa mple.com", "", "", 0},
		{"attribute injection", "evil.com;domain=x", "", "", 0},
		{"empty label", "a..example.com", "", "", 0},
		{"all-digit name net/http would drop", "0.0", "", "", 0},
		{"unterminated bracket", "[::1", "", "", 0},
		{"override of a parent", "a.shop.example.com", "shop.example.com", "shop.example.com", 2},
		{"override equal to host", "shop.example.com:443", "shop.example.com", "shop.example.com", 2},
		{"override normalized", "www.example.com", ".Example.COM.", "example.com", 1},
		{"override of another site ignored", "other.net", "example.com", "other.net", 1},
		{"override suffix-but-not-label ignored", "notexample.com", "example.com", "notexample.com", 1},
		{"public suffix override ignored", "www.example.co.uk", "co.uk", "example.co.uk", 2},
		{"override for an IP ignored", "127.0.0.1", "0.0.1", "", 0},
		{"hostile override ignored", "example.com", "example.com; secure", "example.com", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, i := CookieDomain(tt.host, tt.override)
			if d != tt.domain || i != tt.index {
				t.Fatalf("CookieDomain(%q, %q) = %q, %d; want %q, %d", tt.host, tt.override, d, i, tt.domain, tt.index)
			}
		})
	}
}
