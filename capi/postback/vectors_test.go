package postback

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"testing"
	"time"
)

// The vectors of spec/postbacks.md §9, exactly as published there.

func TestSpecVectorClickBankPublished(t *testing.T) {
	const secret = "G3B7H7T87J2E0VFN"
	if got := string(clickBankKey(secret)); got != "5c4cb16b116f92f7f500caa4774103d8" {
		t.Fatalf("key = %s", got)
	}
	body := readTestdata(t, "clickbank_published_v6.json")

	// The plaintext itself: 766 bytes after PKCS#7 removal, with the published digest.
	var env struct{ Notification, IV string }
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatal(err)
	}
	ct, _ := base64.StdEncoding.DecodeString(env.Notification)
	iv, _ := base64.StdEncoding.DecodeString(env.IV)
	if string(iv) != "M0EwQTZDMjlBRQ==" {
		t.Fatalf("iv bytes = %q", iv)
	}
	block, _ := aes.NewCipher(clickBankKey(secret))
	plain := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(plain, ct)
	unpadded := unpadClickBank(plain)
	sum := sha256.Sum256(unpadded)
	if len(unpadded) != 766 || hex.EncodeToString(sum[:]) != "28e0b524a8037c50f68c267bb72c969142c363a1c4e8af1484dfec768b6fe48a" {
		t.Fatalf("plaintext: %d bytes, sha256 %x", len(unpadded), sum)
	}

	n, err := ClickBank{Secrets: []string{"WRONGSECRET12345", secret}, Vendor: "testvendornickname"}.Parse(Request{Method: http.MethodPost, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	want := Notification{
		Source:         "clickbank",
		Kind:           Sale,
		Test:           true, // the masked receipt of ClickBank's Test button
		IdempotencyKey: "********|SALE",
		OrderID:        "********",
		Value:          "1.00",
		Currency:       "USD",
		Occurred:       time.Date(2023, 7, 28, 2, 7, 57, 0, time.UTC),
		Customer:       Customer{Emails: []string{"testuser@somesite.com"}, FirstName: "TEST", LastName: "USER"},
		Products:       []Product{{ID: "1", Title: "A passed in title", Quantity: 1}},
	}
	if !reflect.DeepEqual(n, want) {
		t.Errorf("got  %+v\nwant %+v", n, want)
	}
}

func TestSpecVectorClickBankSynthetic(t *testing.T) {
	if got := string(clickBankKey("TESTSECRETKEY123")); got != "d182c59287a82315484156fa206cb436" {
		t.Fatalf("key = %s", got)
	}
	body := []byte(`{"notification":"FrTHNqcbPxNuL8WKJhL3QCeP6Wl71HD8Yy5CHe+Db1ZAzCMlmCRaqKJHOhcEfolmx5oucVcxthkJeXx1KhB/f9OfNhtZ/M3L5W4eZWCEYfKS9D8lW1UdH74SCIsFrmMqdgQjFHyO7DHlPjOPT7fn9Mdm5/T8hn0e72gWyFIVtrOtM9YVFVVrScoMbbHHo+uw","iv":"QUJDREVGR0hJSktMTU5PUA=="}`)
	n, err := ClickBank{Secrets: []string{"TESTSECRETKEY123"}}.Parse(Request{Method: http.MethodPost, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	want := Notification{
		Source: "clickbank", Kind: Sale, Test: true, IdempotencyKey: "TEST1234|TEST_SALE", OrderID: "TEST1234",
		Value: "19.99", Currency: "USD", Join: Join{TrackingIDs: []string{"click123"}},
	}
	if !reflect.DeepEqual(n, want) {
		t.Errorf("got  %+v\nwant %+v", n, want)
	}
}

func TestSpecVectorShopifyHMAC(t *testing.T) {
	tests := []struct {
		name, secret, body, header string
		valid                      bool
	}{
		{"quoted message", "hush", `"my secret message"`, "hMTq0K2x7oyOjoBwGYeTj5oxfnaVYXzbanUG9aajpKI=", true},
		{"empty JSON string", "hush", `""`, "ZAZ6P4c14f6v798OCPYCodtdf9g8Z+GfthdfCgyhUYg=", true},
		{"unquoted message is another body", "hush", `my secret message`, "hMTq0K2x7oyOjoBwGYeTj5oxfnaVYXzbanUG9aajpKI=", false},
		{"unquoted message own MAC", "hush", `my secret message`, "7/WDe43pNWxHoCMD7ukeWbZMtWEMfYQy8wPrdA6jiwc=", true},
		{"synthetic order", "shpss_test_secret", `{"id":820982911946154508,"email":"jon@example.com","total_price":"199.00","currency":"USD"}`, "aEZTyZ9Qm6AR6sitb6DMcVIQ3IPyuf9Veyj55/LE8qM=", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := validHMAC([]byte(tt.body), tt.header, []string{tt.secret}); got != tt.valid {
				t.Errorf("validHMAC = %v, want %v", got, tt.valid)
			}
		})
	}

	body := []byte(`{"id":820982911946154508,"email":"jon@example.com","total_price":"199.00","currency":"USD"}`)
	n, err := Shopify{Secrets: []string{"shpss_test_secret"}}.Parse(Request{Method: http.MethodPost, Body: body, Header: http.Header{
		"X-Shopify-Topic":       {"orders/paid"},
		"X-Shopify-Hmac-Sha256": {"aEZTyZ9Qm6AR6sitb6DMcVIQ3IPyuf9Veyj55/LE8qM="},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := Notification{
		Source: "shopify", Kind: Sale, IdempotencyKey: "order/820982911946154508/sale", OrderID: "820982911946154508",
		Value: "199.00", Currency: "USD", Customer: Customer{Emails: []string{"jon@example.com"}},
	}
	if !reflect.DeepEqual(n, want) {
		t.Errorf("got  %+v\nwant %+v", n, want)
	}
}

func TestSpecVectorWooCommerce(t *testing.T) {
	body := []byte(`{"id":727,"status":"processing","currency":"USD","total":"29.35","billing":{"email":"john.doe@example.com"}}`)
	n, err := WooCommerce{Secrets: []string{"woo_test_secret"}}.Parse(Request{Method: http.MethodPost, Body: body, Header: http.Header{
		"X-Wc-Webhook-Signature": {"0uTIGZvAzuqhovh1gUuHMSE2Xmms82aLRZK+uRp5oHE="},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := Notification{
		Source: "woocommerce", Kind: Sale, IdempotencyKey: "727|sale", OrderID: "727",
		Value: "29.35", Currency: "USD", Customer: Customer{Emails: []string{"john.doe@example.com"}},
	}
	if !reflect.DeepEqual(n, want) {
		t.Errorf("got  %+v\nwant %+v", n, want)
	}
}

func TestSpecVectorStripe(t *testing.T) {
	body := []byte(`{"id":"evt_test_webhook","object":"event"}`)
	header := "t=1700000000,v1=d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990"
	s := Stripe{Secrets: []string{"whsec_test_secret"}, Now: fixedClock(1700000000)}
	// The signature verifies; the vector's event has no type, so it is then malformed, not
	// unauthorized.
	if _, err := s.Parse(stripeRequest(header, body)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v, want ErrMalformed (signature accepted, no event type)", err)
	}
	if got := stripeSignature("whsec_test_secret", 1700000000, body); got != "d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990" {
		t.Errorf("test signer disagrees with the vector: %s", got)
	}
	tampered := []byte(`{"id":"evt_test_webhook","object":"event","type":"checkout.session.completed"}`)
	if _, err := s.Parse(stripeRequest(header, tampered)); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("tampered body: err = %v, want ErrUnauthorized", err)
	}
}

func TestSpecVectorJVZoo(t *testing.T) {
	fields := url.Values{
		"caffitid": {"CLICK123"}, "ccustcc": {"US"}, "ccustemail": {"jane@example.com"}, "ccustname": {"Jane Doe"},
		"ccuststate": {"ID"}, "cproditem": {"12345"}, "cprodtitle": {"Test Product"}, "cprodtype": {"STANDARD"},
		"ctransaction": {"SALE"}, "ctransaffiliate": {"0"}, "ctransamount": {"19.99"}, "ctranspaymentmethod": {"PYPL"},
		"ctransreceipt": {"TESTRECEIPT1"}, "ctranstime": {"1700000000"}, "ctransvendor": {"111"}, "cupsellreceipt": {""},
		"cvendthru": {"clickid=abc123&utm_source=fb"}, "cverify": {"7DDF13ED"},
	}
	if body := jvzooForm("JVZTESTSECRET", fields); url.Values(mustQuery(t, body)).Get("cverify") != "7DDF13ED" {
		t.Fatal("test signer disagrees with the vector")
	}
	n, err := JVZoo{Secrets: []string{"JVZTESTSECRET"}}.Parse(Request{Method: http.MethodPost, Body: []byte(fields.Encode())})
	if err != nil {
		t.Fatal(err)
	}
	want := Notification{
		Source: "jvzoo", Kind: Sale, IdempotencyKey: "TESTRECEIPT1|SALE", OrderID: "TESTRECEIPT1",
		Value: "19.99", Currency: "USD", Occurred: time.Unix(1700000000, 0).UTC(),
		Customer: Customer{Emails: []string{"jane@example.com"}, FirstName: "Jane", LastName: "Doe", State: "ID", Country: "US"},
		Join:     Join{TrackingIDs: []string{"click123", "abc123"}},
		Products: []Product{{ID: "12345", Title: "Test Product"}},
	}
	if !reflect.DeepEqual(n, want) {
		t.Errorf("got  %+v\nwant %+v", n, want)
	}
	fields.Set("cverify", "7DDF13EE")
	if _, err := (JVZoo{Secrets: []string{"JVZTESTSECRET"}}).Parse(Request{Body: []byte(fields.Encode())}); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("altered cverify: err = %v, want ErrUnauthorized", err)
	}
}

func TestSpecVectorDigistore24(t *testing.T) {
	fields := url.Values{
		"event": {"on_payment"}, "order_id": {"ABC123"}, "amount_brutto": {"19.99"}, "currency": {"EUR"},
		"email": {"jane@example.com"}, "custom": {"click_abc123"}, "address_phone_no": {""},
		"sha_sign": {"9FE6670561AEA4AFB3EC5524AB1702256AB5BE3C83CCADECCE54A4CE01F5C1662C55925518B9333090626CCA9874039AF0E7D0645AA5D27673C39C4DA3B40830"},
	}
	n, err := Digistore24{Passphrases: []string{"DS24TESTPASS"}}.Parse(Request{Method: http.MethodPost, Body: []byte(fields.Encode())})
	if err != nil {
		t.Fatal(err)
	}
	want := Notification{
		Source: "digistore24", Kind: Sale, IdempotencyKey: "ABC123|on_payment|", OrderID: "ABC123",
		Value: "19.99", Currency: "EUR", Customer: Customer{Emails: []string{"jane@example.com"}},
		Join: Join{TrackingIDs: []string{"click_abc123"}},
	}
	if !reflect.DeepEqual(n, want) {
		t.Errorf("got  %+v\nwant %+v", n, want)
	}
	fields.Set("amount_brutto", "1999.00")
	if _, err := (Digistore24{Passphrases: []string{"DS24TESTPASS"}}).Parse(Request{Body: []byte(fields.Encode())}); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("altered amount: err = %v, want ErrUnauthorized", err)
	}
}

func mustQuery(t *testing.T, body []byte) url.Values {
	t.Helper()
	q, err := url.ParseQuery(string(body))
	if err != nil {
		t.Fatal(err)
	}
	return q
}
