package conversion

import (
	"math/rand/v2"
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
		for _, seg := range strings.Split(p.EscapedPath(), "/") {
			for _, d := range decodings(seg, false) {
				if why := tokenInSegment(d); why != "" {
					t.Fatalf("PageURL(%q) = %q keeps the path segment %q, %s once decoded: %q", in, out, seg, why, d)
				}
			}
		}
		src, err := url.Parse(in)
		if err != nil {
			t.Fatalf("PageURL accepted %q, which url.Parse refuses: %v", in, err)
		}
		if got, want := strings.Count(p.EscapedPath(), "/"), strings.Count(src.EscapedPath(), "/"); got != want {
			t.Fatalf("PageURL(%q) = %q: %d path segments, the input has %d", in, out, got, want)
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

var (
	alnumRun = regexp.MustCompile(`[A-Za-z0-9]+`)
	hexRun   = regexp.MustCompile(`^[0-9A-Fa-f]+$`)
	uuid     = regexp.MustCompile(`(^|[^A-Za-z0-9])[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}([^A-Za-z0-9]|$)`)
)

// tokenInSegment says what kind of secret token a decoded path segment holds, "" for none. It
// checks the part of the token rule that admits no exception, written independently of tokenLike:
// a run of 16 or more hex digits that are not all decimal, a number of more than 20 digits, a
// UUID, and a run of 20 or more letters and digits that has both.
func tokenInSegment(seg string) string {
	if uuid.MatchString(seg) {
		return "a UUID"
	}
	for _, run := range alnumRun.FindAllString(seg, -1) {
		letters := strings.ContainsFunc(run, func(r rune) bool { return r > '9' })
		digits := strings.ContainsFunc(run, func(r rune) bool { return r <= '9' })
		switch {
		case len(run) >= 16 && letters && hexRun.MatchString(run):
			return "16 or more hex digits"
		case len(run) > 20 && !letters:
			return "a number longer than any 64-bit ID"
		case len(run) >= 20 && letters && digits:
			return "20 or more letters and digits"
		}
	}
	return ""
}

const (
	hexDigits    = "0123456789abcdef"
	base62Digits = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	// clickIDDigits are the characters of real click IDs: base64url, and the dots of a ttclid.
	clickIDDigits = base62Digits + "-_."
)

// FuzzPageURLRedactsPlantedTokens plants a random 32-character hex or base62 token as a path
// segment between fuzzed segments, with fuzzed and random click IDs in a fuzzed query, and checks
// that the token's segment becomes "redacted" and the token appears nowhere in the path, that
// fbclid, gclid and ttclid keep their exact raw value, and that PageURL is idempotent.
func FuzzPageURLRedactsPlantedTokens(f *testing.F) {
	f.Add("12345678/orders", "authenticate", "key=0f1e2d3c&utm_source=x", "IwAR2F4-Gx_7q", uint64(1), false)
	f.Add("checkouts/cn", "thank-you", "locale=en-US&email=a%40b.c", "IwAR0abc_DEF-123", uint64(2), true)
	f.Add("account/reset/6543210987", "", "order=1001&code=SUMMER20;cart=x", "", uint64(3), true)
	f.Add("a%2Fb/@x/jane%40x.example", "0f1e2d3c4b5a69788796a5b4c3d2e1f0/x", "fbclid=other&&flag&p=+1 555 010 0999", "E.C.P.abc", uint64(4), false)
	f.Add("products/blue-cotton-t-shirt-2024", "2024/11/29", "gclid=Cj0&ttclid=E.C.P.x", "ClkKCQiA-_.", uint64(5), true)
	f.Fuzz(func(t *testing.T, prefix, suffix, query, clickID string, seed uint64, base62 bool) {
		// Bounded so that the URL, its '@' segments turned into "redacted" included, stays within
		// 2048 bytes and keeps its query.
		prefix, suffix, query, clickID = limit(prefix, 150), limit(suffix, 150), limit(query, 200), limit(clickID, 100)
		r := rand.New(rand.NewPCG(seed, seed>>32))
		alphabet := hexDigits
		if base62 {
			alphabet = base62Digits
		}
		token := randomString(r, alphabet, 32)
		fbclid := mapInto(clickID, clickIDDigits)
		gclid := randomString(r, clickIDDigits, 1+r.IntN(100))
		ttclid := "E.C.P." + randomString(r, clickIDDigits, r.IntN(90))

		before, after := escapeSegments(prefix), escapeSegments(suffix)
		in := "https://shop.example/" + strings.Join(slices.Concat(before, []string{token}, after), "/") +
			"?" + printableQuery(query) + "&fbclid=" + fbclid + "&gclid=" + gclid + "&ttclid=" + ttclid
		out, err := PageURL(in)
		if err != nil {
			t.Fatalf("PageURL(%q): %v", in, err)
		}
		p, err := url.Parse(out)
		if err != nil {
			t.Fatalf("PageURL(%q) = %q, which url.Parse refuses: %v", in, out, err)
		}
		segs := strings.Split(p.EscapedPath(), "/")
		if len(segs) != len(before)+len(after)+2 || segs[len(before)+1] != "redacted" {
			t.Fatalf("PageURL(%q) = %q: the token's segment %d is not \"redacted\"", in, out, len(before)+1)
		}
		for _, d := range decodings(p.EscapedPath(), false) {
			if strings.Contains(d, token) {
				t.Fatalf("PageURL(%q) = %q keeps the token %q in its path", in, out, token)
			}
		}
		params := rawParams(p.RawQuery)
		for _, want := range []string{"fbclid=" + fbclid, "gclid=" + gclid, "ttclid=" + ttclid} {
			if !slices.Contains(params, want) {
				t.Fatalf("PageURL(%q) = %q lost or changed %q", in, out, want)
			}
		}
		if again, err := PageURL(out); again != out || err != nil {
			t.Fatalf("PageURL(%q) = %q, but PageURL of that = %q, %v", in, out, again, err)
		}
	})
}

func limit(s string, n int) string { return s[:min(len(s), n)] }

func randomString(r *rand.Rand, alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

// mapInto maps each byte of s onto alphabet, so that every fuzzed string gives a value.
func mapInto(s, alphabet string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = alphabet[int(c)%len(alphabet)]
	}
	return string(b)
}

// escapeSegments splits a fuzzed path at '/' and escapes each segment, so that none holds a '/'.
func escapeSegments(path string) []string {
	if path == "" {
		return nil
	}
	segs := strings.Split(path, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return segs
}

// printableQuery keeps the printable ASCII of a fuzzed query but the '#' that would end it.
func printableQuery(q string) string {
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r > '~' || r == '#' {
			return -1
		}
		return r
	}, q)
}
