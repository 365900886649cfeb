package conversion

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"math/rand/v2"
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

		// Secret access tokens in the path: each opens a buyer's order or account to whoever holds
		// the URL, so the segment is replaced and the shape, IDs and words of the page stay.
		{"Shopify order status token goes, the shop ID stays",
			"https://shop.example.com/12345678/orders/0f1e2d3c4b5a69788796a5b4c3d2e1f0",
			"https://shop.example.com/12345678/orders/redacted", true},
		{"Shopify order status authenticate link loses its token and its key",
			"https://shop.example.com/12345678/orders/0f1e2d3c4b5a69788796a5b4c3d2e1f0/authenticate?key=9a8b7c6d5e4f30211203f4e5d6c7b8a9&utm_source=shop_email",
			"https://shop.example.com/12345678/orders/redacted/authenticate?utm_source=shop_email", true},
		{"Shopify checkout thank-you token goes",
			"https://shop.example.com/checkouts/c/7a2f3b9e5c1d4e8f9a0b1c2d3e4f5a6b/thank-you",
			"https://shop.example.com/checkouts/c/redacted/thank-you", true},
		{"Shopify one-page checkout base62 token goes",
			"https://shop.example.com/checkouts/cn/hWN4tNK8MzT3t1aFGWwDWxAD/thank-you?locale=en-US",
			"https://shop.example.com/checkouts/cn/redacted/thank-you?locale=en-US", true},
		{"Shopify one-page checkout base64 token goes",
			"https://shop.example.com/checkouts/cn/Z2NwLXVzLWNlbnRyYWwxOjAxSkFCQ0RFRkdISUpLTE1OT1BRUlM/processing",
			"https://shop.example.com/checkouts/cn/redacted/processing", true},
		{"older Shopify thank_you token goes",
			"https://shop.example.com/12345678/checkouts/4B5A69788796A5B4C3D2E1F00F1E2D3C/thank_you",
			"https://shop.example.com/12345678/checkouts/redacted/thank_you", true},
		{"WooCommerce order received keeps its order ID and loses its key",
			"https://shop.example/checkout/order-received/1234/?key=wc_order_5f3a9B2cD1e0F",
			"https://shop.example/checkout/order-received/1234/", true},
		{"account activation token with its timestamp goes, the customer ID stays",
			"https://shop.example.com/account/activate/6543210987/5f2b9e8c7d6a5b4c3d2e1f0a9b8c7d6e-1700000000",
			"https://shop.example.com/account/activate/6543210987/redacted", true},
		{"account password reset token goes",
			"https://shop.example.com/account/reset/6543210987/e3b0c44298fc1c149afbf4c8996fb924-1732838400",
			"https://shop.example.com/account/reset/6543210987/redacted", true},
		{"Laravel reset token of 64 hex goes",
			"https://shop.example/password/reset/2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
			"https://shop.example/password/reset/redacted", true},
		{"WordPress lost-password link loses its key and the login",
			"https://shop.example/my-account/lost-password/?show-reset-form=true&key=Xk3aB9QwErTyUi0pLm2N&login=janedoe",
			"https://shop.example/my-account/lost-password/?show-reset-form=true", true},
		{"base64url token cut by its own dash and underscore goes",
			"https://shop.example/verify/Xk3_9aBQwEr-TyUiOpLmZ",
			"https://shop.example/verify/redacted", true},
		{"a JWT in the path goes",
			"https://shop.example/magic/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV/continue",
			"https://shop.example/magic/redacted/continue", true},
		{"an escaped token goes",
			"https://shop.example/orders/%30f1e2d3c4b5a69788796a5b4c3d2e1f0", "https://shop.example/orders/redacted", true},
		{"a UUID goes, alone or inside a segment",
			"https://shop.example/order/123e4567-e89b-42d3-a456-426614174000/view/order-0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
			"https://shop.example/order/redacted/view/redacted", true},
		{"a number longer than any 64-bit ID goes",
			"https://shop.example/c/123456789012345678901/x", "https://shop.example/c/redacted/x", true},
		{"a token in the path goes and the click IDs in the query keep their raw form",
			"https://shop.example/checkouts/c/7a2f3b9e5c1d4e8f9a0b1c2d3e4f5a6b/thank-you?fbclid=IwAR2F4Gx7qZk9LmN0pQrS1tUvW2xYz3AbC4dEf5&gclid=Cj0KCQiA4NWrBhD-ARIsAFCKwWt0b1c2d3e4f5a6b7c8d9e0f&ttclid=E.C.P.CqgBa1B2c3D4e5F6g7H8i9J0&gbraid=0AAAAADk8mJ0x1Y2Z3a4b5c6d7e8f9&wbraid=ClkKCQiA1b2C3d4E5f6&utm_content=0f1e2d3c4b5a69788796a5b4c3d2e1f0",
			"https://shop.example/checkouts/c/redacted/thank-you?fbclid=IwAR2F4Gx7qZk9LmN0pQrS1tUvW2xYz3AbC4dEf5&gclid=Cj0KCQiA4NWrBhD-ARIsAFCKwWt0b1c2d3e4f5a6b7c8d9e0f&ttclid=E.C.P.CqgBa1B2c3D4e5F6g7H8i9J0&gbraid=0AAAAADk8mJ0x1Y2Z3a4b5c6d7e8f9&wbraid=ClkKCQiA1b2C3d4E5f6&utm_content=0f1e2d3c4b5a69788796a5b4c3d2e1f0", true},

		// Ordinary paths are no tokens: handles, slugs, IDs, dates, short codes and SKUs stay.
		{"product and collection handles stay",
			"https://shop.example/collections/summer-sale/products/blue-cotton-t-shirt-2024",
			"https://shop.example/collections/summer-sale/products/blue-cotton-t-shirt-2024", true},
		{"numeric IDs and dates stay",
			"https://shop.example/12345678/orders/1001/2024/11/29/39912345678901/1700000000000/18446744073709551615",
			"https://shop.example/12345678/orders/1001/2024/11/29/39912345678901/1700000000000/18446744073709551615", true},
		{"short codes, SKUs and model numbers stay",
			"https://shop.example/p/AB12/SKU-1001-XL/products/iphone-15-pro-max-case-256gb/nike-air-max-90-DH8010-100/1Z999AA10123456784",
			"https://shop.example/p/AB12/SKU-1001-XL/products/iphone-15-pro-max-case-256gb/nike-air-max-90-DH8010-100/1Z999AA10123456784", true},
		{"long slugs, title case and words run together stay",
			"https://shop.example/blogs/news/10-tips-for-choosing-the-right-running-shoes-in-2024/Blue-Cotton-T-Shirt/PlayStation5-Slim-Bundle-2024/iPhone15ProMax-Leather-Case/Account/ForgotPasswordConfirmation/ContactUsThankYouPage/Donaudampfschifffahrtsgesellschaft/FREESHIPPINGONALLORDERS",
			"https://shop.example/blogs/news/10-tips-for-choosing-the-right-running-shoes-in-2024/Blue-Cotton-T-Shirt/PlayStation5-Slim-Bundle-2024/iPhone15ProMax-Leather-Case/Account/ForgotPasswordConfirmation/ContactUsThankYouPage/Donaudampfschifffahrtsgesellschaft/FREESHIPPINGONALLORDERS", true},
		{"checkout steps, locales and escaped titles stay",
			"https://shop.example/en-us/checkout/order-received/1234/search/Summer%20Sale%202024%20Best%20Deals/thank_you/redacted",
			"https://shop.example/en-us/checkout/order-received/1234/search/Summer%20Sale%202024%20Best%20Deals/thank_you/redacted", true},

		// Query values are judged by the token rule only where the name says a token may be there.
		{"token-named parameters lose token values and keep harmless ones",
			"https://shop.example/t?order=1001&code=SUMMER20&cart=c1-7a2f3b9e5c1d4e8f9a0b1c2d3e4f5a6b&checkout=Z2NwLXVzLWNlbnRyYWwxOjAxSkFC&hash=abc&sort_order=asc&PHPSESSID=k3j4h5g6f7d8s9a0p1o2i3u4&auth_code=4%2F0AX4XfWhXYZabc123DEF456ghi789",
			"https://shop.example/t?order=1001&code=SUMMER20&hash=abc&sort_order=asc", true},
		{"credential names go whatever their value",
			"https://shop.example/t?reset_password_token=x&new_password=y&_wpnonce=z&signature=s&sig=t&order_key=wc_order_A&page=2",
			"https://shop.example/t?page=2", true},
		{"a token value under another name stays: the query at large holds click IDs",
			"https://shop.example/t?ref=0f1e2d3c4b5a69788796a5b4c3d2e1f0&gclid=Cj0KCQiA4NWrBhD",
			"https://shop.example/t?ref=0f1e2d3c4b5a69788796a5b4c3d2e1f0&gclid=Cj0KCQiA4NWrBhD", true},

		{"kept parameters keep their raw form, empties included",
			"https://shop.example/s?q=red%20shoes&&size=M&empty=&flag&email=x", "https://shop.example/s?q=red%20shoes&&size=M&empty=&flag", true},

		{"a host hiding an '@' behind an escape is refused", "https://ex%2540ample.com/", "", false},
		{"empty is nothing", "", "", true},
		{"relative is refused", "/relative", "", false},
		{"javascript is refused", "javascript:alert(1)", "", false},
		{"ftp is refused", "ftp://shop.example/", "", false},
		// A path of words: one run of 2048 letters a–f is a token, and "redacted" would fit.
		{"an over-long path is refused", "https://shop.example/" + strings.Repeat("sale/", maxURLLength/5+1), "", false},
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

