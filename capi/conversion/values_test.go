package conversion

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"net/url"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestParseValue(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"49.90", "49.90", true},
		{" 49.90\n", "49.90", true},
		{"+12", "12", true},
		{"007.50", "7.50", true},
		{".5", "0.5", true},
		{"5.", "5", true},
		{"0", "0", true},
		{"000", "0", true},
		{"0.000001", "0.000001", true},
		{"123456789012345.99", "123456789012345.99", true},
		{"", "", false},
		{".", "", false},
		{"-5", "", false},
		{"1,234.00", "", false},
		{"49,90", "", false},
		{"1e3", "", false},
		{"NaN", "", false},
		{"1.2.3", "", false},
		{"$10", "", false},
		{"1 000", "", false},
		{"١٢", "", false}, // Arabic-Indic digits
		{strings.Repeat("9", 25), "", false},
	}
	for _, tt := range tests {
		got, err := ParseValue(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseValue(%q) = %q, %v; want %q, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrValue) {
			t.Errorf("ParseValue(%q) error %v is not ErrValue", tt.in, err)
		}
	}
}

func TestParseCurrency(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"USD", "USD"}, {"eur", "EUR"}, {" Jpy ", "JPY"}, {"CHF", "CHF"},
		{"", ""}, {"US", ""}, {"USDD", ""}, {"ZZZ", ""}, {"XXX", ""}, {"U$D", ""}, {"€", ""}, {"usd\x00", ""},
	}
	for _, tt := range tests {
		got, err := ParseCurrency(tt.in)
		if got != tt.want || (err == nil) != (tt.want != "") {
			t.Errorf("ParseCurrency(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestCleanContentIDs(t *testing.T) {
	many := make([]string, MaxContentIDs+5)
	for i := range many {
		many[i] = "sku-" + strings.Repeat("x", i+1)
	}
	tests := []struct {
		name      string
		in        []string
		want      []string
		wantDrops []string
	}{
		{"comma-separated placeholder", []string{"a, b ,c"}, []string{"a", "b", "c"}, nil},
		{"repeats kept once, empties skipped", []string{"a", "", " , a ,b"}, []string{"a", "b"}, nil},
		{"too long dropped", []string{strings.Repeat("x", MaxContentIDLength+1), "ok"}, []string{"ok"}, []string{ErrContentID.Error()}},
		{"control characters dropped", []string{"a\tb", "a\x00", "ok"}, []string{"ok"}, []string{ErrContentID.Error()}},
		{"invalid UTF-8 dropped", []string{"\xff\xfe"}, nil, []string{ErrContentID.Error()}},
		{"unicode kept", []string{"tee-ß-ü"}, []string{"tee-ß-ü"}, nil},
		{"capped", many, many[:MaxContentIDs], []string{ErrContentIDs.Error()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, drops := CleanContentIDs(tt.in)
			var reasons []string
			for _, d := range drops {
				reasons = append(reasons, d.Reason)
				if d.Field != "content_ids" {
					t.Errorf("drop field %q", d.Field)
				}
			}
			if !reflect.DeepEqual(got, tt.want) || !reflect.DeepEqual(reasons, tt.wantDrops) {
				t.Errorf("CleanContentIDs = %q, %q; want %q, %q", got, reasons, tt.want, tt.wantDrops)
			}
		})
	}
}

func TestParseLocale(t *testing.T) {
	tests := []struct{ in, want string }{
		{"en-US,en;q=0.9", "en-US"},
		{"de;q=0.5, fr-CH", "fr-CH"},
		{"zh-Hant-TW", "zh-Hant-TW"},
		{"en_GB", "en-GB"},
		{"*", ""},
		{"", ""},
		{"not a language!!", ""},
		{strings.Repeat("en-US,", 100), ""},
	}
	for _, tt := range tests {
		if got := ParseLocale(tt.in); got != tt.want {
			t.Errorf("ParseLocale(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPageURL(t *testing.T) {
	tests := []struct {
		name, in, want string
		ok             bool
	}{
		{"a clean product URL is kept as it is",
			"https://shop.example/p?id=1", "https://shop.example/p?id=1", true},
		{"an email value goes, with the fragment",
			"https://shop.example/thanks?o=1&email=jane%40example.com&x=2#frag", "https://shop.example/thanks?o=1&x=2", true},
		{"a raw email value goes",
			"https://shop.example/t?e=jane@example.com", "https://shop.example/t", true},
		{"user info goes",
			"https://user:pass@shop.example/", "https://shop.example/", true},
		{"user info holding an email goes",
			"https://jane%40example.com:pw@shop.example/", "https://shop.example/", true},
		{"IP host and port are kept",
			"http://127.0.0.1:8080/a?b=c", "http://127.0.0.1:8080/a?b=c", true},
		{"an over-long query goes whole",
			"https://shop.example/?" + strings.Repeat("a", maxURLLength), "https://shop.example/", true},

		// The GET checkout form from the security review: every field lands in the thank-you URL.
		{"GET form fields go",
			"https://shop.example/thank-you?phone=%2B15550100&first_name=Jane&last_name=Doe&address1=1+Main+St&zip=90210",
			"https://shop.example/thank-you", true},
		{"GET form fields go, the order and the click ID stay",
			"https://shop.example/thank-you?order=1001&phone=%2B15550100&first_name=Jane&gclid=Cj0KCQiA-x_Y&last_name=Doe&address1=1+Main+St&zip=90210&total=49.90",
			"https://shop.example/thank-you?order=1001&gclid=Cj0KCQiA-x_Y&total=49.90", true},
		{"Shopify checkout fields with encoded brackets go",
			"https://shop.example/12345/checkouts/abc123?checkout%5Bemail%5D=jane%40example.com&checkout%5Bshipping_address%5D%5Bfirst_name%5D=Jane" +
				"&checkout%5Bshipping_address%5D%5Blast_name%5D=Doe&checkout%5Bshipping_address%5D%5Baddress1%5D=1+Main+St" +
				"&checkout%5Bshipping_address%5D%5Bzip%5D=90210&checkout%5Bshipping_address%5D%5Bphone%5D=%2B15550100999&step=shipping_method",
			"https://shop.example/12345/checkouts/abc123?step=shipping_method", true},
		{"Shopify checkout fields with raw brackets go",
			"https://shop.example/checkout?checkout[shipping_address][city]=Springfield&checkout[shipping_address][province]=IL&checkout[shipping_address][country]=US&previous_step=contact_information",
			"https://shop.example/checkout?previous_step=contact_information", true},
		{"Shopify product with variant, fbclid and utm tags is kept",
			"https://shop.example/products/tee?variant=39912345678901&fbclid=IwAR2F4-Gx_7q&utm_source=facebook&utm_medium=paid&utm_campaign=2024-11-29",
			"https://shop.example/products/tee?variant=39912345678901&fbclid=IwAR2F4-Gx_7q&utm_source=facebook&utm_medium=paid&utm_campaign=2024-11-29", true},
		{"Shopify collection filters are kept",
			"https://shop.example/collections/all?filter.v.option.size=M&filter.v.price.gte=10&sort_by=price-ascending&page=2",
			"https://shop.example/collections/all?filter.v.option.size=M&filter.v.price.gte=10&sort_by=price-ascending&page=2", true},
		{"WooCommerce order key goes: it opens the order",
			"https://shop.example/checkout/order-received/1234/?key=wc_order_AbC123xYz&utm_nooverride=1",
			"https://shop.example/checkout/order-received/1234/?utm_nooverride=1", true},
		{"WooCommerce billing and shipping fields go",
			"https://shop.example/checkout/?billing_first_name=Jane&billing_last_name=Doe&billing_company=Doe+Plumbing&billing_country=US" +
				"&billing_address_1=1+Main+St&billing_address_2=Apt+4&billing_city=Springfield&billing_state=IL&billing_postcode=62701" +
				"&billing_phone=555-010-0999&billing_email=jane%40example.com&shipping_first_name=Jane&order_comments=Ring+twice" +
				"&payment_method=cod&terms=on",
			"https://shop.example/checkout/?payment_method=cod&terms=on", true},
		{"Referer of a thank-you page: double-encoded email and spaced phone go",
			"https://shop.example/thank-you?order=1001&e=jane%2540example.com&p=%2B1+555+010+0999&utm_source=google&gclid=Cj0KCQiA",
			"https://shop.example/thank-you?order=1001&utm_source=google&gclid=Cj0KCQiA", true},
		{"triple-encoded email goes",
			"https://shop.example/t?r=jane%252540example.com&k=1", "https://shop.example/t?k=1", true},
		{"email behind a broken escape goes",
			"https://shop.example/t?r=jane%40example.com%zz&k=1", "https://shop.example/t?k=1", true},
		{"camelCase, prefixed and double-encoded names go",
			"https://shop.example/t?customerEmail=x&shippingCity=Springfield&billing%255Bzip%255D=90210&E-Mail=x&First+Name=Jane&ok=1",
			"https://shop.example/t?ok=1", true},
		{"numbered and indexed names go, an item's name too",
			"https://shop.example/t?email2=x&address_line2=Apt+4&phones[0]=x&items[0][name]=Tee&q=shoes",
			"https://shop.example/t?q=shoes", true},
		{"credentials go",
			"https://shop.example/reset?password=hunter2&token=abc&access_token=xyz&api_key=k&sid=s1&lang=en",
			"https://shop.example/reset?lang=en", true},
		{"a piece after ';' is judged too",
			"https://shop.example/t?a=1;email=x&b=2", "https://shop.example/t?b=2", true},
		{"a bare parameter holding an email goes",
			"https://shop.example/t?jane@example.com&b=2", "https://shop.example/t?b=2", true},

		// The phone rule: plain numbers are IDs, prices, timestamps; a '+' or grouping makes a phone.
		{"IDs, prices and timestamps are not phone numbers",
			"https://shop.example/t?order=1001&variant=39912345678901&total=12345.67&ts=1700000000&ref=0012345",
			"https://shop.example/t?order=1001&variant=39912345678901&total=12345.67&ts=1700000000&ref=0012345", true},
		{"a phone with spaces goes",
			"https://shop.example/t?p=+1 555 010 0999&k=1", "https://shop.example/t?k=1", true},
		{"a phone with a raw plus goes",
			"https://shop.example/t?p=+15550100999&k=1", "https://shop.example/t?k=1", true},
		{"grouped phones and dates go",
			"https://shop.example/t?a=(555)+010-0999&b=555.010.0999&c=1990-01-02&k=1", "https://shop.example/t?k=1", true},
		{"short numbers with dashes stay",
			"https://shop.example/t?size=10-12&sku=SKU-1,SKU-2&v=1.2.3", "https://shop.example/t?size=10-12&sku=SKU-1,SKU-2&v=1.2.3", true},

		// Paths: a segment with an email is replaced, the rest of the URL stays.
		{"an email in the path is replaced",
			"https://shop.example/account/jane.doe@example.com/orders?page=2", "https://shop.example/account/redacted/orders?page=2", true},
		{"an escaped email in the path is replaced",
			"https://shop.example/account/jane.doe%40example.com/orders", "https://shop.example/account/redacted/orders", true},
		{"a double-encoded email in the path is replaced",
			"https://shop.example/u/jane.doe%2540example.com", "https://shop.example/u/redacted", true},
		{"an escaped slash stays one segment",
			"https://shop.example/a%2Fb/jane%40x.example/c%20d", "https://shop.example/a%2Fb/redacted/c%20d", true},

		{"kept parameters keep their raw form, empties included",
			"https://shop.example/s?q=red%20shoes&&size=M&empty=&flag&email=x", "https://shop.example/s?q=red%20shoes&&size=M&empty=&flag", true},

		{"a host hiding an '@' behind an escape is refused", "https://ex%2540ample.com/", "", false},
		{"empty is nothing", "", "", true},
		{"relative is refused", "/relative", "", false},
		{"javascript is refused", "javascript:alert(1)", "", false},
		{"ftp is refused", "ftp://shop.example/", "", false},
		{"an over-long path is refused", "https://shop.example/" + strings.Repeat("a", maxURLLength), "", false},
		{"invalid UTF-8 is refused", "https://shop.example/\xff", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PageURL(tt.in)
			if got != tt.want || (err == nil) != tt.ok {
				t.Fatalf("PageURL(%q) = %q, %v; want %q, ok %v", tt.in, got, err, tt.want, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrSourceURL) {
				t.Errorf("error %v is not ErrSourceURL", err)
			}
			if again, err := PageURL(got); again != got || err != nil {
				t.Errorf("PageURL(%q) = %q, %v; not idempotent", got, again, err)
			}
		})
	}
}

// TestPhoneNumber pins the rule for phone-like values, which decides what an unnamed parameter
// loses.
func TestPhoneNumber(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"+15550100999", true},
		{"+1 555 010 0999", true},
		{" +44 20 7946 0958 ", true},
		{"(555) 010-0999", true},
		{"555-0100", true},
		{"555.010.0999", true},
		{"1990-01-02", true},
		{"+1234567", true},
		{"1001", false},              // an order number
		{"39912345678901", false},    // a Shopify variant ID
		{"1700000000", false},        // a Unix timestamp
		{"12345.67", false},          // a price
		{"0015550100999", false},     // bare digits cannot be told from an ID
		{"555-010", false},           // too few digits
		{"+1234567890123456", false}, // more than E.164's 15 digits
		{"555-010-0999 ext", false},
		{"1+5550100999", false}, // a '+' only leads
		{"++15550100999", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := phoneNumber(tt.in); got != tt.want {
			t.Errorf("phoneNumber(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// TestPageURLDropsEveryNameCaptureRecognizes keeps personalNames in step with package capture's
// table of form field names: every name capture recognizes in a posted form, bare or with one of
// its context prefixes, is a name PageURL removes from a URL. capture's table is unexported, so it
// is read from its source; a name added there fails this test until it is removed here too.
func TestPageURLDropsEveryNameCaptureRecognizes(t *testing.T) {
	names, prefixes := captureNames(t)
	if len(names) < 50 || len(prefixes) < 5 {
		t.Fatalf("read %d names and %d prefixes from capture's names.go; its layout changed", len(names), len(prefixes))
	}
	for _, n := range names {
		forms := []string{n, strings.ToUpper(n), "checkout[" + n + "]", "customer." + n, "checkout%5B" + n + "%5D"}
		for _, p := range prefixes {
			forms = append(forms, p+n)
		}
		for _, f := range forms {
			in := "https://shop.example/p?keep=1&" + f + "=x&also=2"
			if got, err := PageURL(in); got != "https://shop.example/p?keep=1&also=2" || err != nil {
				t.Errorf("PageURL(%q) = %q, %v; want %q removed", in, got, err, f)
			}
		}
	}
}

// captureNames reads the keys of capture's builtin map and its contextPrefixes from names.go.
func captureNames(t *testing.T) (names, prefixes []string) {
	t.Helper()
	file, err := parser.ParseFile(token.NewFileSet(), filepath.Join("..", "capture", "names.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	unquote := func(e ast.Expr) string {
		lit, ok := e.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			t.Fatalf("capture's names.go: %T where a string literal was expected", e)
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, decl := range file.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != token.VAR {
			continue
		}
		for _, spec := range gen.Specs {
			vs := spec.(*ast.ValueSpec)
			if len(vs.Names) != 1 || len(vs.Values) != 1 {
				continue
			}
			lit, ok := vs.Values[0].(*ast.CompositeLit)
			if !ok {
				continue
			}
			switch vs.Names[0].Name {
			case "builtin":
				for _, el := range lit.Elts {
					names = append(names, unquote(el.(*ast.KeyValueExpr).Key))
				}
			case "contextPrefixes":
				for _, el := range lit.Elts {
					prefixes = append(prefixes, unquote(el))
				}
			}
		}
	}
	return names, prefixes
}

// BenchmarkPageURL compares PageURL with parsing and printing the same URL, its floor.
func BenchmarkPageURL(b *testing.B) {
	urls := map[string]string{
		"clean":    "https://shop.example/products/tee?variant=39912345678901&utm_source=facebook&utm_medium=paid&fbclid=IwAR2F4-Gx_7q",
		"GET form": "https://shop.example/thank-you?order=1001&phone=%2B15550100&first_name=Jane&last_name=Doe&address1=1+Main+St&zip=90210&gclid=Cj0KCQiA",
		"path":     "https://shop.example/account/jane.doe%40example.com/orders?page=2",
	}
	for _, name := range []string{"clean", "GET form", "path"} {
		raw := urls[name]
		b.Run("baseline=parse+string/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				u, _ := url.Parse(raw)
				_ = u.String()
			}
		})
		b.Run("PageURL/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := PageURL(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
