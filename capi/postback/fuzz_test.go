package postback

import (
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// Every fuzz target checks the same contract: Parse never panics; an error wraps exactly one of
// ErrUnauthorized, ErrMalformed, ErrPing and comes with a zero Notification; a success has the
// source's name and a non-empty IdempotencyKey. Targets that sign the fuzzed body exercise the
// parsers behind verification; their unsigned mode asserts that nothing unauthenticated parses.

func checkContract(t *testing.T, src Source, n Notification, err error) {
	t.Helper()
	if err != nil {
		kinds := 0
		for _, e := range []error{ErrUnauthorized, ErrMalformed, ErrPing} {
			if errors.Is(err, e) {
				kinds++
			}
		}
		if kinds != 1 {
			t.Fatalf("error %q wraps %d of the sentinel errors", err, kinds)
		}
		if !isZero(n) {
			t.Fatalf("error %v with a notification %+v", err, n)
		}
		return
	}
	if n.IdempotencyKey == "" || n.Source != src.Name() {
		t.Fatalf("success without a key or source: %+v", n)
	}
	if n.Value != "" {
		if d, ok := Decimal(n.Value); !ok || d != n.Value {
			t.Fatalf("value %q is not canonical", n.Value)
		}
	}
}

func isZero(n Notification) bool {
	return n.Source == "" && n.IdempotencyKey == "" && n.OrderID == "" && n.Customer.IsZero() && len(n.Join.TrackingIDs) == 0 && len(n.Products) == 0
}

func FuzzClickBank(f *testing.F) {
	f.Add([]byte(`{"receipt":"R1","transactionType":"SALE","totalOrderAmount":1.5,"trackingCodes":["ABC"],"customer":{"billing":{"email":"a@b.co"}}}`), false)
	f.Add(readTestdata(f, "clickbank_v8_sale.json"), false)
	f.Add([]byte(`{"receipt":"R1"}`), false)
	f.Add(readTestdata(f, "clickbank_published_v6.json"), true)
	f.Add(clickBankEnvelope(f, "OTHERSECRET00000", cbIV, []byte(`{"receipt":"R1","transactionType":"SALE"}`), false), true)
	src := ClickBank{Secrets: []string{cbSecret}}
	f.Fuzz(func(t *testing.T, data []byte, raw bool) {
		if raw {
			n, err := src.Parse(Request{Method: http.MethodPost, Body: data})
			checkContract(t, src, n, err)
			if err == nil {
				t.Fatalf("a body not encrypted under our secret was accepted: %+v", n)
			}
			return
		}
		for _, zero := range []bool{false, true} {
			if zero && len(data) > 0 && data[len(data)-1] <= 0x20 {
				continue // NUL padding cannot carry trailing control bytes
			}
			n, err := src.Parse(Request{Method: http.MethodPost, Body: clickBankEnvelope(t, cbSecret, cbIV, data, zero)})
			checkContract(t, src, n, err)
		}
	})
}

func FuzzJVZoo(f *testing.F) {
	f.Add("ctransreceipt=R1&ctransaction=SALE&ctransamount=9.99&ccustname=Jane+Doe&cvendthru=clickid%3Dabc", true)
	f.Add("ctransreceipt=R1&ctransaction=SALE&cverify=ABCDEF12", false)
	f.Add("a=%zz", true)
	src := JVZoo{Secrets: []string{"JS"}}
	f.Fuzz(func(t *testing.T, body string, sign bool) {
		if sign {
			if q, err := url.ParseQuery(body); err == nil {
				q.Del("cverify")
				body = string(jvzooForm("JS", q))
			}
		}
		n, err := src.Parse(Request{Method: http.MethodPost, Body: []byte(body)})
		checkContract(t, src, n, err)
		if !sign && err == nil {
			t.Fatalf("an unsigned body was accepted: %q", body)
		}
	})
}

func FuzzDigistore24(f *testing.F) {
	f.Add("event=on_payment&order_id=A1&amount_brutto=19.99&currency=EUR&custom=clickid%3Dabc", true)
	f.Add("event=connection_test", true)
	f.Add("event=on_payment&order_id=A1&sha_sign=00", false)
	src := Digistore24{Passphrases: []string{"P"}}
	f.Fuzz(func(t *testing.T, body string, sign bool) {
		if sign {
			if q, err := url.ParseQuery(body); err == nil {
				q.Del("sha_sign")
				q.Del("SHASIGN")
				q.Set("sha_sign", digistoreSign(q, "P"))
				body = q.Encode()
			}
		}
		n, err := src.Parse(Request{Method: http.MethodPost, Body: []byte(body)})
		checkContract(t, src, n, err)
		if !sign && err == nil {
			t.Fatalf("an unsigned body was accepted: %q", body)
		}
	})
}

// digistoreSign is the sending side of Digistore24's sha_sign, for the fuzz target.
func digistoreSign(q url.Values, pass string) string {
	var keys []string
	for k, v := range q {
		if v[len(v)-1] != "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	h := sha512.New()
	for _, k := range keys {
		h.Write([]byte(k + "=" + q[k][len(q[k])-1] + pass))
	}
	return strings.ToUpper(hex.EncodeToString(h.Sum(nil)))
}

func FuzzShopify(f *testing.F) {
	f.Add(readTestdata(f, "shopify_orders_paid.json"), "orders/paid", "", true)
	f.Add([]byte(`{"id":1,"financial_status":"pending"}`), "orders/create", "", true)
	f.Add([]byte(`{"id":9,"order_id":1}`), "refunds/create", "", true)
	f.Add([]byte(`{"id":1}`), "orders/paid", "aEZTyZ9Qm6AR6sitb6DMcVIQ3IPyuf9Veyj55/LE8qM=", false)
	src := Shopify{Secrets: []string{"s"}}
	f.Fuzz(func(t *testing.T, body []byte, topic, sig string, sign bool) {
		req := shopifyRequest("s", topic, body)
		if !sign {
			req.Header.Set("X-Shopify-Hmac-Sha256", sig)
		}
		n, err := src.Parse(req)
		checkContract(t, src, n, err)
		if !sign && err == nil && sig != hmacBase64("s", body) {
			t.Fatal("an unsigned body was accepted")
		}
	})
}

func FuzzWooCommerce(f *testing.F) {
	f.Add(readTestdata(f, "woocommerce_order_processing.json"), "", true)
	f.Add([]byte(`{"id":1}`), "", true)
	f.Add([]byte("webhook_id=12"), "", false)
	src := WooCommerce{Secrets: []string{"w"}}
	f.Fuzz(func(t *testing.T, body []byte, sig string, sign bool) {
		req := wooRequest("w", body)
		if !sign {
			req.Header.Set("X-WC-Webhook-Signature", sig)
		}
		n, err := src.Parse(req)
		checkContract(t, src, n, err)
		if !sign && err == nil && sig != hmacBase64("w", body) {
			t.Fatal("an unsigned body was accepted")
		}
	})
}

func FuzzStripe(f *testing.F) {
	f.Add(readTestdata(f, "stripe_checkout_completed.json"), "", int64(0), true)
	f.Add([]byte(`{"id":"evt_1","type":"charge.refunded","data":{"object":{"amount_refunded":5,"currency":"usd"}}}`), "", int64(10), true)
	f.Add([]byte(`{"id":"evt_test_webhook","object":"event"}`), "t=1700000000,v1=d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990", int64(0), false)
	const now = 1700000000
	src := Stripe{Secrets: []string{"whsec_f"}, Now: fixedClock(now)}
	f.Fuzz(func(t *testing.T, body []byte, header string, skew int64, sign bool) {
		if sign {
			header = "t=" + itoa(now+skew%1000) + ",v1=" + stripeSignature("whsec_f", now+skew%1000, body)
		}
		n, err := src.Parse(stripeRequest(header, body))
		checkContract(t, src, n, err)
		if !sign && err == nil {
			t.Fatal("an unsigned body was accepted")
		}
		if sign && (skew%1000 > 300 || skew%1000 < -300) && !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("a signature %ds off was not refused: %v", skew%1000, err)
		}
	})
}

func FuzzGeneric(f *testing.F) {
	f.Add("GET", "cid=abc&payout=1.5&txid=T1&token=fuzztoken", "", "", "")
	f.Add("POST", "", "application/x-www-form-urlencoded", "clickid=a&sum=2&token=fuzztoken&email=x%40y.z", "")
	f.Add("POST", "", "application/json", `{"click_id":"a","amount":3,"status":"refund"}`, "Bearer fuzztoken")
	f.Add("GET", "cid=abc", "", "", "Bearer wrong")
	src := Generic{Token: "fuzztoken"}
	f.Fuzz(func(t *testing.T, method, query, contentType, body, auth string) {
		q, _ := url.ParseQuery(query)
		req := Request{Method: method, Query: q, Body: []byte(body), Header: http.Header{"Content-Type": {contentType}, "Authorization": {auth}}}
		n, err := src.Parse(req)
		checkContract(t, src, n, err)
		if err == nil && !mentionsToken(q, body, auth, "fuzztoken") {
			t.Fatal("a postback without the token was accepted")
		}
	})
}

// mentionsToken reports whether the token appears in the request in any form a parser could read.
func mentionsToken(q url.Values, body, auth, token string) bool {
	if strings.Contains(auth, token) || strings.Contains(q.Encode(), token) || strings.Contains(body, token) {
		return true
	}
	if form, _ := url.ParseQuery(body); strings.Contains(strings.Join(form["token"], ""), token) {
		return true
	}
	var m map[string]any
	if json.Unmarshal([]byte(body), &m) == nil {
		if s, _ := m["token"].(string); s == token {
			return true
		}
	}
	return false
}

var canonical = regexp.MustCompile(`^-?(0|[1-9][0-9]*)\.[0-9]{2,}$`)

func FuzzDecimal(f *testing.F) {
	for _, s := range []string{"19.99", "1e2", "-0.0", "00.10", "1.5E-3", "abc", "1e-30", "+.5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := Decimal(s)
		if !ok {
			if d != "" {
				t.Fatalf("Decimal(%q) failed but returned %q", s, d)
			}
			return
		}
		if !canonical.MatchString(d) {
			t.Fatalf("Decimal(%q) = %q is not canonical", s, d)
		}
		if again, _ := Decimal(d); again != d {
			t.Fatalf("Decimal is not idempotent: %q → %q → %q", s, d, again)
		}
	})
}