// TestTokenLike pins the rule for secret tokens, which decides what path segment is redacted and
// what value of a token-named parameter is dropped; the names give the reason for each verdict.
func TestTokenLike(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"0f1e2d3c4b5a6978", true},                                             // 16 hex digits: 64 bits
		{"0f1e2d3c4b5a697", false},                                             // 15 are too few
		{"DEADBEEFDEADBEEF", true},                                             // letters alone are hex too
		{"5f2b9e8c7d6a5b4c3d2e1f0a9b8c7d6e-1700000000", true},                  // activation: hex and a timestamp
		{"1234567890123456", false},                                            // 16 decimal digits: an ID
		{"18446744073709551615", false},                                        // the largest 64-bit ID
		{"123456789012345678901", true},                                        // one digit more
		{"507f1f77bcf86cd799439011", true},                                     // a MongoDB ObjectID: a known false positive
		{"123e4567-e89b-42d3-a456-426614174000", true},                         // a UUID
		{"order-123E4567-E89B-42D3-A456-426614174000", true},                   // inside a segment, upper case
		{"0f1e2d3c-4b5a6978-8796a5b4-c3d2e1f0", true},                          // 32 hex in other groups
		{"2024-11-29-2024-11-30-2024-12-01-2024-12-02", false},                 // dates: no hex letter
		{"bead-face-cafe-fade-dead-beef-feed-deaf-babe-aced", false},           // words of a–f: no digit
		{"ab12-cd34-ef56", false},                                              // too few hex digits
		{"0f1e2d3c_4b5a6978_8796a5b4_c3d2e1f0", true},                          // 32 hex in groups joined by underscores
		{"Summer%20Sale%202024%20Best%20Deals", false},                         // escaped words: judged decoded by the caller
		{"hWN4tNK8MzT3t1aFGWwDWxAD", true},                                     // base62, 24
		{"hWN4tNK8MzT3t1aFGWwD", true},                                         // base62, 20
		{"hWN4tNK8MzT3t1aFGWw", false},                                         // 19: too short to tell from a code
		{"Xk3_9aBQwEr-TyUiOpLmZ", true},                                        // base64url cut by '-' and '_'
		{"k3j4h5g6f7d8s9a0p1o2", true},                                         // one case, letters and digits, 20
		{"tshirtsummer2024edition", true},                                      // the same: a known false positive
		{"k3j4h5-g6f7d8-s9a0p1-o2i3u4", false},                                 // short one-case groups: a known miss
		{"ForgotPasswordConfirmation", false},                                  // words run together
		{"ContactUsThankYouPage", false},                                       // a two-letter word has its vowel
		{"ForgotPasswordConfirmatioN", true},                                   // a capital alone at the end is no word
		{"ForgotPassword2Confirmation", true},                                  // long: digits break the words
		{"iPhone15ProMax-Leather-Case", false},                                 // short: digits after a word
		{"MacBookPro16-M3Max-1TB", false},                                      // a lone capital before digits
		{"McDonalds-Happy-Meal-Toy", true},                                     // "Mc" has no vowel: a known false positive
		{"uGms7Vqq6uhJgcw5BiZm", true},                                         // random mixed case and digits
		{"QwErTyUiOpAsDfGhJkLz", true},                                         // random mixed case, letters alone
		{"Donaudampfschifffahrtsgesellschaft", false},                          // one capitalized word
		{"FREESHIPPINGONALLORDERS", false},                                     // one case, letters alone
		{"blue-cotton-t-shirt-2024", false},                                    // a handle
		{"samsung-galaxy-s24-ultra-512gb-titanium-black", false},               // codes in a handle
		{"nike-air-max-90-DH8010-100", false},                                  // a style code
		{"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.SflKxwRJSMeKKF2QT4", true}, // a JWT
		{"redacted", false},                                                    // PageURL's own replacement
		{"", false},
	}
	for _, tt := range tests {
		if got := tokenLike(tt.in); got != tt.want {
			t.Errorf("tokenLike(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// TestTokenLikeCatchesRandomTokens draws random tokens of the sizes shops use, from a fixed seed,
// and finds every one of them a token.
func TestTokenLikeCatchesRandomTokens(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, kind := range []struct {
		name, alphabet string
		length         int
	}{
		{"32 hex", "0123456789abcdef", 32},
		{"32 HEX", "0123456789ABCDEF", 32},
		{"32 base62", base62Digits, 32},
		{"43 base64url (32 bytes)", base62Digits + "-_", 43},
	} {
		for range 20000 {
			if tok := randomString(r, kind.alphabet, kind.length); !tokenLike(tok) {
				t.Errorf("%s: tokenLike(%q) = false", kind.name, tok)
			}
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
		"token":    "https://shop.example/checkouts/cn/hWN4tNK8MzT3t1aFGWwDWxAD/thank-you?locale=en-US&gclid=Cj0KCQiA",
		"slug":     "https://shop.example/collections/summer-sale/products/blue-cotton-t-shirt-2024?variant=39912345678901",
	}
	for _, name := range []string{"clean", "GET form", "path", "token", "slug"} {
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
