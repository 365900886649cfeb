package conversion

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/language"

	"github.com/caddy-capi/caddy-capi/capi/platform"
)

func FuzzValidEventID(f *testing.F) {
	for _, s := range []string{"0123456789abcdef0123456789abcdef", "abc", "order_1001-x", "a'b\"c<d>e", strings.Repeat("z", 65)} {
		f.Add(s, "1001")
	}
	f.Fuzz(func(t *testing.T, s, orderID string) {
		if ValidEventID(s) {
			if len(s) < MinEventIDLength || len(s) > MaxEventIDLength {
				t.Fatalf("accepted %q of length %d", s, len(s))
			}
			// An accepted ID needs no escaping: unchanged by URL, cookie and JS quoting.
			if url.QueryEscape(s) != s || strings.ContainsAny(s, "'\"<>&;,= \\") {
				t.Fatalf("accepted %q, which needs escaping", s)
			}
		}
		// Every ID this package makes passes, whatever the name and order.
		if id := EventID(testIDKey, s, orderID); !ValidEventID(id) || len(id) != EventIDLength {
			t.Fatalf("EventID(%q, %q) = %q is not valid", s, orderID, id)
		}
	})
}

func FuzzParseValue(f *testing.F) {
	for _, s := range []string{"49.90", "+007.5", ".5", "5.", "-1", "1,5", "1e9", " 3 ", "0x10", "١"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseValue(s)
		if err != nil {
			if v != "" {
				t.Fatalf("ParseValue(%q) returned %q with an error", s, v)
			}
			if strings.Contains(err.Error(), s) && s != "" && len(s) > 3 {
				t.Fatalf("error %q echoes the input", err)
			}
			return
		}
		if _, err := platform.DecimalNumber(v); err != nil {
			t.Fatalf("ParseValue(%q) = %q, which the senders refuse: %v", s, v, err)
		}
		if strings.HasPrefix(v, "-") || (len(v) > 1 && v[0] == '0' && v[1] != '.') || strings.HasSuffix(v, ".") {
			t.Fatalf("ParseValue(%q) = %q is not canonical", s, v)
		}
		if again, err := ParseValue(v); err != nil || again != v {
			t.Fatalf("ParseValue not idempotent: %q → %q → %q, %v", s, v, again, err)
		}
	})
}

func FuzzParseCurrency(f *testing.F) {
	for _, s := range []string{"USD", "eur", "XXX", "US", " jpy", "ÜSD"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCurrency(s)
		if err != nil {
			return
		}
		if len(c) != 3 || strings.ToUpper(c) != c || c == "XXX" || !strings.EqualFold(c, strings.TrimSpace(s)) {
			t.Fatalf("ParseCurrency(%q) = %q", s, c)
		}
		for i := range 3 {
			if c[i] < 'A' || c[i] > 'Z' {
				t.Fatalf("ParseCurrency(%q) = %q: not letters", s, c)
			}
		}
	})
}

func FuzzCleanContentIDs(f *testing.F) {
	f.Add("sku-1, sku-2", "sku-1", "")
	f.Add("a\x00b", "\xff", strings.Repeat("x,", 60))
	f.Fuzz(func(t *testing.T, a, b, c string) {
		ids, drops := CleanContentIDs([]string{a, b, c})
		if len(ids) > MaxContentIDs {
			t.Fatalf("%d IDs kept", len(ids))
		}
		seen := map[string]bool{}
		for _, id := range ids {
			if id == "" || id != strings.TrimSpace(id) || len(id) > MaxContentIDLength || !utf8.ValidString(id) || !printable(id) || strings.Contains(id, ",") {
				t.Fatalf("kept bad ID %q", id)
			}
			if seen[id] {
				t.Fatalf("kept %q twice", id)
			}
			seen[id] = true
		}
		for _, d := range drops {
			if d.Reason != ErrContentID.Error() && d.Reason != ErrContentIDs.Error() {
				t.Fatalf("drop reason %q is not a fixed message", d.Reason)
			}
		}
	})
}

func FuzzPageURL(f *testing.F) {
	for _, s := range []string{"https://shop.example/t?e=a%40b.c&o=1#x", "http://u:p@h/", "javascript:x", "https://h/?" + strings.Repeat("a", 3000), "https://[::1]:80/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := PageURL(s)
		if err != nil || u == "" {
			return
		}
		if len(u) > maxURLLength || !utf8.ValidString(u) {
			t.Fatalf("PageURL(%q) = %q: too long or not UTF-8", s, u)
		}
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.User != nil || p.Fragment != "" {
			t.Fatalf("PageURL(%q) = %q: not a clean absolute URL (%v)", s, u, err)
		}
		if strings.Contains(u, "#") {
			t.Fatalf("PageURL(%q) = %q keeps a fragment", s, u)
		}
		for _, vs := range p.Query() {
			for _, v := range vs {
				if strings.Contains(v, "@") {
					t.Fatalf("PageURL(%q) = %q keeps an email-like value", s, u)
				}
			}
		}
	})
}

func FuzzParseLocale(f *testing.F) {
	for _, s := range []string{"en-US,en;q=0.9", "*", "x-klingon", "de;q=abc", "zh-Hant-TW;q=0.1, fr"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		loc := ParseLocale(s)
		if loc == "" {
			return
		}
		if _, err := language.Parse(loc); err != nil || strings.ContainsAny(loc, " ;,\"'<>") {
			t.Fatalf("ParseLocale(%q) = %q is not a BCP 47 tag: %v", s, loc, err)
		}
	})
}

// FuzzFromRequest feeds a conversion rule's placeholders and a browser's values: whatever they hold,
// FromRequest makes a sendable event or refuses the name or ID, and never panics.
func FuzzFromRequest(f *testing.F) {
	f.Add("Purchase", "", "49.90", "usd", "1001", "a,b", "https://shop.example/t", "203.0.113.1", "en-US")
	f.Add("Lead", "x'><script>", "-1", "XXX", "\x00", "\xff", "javascript:1", "999.1.1.1", "*")
	f.Fuzz(func(t *testing.T, name, id, value, cur, order, contents, pageURL, ip, lang string) {
		e, drops, err := FromRequest(
			Conversion{Name: name, ID: id, Value: value, Currency: cur, OrderID: order, ContentIDs: []string{contents}},
			nil, Request{URL: pageURL, IP: ip, AcceptLanguage: lang, UserAgent: name}, Options{IDKey: testIDKey, Now: fixedNow})
		if err != nil {
			return
		}
		if !ValidEventID(e.ID) {
			t.Fatalf("event ID %q is not valid", e.ID)
		}
		if e.Value != "" {
			if _, err := platform.DecimalNumber(e.Value); err != nil {
				t.Fatalf("value %q unsendable", e.Value)
			}
		}
		if e.OrderID != "" && e.ID != EventID(testIDKey, e.Name, e.OrderID) && id == "" {
			t.Fatalf("order %q but ID %q is not derived from it", e.OrderID, e.ID)
		}
		for _, d := range drops {
			for _, in := range []string{value, order, contents, pageURL, ip} {
				if len(in) > 8 && strings.Contains(d.Reason, in) {
					t.Fatalf("drop %+v echoes the input", d)
				}
			}
		}
	})
}
