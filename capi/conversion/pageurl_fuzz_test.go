package conversion

import (
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/caddy-capi/caddy-capi/capi/capture"
)

// personalFieldNames is the list of parameter names no kept URL may carry, written out here rather
// than taken from personalNames so that the fuzz target checks PageURL against the requirement,
// not against itself.
var personalFieldNames = []string{
	"email", "e-mail", "mail", "phone", "tel", "telephone", "mobile", "cell",
	"first_name", "firstname", "fname", "given_name", "last_name", "lastname", "lname", "surname", "family_name",
	"name", "full_name", "fullname",
	"address", "address1", "address2", "address_1", "address_2", "street", "street_address",
	"city", "state", "province", "region", "zip", "zipcode", "zip_code", "postcode", "postal_code", "postalcode",
	"country", "dob", "birthday", "birthdate", "date_of_birth", "gender",
	"password", "pass", "pwd", "ssn", "card", "cc", "cvv",
}

var escape = regexp.MustCompile(`%[0-9A-Fa-f]{2}`)

// decodings returns s and its first three percent-decodings, decoded independently of
// percentDecode: every valid escape, stray '%' left alone.
func decodings(s string, plusIsSpace bool) []string {
	out := []string{s}
	for range 3 {
		if plusIsSpace {
			s = strings.ReplaceAll(s, "+", " ")
		}
		s = escape.ReplaceAllStringFunc(s, func(e string) string {
			b, _ := url.PathUnescape(e)
			return b
		})
		out = append(out, s)
	}
	return out
}

// rawParams splits a raw query into its parameters as PageURL sees them.
func rawParams(rawQuery string) []string {
	if rawQuery == "" {
		return nil
	}
	return strings.Split(rawQuery, "&")
}

// isSubsequence reports whether every element of sub appears in seq, in the same order.
func isSubsequence(sub, seq []string) bool {
	for _, s := range sub {
		i := slices.Index(seq, s)
		if i < 0 {
			return false
		}
		seq = seq[i+1:]
	}
	return true
}

func FuzzPageURLKeepsNoPersonalData(f *testing.F) {
	for _, s := range []string{
		"https://shop.example/thank-you?phone=%2B15550100&first_name=Jane&last_name=Doe&address1=1+Main+St&zip=90210&gclid=Cj0",
		"https://shop.example/c?checkout%5Bshipping_address%5D%5Bzip%5D=90210&checkout[email]=a%2540b.c&step=x",
		"https://shop.example/checkout/order-received/12/?key=wc_order_A&billing_phone=555-010-0999&utm_campaign=2024-11-29",
		"https://shop.example/account/jane.doe%2540example.com/orders?p=+1 555 010 0999&order=1001&variant=39912345678901",
		"https://u:p@shop.example/a%2Fb/@x?a=1;email=x&&flag&q=%zz%40#frag",
		"https://shop.example/t?customerEmail=x&First+Name=J&items[0][name]=T&%2540=1&r=%25%34%30",
		"http://[fe80::1%25en0]/x?y=1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := PageURL(in)
		if err != nil || out == "" {
			return
		}
		if len(out) > maxURLLength {
			t.Fatalf("PageURL(%q) = %q: longer than %d bytes", in, out, maxURLLength)
		}
		for _, d := range decodings(out, false) {
			if strings.Contains(d, "@") {
				t.Fatalf("PageURL(%q) = %q holds an '@' once decoded: %q", in, out, d)
			}
		}
		p, err := url.Parse(out)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.User != nil || p.Fragment != "" || strings.Contains(out, "#") {
			t.Fatalf("PageURL(%q) = %q: not a clean absolute URL (%v)", in, out, err)
		}
		kept := rawParams(p.RawQuery)
		for _, param := range kept {
			name, _, _ := strings.Cut(param, "=")
			for _, d := range decodings(name, true) {
				segs := strings.FieldsFunc(strings.ToLower(d), func(r rune) bool { return r == '[' || r == ']' || r == '.' })
				if len(segs) > 0 && slices.Contains(personalFieldNames, segs[len(segs)-1]) {
					t.Fatalf("PageURL(%q) = %q keeps the parameter %q, named %q once decoded", in, out, param, d)
				}
			}
		}
		src, err := url.Parse(in)
		if err != nil {
			t.Fatalf("PageURL accepted %q, which url.Parse refuses: %v", in, err)
		}
		if !isSubsequence(kept, rawParams(src.RawQuery)) {
			t.Fatalf("PageURL(%q) = %q: kept parameters %q are not the input's, in its order", in, out, kept)
		}
		if again, err := PageURL(out); again != out || err != nil {
			t.Fatalf("PageURL(%q) = %q, but PageURL of that = %q, %v", in, out, again, err)
		}
	})
}

// FuzzPageURLDropsWhatCaptureRecognizes checks PageURL's name matching against package capture's:
// a parameter that capture would read as a customer field from a posted form, with a value that
// says nothing by itself, is removed from a URL.
func FuzzPageURLDropsWhatCaptureRecognizes(f *testing.F) {
	for _, s := range []string{"billing_first_name", "checkout[shipping_address][zip]", "customer.firstName", "E-Mail",
		"contact[phone-number]", "cart[token]", "shippingCity", "emails[]", "your_name", "ZIP CODE", "product[name]"} {
		f.Add(s)
	}
	// One value per kind of field that passes capture's plausibility check and that PageURL's value
	// rules (no '@', no phone-like grouping) leave alone, so only the name can remove it.
	values := []string{"Jane Doe", "5550100999", "01/02/1990", "f", "Springfield", "IL", "62701", "tok123"}
	f.Fuzz(func(t *testing.T, name string) {
		for _, v := range values {
			param := url.QueryEscape(name) + "=" + url.QueryEscape(v)
			sub, err := capture.Extract("application/x-www-form-urlencoded", []byte(param), nil)
			if err != nil || sub.Customer.IsZero() && sub.CartToken == "" {
				continue
			}
			in := "https://shop.example/p?keep=1&" + param
			if out, err := PageURL(in); out != "https://shop.example/p?keep=1" || err != nil {
				t.Fatalf("capture reads %q as a customer field, but PageURL(%q) = %q, %v", param, in, out, err)
			}
		}
	})
}
