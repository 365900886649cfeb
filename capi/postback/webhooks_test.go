package postback

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestShopifyVerification(t *testing.T) {
	body := []byte(`{"id":5823987354234523452,"financial_status":"paid","email":"private@example.com"}`)
	tests := []struct {
		name   string
		source Shopify
		req    func() Request
		want   error
	}{
		{"signed with the only secret", Shopify{Secrets: []string{"s1"}}, func() Request { return shopifyRequest("s1", "orders/paid", body) }, nil},
		{"rotated: signed with the old secret", Shopify{Secrets: []string{"new", "old"}}, func() Request { return shopifyRequest("old", "orders/paid", body) }, nil},
		{"wrong secret", Shopify{Secrets: []string{"s1"}}, func() Request { return shopifyRequest("s2", "orders/paid", body) }, ErrUnauthorized},
		{"no secret configured", Shopify{}, func() Request { return shopifyRequest("", "orders/paid", body) }, ErrUnauthorized},
		{"body changed after signing", Shopify{Secrets: []string{"s1"}}, func() Request {
			r := shopifyRequest("s1", "orders/paid", body)
			r.Body = []byte(strings.Replace(string(body), "paid", "paid ", 1))
			return r
		}, ErrUnauthorized},
		{"header missing", Shopify{Secrets: []string{"s1"}}, func() Request {
			r := shopifyRequest("s1", "orders/paid", body)
			r.Header.Del("X-Shopify-Hmac-Sha256")
			return r
		}, ErrUnauthorized},
		{"header hex instead of base64", Shopify{Secrets: []string{"s1"}}, func() Request {
			r := shopifyRequest("s1", "orders/paid", body)
			r.Header.Set("X-Shopify-Hmac-Sha256", strings.Repeat("ab", 32))
			return r
		}, ErrUnauthorized},
		{"signed but not JSON", Shopify{Secrets: []string{"s1"}}, func() Request { return shopifyRequest("s1", "orders/paid", []byte(`{"id":1,`)) }, ErrMalformed},
		{"signed order without id", Shopify{Secrets: []string{"s1"}}, func() Request { return shopifyRequest("s1", "orders/paid", []byte(`{"email":"a@b.co"}`)) }, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := tt.source.Parse(tt.req())
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err != nil && (n.IdempotencyKey != "" || strings.Contains(err.Error(), "private@")) {
				t.Errorf("refused request leaked: %+v, %v", n, err)
			}
			if err == nil && n.OrderID != "5823987354234523452" {
				t.Errorf("order id %q: a 64-bit id must survive exactly", n.OrderID)
			}
		})
	}
}

func TestShopifyTopics(t *testing.T) {
	paid := []byte(`{"id":42,"financial_status":"paid","test":false,"total_price":"10.00","currency":"usd"}`)
	pending := []byte(`{"id":42,"financial_status":"pending","total_price":"10.00","currency":"USD"}`)
	testOrder := []byte(`{"id":43,"financial_status":"paid","test":true}`)
	refund := []byte(`{"id":900,"order_id":42,"transactions":[{"amount":"10.00"}]}`)
	tests := []struct {
		name, topic string
		body        []byte
		topics      []string
		kind        Kind
		test        bool
		key         string
	}{
		{"orders/paid is a sale", "orders/paid", paid, nil, Sale, false, "order/42/sale"},
		{"paid orders/create dedups with orders/paid", "orders/create", paid, nil, Sale, false, "order/42/sale"},
		{"unpaid orders/create is not a sale", "orders/create", pending, nil, Other, false, "webhook/b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"},
		{"test order", "orders/paid", testOrder, nil, Sale, true, "order/43/sale"},
		{"cancelled", "orders/cancelled", paid, nil, Cancel, false, "order/42/cancel"},
		{"refund", "refunds/create", refund, nil, Refund, false, "refund/900"},
		{"topic not configured", "orders/create", paid, []string{"orders/paid"}, Other, false, "webhook/b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"},
		{"other topic", "customers/create", []byte(`{"id":7,"email":"a@b.co"}`), nil, Other, false, "webhook/b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Shopify{Secrets: []string{"s"}, Topics: tt.topics}.Parse(shopifyRequest("s", tt.topic, tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if n.Kind != tt.kind || n.Test != tt.test || n.IdempotencyKey != tt.key {
				t.Errorf("got kind %v test %v key %q, want %v %v %q", n.Kind, n.Test, n.IdempotencyKey, tt.kind, tt.test, tt.key)
			}
			if n.Kind == Refund && n.OrderID != "42" {
				t.Errorf("refund order id %q, want 42", n.OrderID)
			}
		})
	}
}

func TestShopifyOtherTopicNeedsDeliveryID(t *testing.T) {
	r := shopifyRequest("s", "customers/create", []byte(`{"id":7}`))
	r.Header.Del("X-Shopify-Webhook-Id")
	if _, err := (Shopify{Secrets: []string{"s"}}).Parse(r); !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v, want ErrMalformed", err)
	}
	r.Header.Set("X-Shopify-Event-Id", "ev-1")
	n, err := Shopify{Secrets: []string{"s"}}.Parse(r)
	if err != nil || n.IdempotencyKey != "event/ev-1" {
		t.Fatalf("got %q, %v", n.IdempotencyKey, err)
	}
}

func TestWooCommerce(t *testing.T) {
	order := func(status string) []byte {
		return []byte(`{"id":727,"status":"` + status + `","total":"5","currency":"EUR"}`)
	}
	tests := []struct {
		name   string
		source WooCommerce
		req    Request
		want   error
		kind   Kind
		key    string
	}{
		{"processing is a sale", WooCommerce{Secrets: []string{"w"}}, wooRequest("w", order("processing")), nil, Sale, "727|sale"},
		{"completed is the same sale", WooCommerce{Secrets: []string{"w"}}, wooRequest("w", order("completed")), nil, Sale, "727|sale"},
		{"refunded", WooCommerce{Secrets: []string{"w"}}, wooRequest("w", order("refunded")), nil, Refund, "727|refund"},
		{"cancelled", WooCommerce{Secrets: []string{"w"}}, wooRequest("w", order("cancelled")), nil, Cancel, "727|cancel"},
		{"on-hold", WooCommerce{Secrets: []string{"w"}}, wooRequest("w", order("on-hold")), nil, Other, "727|on-hold"},
		{"deleted order", WooCommerce{Secrets: []string{"w"}}, func() Request {
			r := wooRequest("w", []byte(`{"id":727}`))
			r.Header.Set("X-WC-Webhook-Topic", "order.deleted")
			return r
		}(), nil, Other, "727|order.deleted"},
		{"secret configured entity-encoded", WooCommerce{Secrets: []string{"a&amp;b&quot;c"}}, wooRequest(`a&b"c`, order("processing")), nil, Sale, "727|sale"},
		{"secret configured decoded", WooCommerce{Secrets: []string{`a&b"c`}}, wooRequest(`a&b"c`, order("processing")), nil, Sale, "727|sale"},
		{"rotated secret", WooCommerce{Secrets: []string{"new", "old"}}, wooRequest("old", order("processing")), nil, Sale, "727|sale"},
		{"wrong secret", WooCommerce{Secrets: []string{"w"}}, wooRequest("x", order("processing")), ErrUnauthorized, 0, ""},
		{"unsigned order", WooCommerce{Secrets: []string{"w"}}, Request{Method: http.MethodPost, Body: order("processing"), Header: http.Header{}}, ErrUnauthorized, 0, ""},
		{"creation ping", WooCommerce{Secrets: []string{"w"}}, Request{Method: http.MethodPost, Body: []byte("webhook_id=15"), Header: http.Header{}}, ErrPing, 0, ""},
		{"ping look-alike", WooCommerce{Secrets: []string{"w"}}, Request{Method: http.MethodPost, Body: []byte("webhook_id=15&status=completed"), Header: http.Header{}}, ErrUnauthorized, 0, ""},
		{"signed, no id", WooCommerce{Secrets: []string{"w"}}, wooRequest("w", []byte(`{"status":"completed"}`)), ErrMalformed, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := tt.source.Parse(tt.req)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if n.Kind != tt.kind || n.IdempotencyKey != tt.key {
				t.Errorf("got kind %v key %q, want %v %q", n.Kind, n.IdempotencyKey, tt.kind, tt.key)
			}
		})
	}
}

func TestStripe(t *testing.T) {
	const secret = "whsec_abc"
	session := func(typ, status string, live bool) []byte {
		l := "false"
		if live {
			l = "true"
		}
		return []byte(`{"id":"evt_1","type":"` + typ + `","livemode":` + l + `,"created":1700000000,"data":{"object":{"id":"cs_1","amount_total":1999,"currency":"usd","payment_status":"` + status + `","client_reference_id":"VID123"}}}`)
	}
	const t0 = 1700000000
	signed := func(body []byte, ts int64, secrets ...string) Request {
		h := "t=" + itoa(ts)
		for _, s := range secrets {
			h += ",v1=" + stripeSignature(s, ts, body)
		}
		return stripeRequest(h, body)
	}
	paid := session("checkout.session.completed", "paid", true)
	tests := []struct {
		name   string
		source Stripe
		req    Request
		want   error
		kind   Kind
		test   bool
	}{
		{"paid session", Stripe{Secrets: []string{secret}, Now: fixedClock(t0)}, signed(paid, t0, secret), nil, Sale, false},
		{"unpaid session waits for async", Stripe{Secrets: []string{secret}, Now: fixedClock(t0)}, signed(session("checkout.session.completed", "unpaid", true), t0, secret), nil, Other, false},
		{"free trial is no sale", Stripe{Secrets: []string{secret}, Now: fixedClock(t0)}, signed(session("checkout.session.completed", "no_payment_required", true), t0, secret), nil, Other, false},
		{"async success", Stripe{Secrets: []string{secret}, Now: fixedClock(t0)}, signed(session("checkout.session.async_payment_succeeded", "paid", true), t0, secret), nil, Sale, false},
		{"other event type ignored", Stripe{Secrets: []string{secret}, Now: fixedClock(t0)}, signed(session("payment_intent.succeeded", "paid", true), t0, secret), nil, Other, false},
		{"test mode", Stripe{Secrets: []string{secret}, Now: fixedClock(t0)}, signed(session("checkout.session.completed", "paid", false), t0, secret), nil, Sale, true},
		{"within tolerance", Stripe{Secrets: []string{secret}, Now: fixedClock(t0 + 299)}, signed(paid, t0, secret), nil, Sale, false},
		{"replayed after tolerance", Stripe{Secrets: []string{secret}, Now: fixedClock(t0 + 301)}, signed(paid, t0, secret), ErrUnauthorized, 0, false},
		{"custom tolerance", Stripe{Secrets: []string{secret}, Tolerance: time.Hour, Now: fixedClock(t0 + 3000)}, signed(paid, t0, secret), nil, Sale, false},
		{"from the future", Stripe{Secrets: []string{secret}, Now: fixedClock(t0 - 600)}, signed(paid, t0, secret), ErrUnauthorized, 0, false},
		{"several v1, one ours (secret rolling)", Stripe{Secrets: []string{secret}, Now: fixedClock(t0)}, signed(paid, t0, "whsec_other", secret), nil, Sale, false},
		{"rotated configured secrets", Stripe{Secrets: []string{"whsec_new", secret}, Now: fixedClock(t0)}, signed(paid, t0, secret), nil, Sale, false},
		{"wrong secret", Stripe{Secrets: []string{secret}, Now: fixedClock(t0)}, signed(paid, t0, "whsec_x"), ErrUnauthorized, 0, false},
		{"timestamp changed", Stripe{Secrets: []string{secret}, Now: fixedClock(t0)}, stripeRequest("t="+itoa(t0+1)+",v1="+stripeSignature(secret, t0, paid), paid), ErrUnauthorized, 0, false},
		{"only v0", Stripe{Secrets: []string{secret}, Now: fixedClock(t0)}, stripeRequest("t="+itoa(t0)+",v0="+stripeSignature(secret, t0, paid), paid), ErrUnauthorized, 0, false},
		{"no header", Stripe{Secrets: []string{secret}, Now: fixedClock(t0)}, stripeRequest("", paid), ErrUnauthorized, 0, false},
		{"signed garbage", Stripe{Secrets: []string{secret}, Now: fixedClock(t0)}, signed([]byte(`{"id":`), t0, secret), ErrMalformed, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := tt.source.Parse(tt.req)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err != nil {
				if n.IdempotencyKey != "" || strings.Contains(err.Error(), secret) {
					t.Errorf("refused request leaked: %+v, %v", n, err)
				}
				return
			}
			if n.Kind != tt.kind || n.Test != tt.test || n.IdempotencyKey != "evt_1" {
				t.Errorf("got kind %v test %v key %q, want %v %v evt_1", n.Kind, n.Test, n.IdempotencyKey, tt.kind, tt.test)
			}
			if tt.name == "other event type ignored" {
				if n.OrderID != "" || n.Value != "" {
					t.Errorf("an ignored event type was read: %+v", n)
				}
				return
			}
			if n.OrderID != "cs_1" || n.Value != "19.99" || n.Currency != "USD" || len(n.Join.TrackingIDs) != 1 || n.Join.TrackingIDs[0] != "vid123" {
				t.Errorf("session fields: %+v", n)
			}
		})
	}
}

func TestStripeReversals(t *testing.T) {
	tests := []struct {
		body  string
		kind  Kind
		value string
	}{
		{`{"id":"evt_r","type":"charge.refunded","livemode":true,"data":{"object":{"amount_refunded":500,"currency":"jpy","payment_intent":"pi_9"}}}`, Refund, "500.00"},
		{`{"id":"evt_d","type":"charge.dispute.created","livemode":true,"data":{"object":{"amount":12345,"currency":"kwd","payment_intent":"pi_9"}}}`, Chargeback, "12.345"},
	}
	for _, tt := range tests {
		body := []byte(tt.body)
		n, err := Stripe{Secrets: []string{"whsec_r"}, Now: fixedClock(1700000000)}.Parse(stripeRequest("t=1700000000,v1="+stripeSignature("whsec_r", 1700000000, body), body))
		if err != nil {
			t.Fatal(err)
		}
		if n.Kind != tt.kind || n.Value != tt.value || n.OrderID != "pi_9" || n.Kind.IsConversion() {
			t.Errorf("got %+v, want kind %v value %s", n, tt.kind, tt.value)
		}
	}
}

func TestJVZooRejects(t *testing.T) {
	fields := url.Values{"ctransreceipt": {"R1"}, "ctransaction": {"SALE"}, "ccustemail": {"private@example.com"}, "ctransamount": {"9.00"}}
	body := jvzooForm("JS", fields)
	tests := []struct {
		name    string
		secrets []string
		body    []byte
		want    error
	}{
		{"signed", []string{"JS"}, body, nil},
		{"lower-case cverify", []string{"JS"}, []byte(strings.Replace(string(body), "cverify="+mustQuery(t, body).Get("cverify"), "cverify="+strings.ToLower(mustQuery(t, body).Get("cverify")), 1)), nil},
		{"rotated secret", []string{"NEW", "JS"}, body, nil},
		{"wrong secret", []string{"XX"}, body, ErrUnauthorized},
		{"empty secret configured, attacker signs with empty", []string{""}, jvzooForm("", fields), ErrUnauthorized},
		{"field added after signing", []string{"JS"}, append(append([]byte(nil), body...), "&caffitid=evil"...), ErrUnauthorized},
		{"amount changed", []string{"JS"}, []byte(strings.Replace(string(body), "9.00", "90.00", 1)), ErrUnauthorized},
		{"no cverify", []string{"JS"}, []byte(fields.Encode()), ErrUnauthorized},
		{"bad escape", []string{"JS"}, []byte("ctransreceipt=%zz&cverify=00000000"), ErrMalformed},
		{"signed but no receipt", []string{"JS"}, jvzooForm("JS", url.Values{"ctransaction": {"SALE"}}), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := JVZoo{Secrets: tt.secrets}.Parse(Request{Method: http.MethodPost, Body: tt.body})
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err == nil && n.IdempotencyKey != "R1|SALE" {
				t.Errorf("key %q", n.IdempotencyKey)
			}
			if err != nil && strings.Contains(err.Error(), "private@") {
				t.Errorf("error leaks personal data: %v", err)
			}
		})
	}
}

func TestGeneric(t *testing.T) {
	const token = "tok-123"
	get := func(q string) Request {
		v, _ := url.ParseQuery(q)
		return Request{Method: http.MethodGet, Query: v, Header: http.Header{}}
	}
	post := func(ct, body string) Request {
		return Request{Method: http.MethodPost, Query: url.Values{}, Header: http.Header{"Content-Type": {ct}}, Body: []byte(body)}
	}
	bearer := get("clickid=abc&sum=3")
	bearer.Header.Set("Authorization", "Bearer "+token)
	tests := []struct {
		name   string
		source Generic
		req    Request
		want   error
		kind   Kind
		key    string
		value  string
	}{
		{"voluum style", Generic{Token: token}, get("cid=abc&payout=1.5&txid=T1&token=" + token), nil, Sale, "tx/T1/sale", "1.50"},
		{"retry of the same txid", Generic{Token: token}, get("cid=abc&payout=1.5&txid=T1&status=approved&token=" + token), nil, Sale, "tx/T1/sale", "1.50"},
		{"reversal of the same txid", Generic{Token: token}, get("cid=abc&payout=1.5&txid=T1&status=declined&token=" + token), nil, Cancel, "tx/T1/cancel", "1.50"},
		{"click and status without txid", Generic{Token: token}, get("clickid=abc&sum=2&status=Lead&token=" + token), nil, Other, "click/abc/lead", "2.00"},
		{"bearer token", Generic{Token: token}, bearer, nil, Sale, "click/abc/sale", "3.00"},
		{"form post", Generic{Token: token}, post("application/x-www-form-urlencoded", "cnv_id=abc&payout=4&token="+token), nil, Sale, "click/abc/sale", "4.00"},
		{"json post", Generic{Token: token}, post("application/json", `{"click_id":"abc","amount":5.25,"order_id":"O9","token":"`+token+`","status":"refund"}`), nil, Refund, "tx/O9/refund", "5.25"},
		{"custom names", Generic{Token: token, Params: GenericParams{Token: "key", ClickID: []string{"s2"}, Value: []string{"rev"}, Order: []string{"oid"}, Status: []string{"state"}}},
			get("s2=abc&rev=7&oid=X&state=chargeback&key=" + token), nil, Chargeback, "tx/X/chargeback", "7.00"},
		{"test flag", Generic{Token: token}, get("cid=abc&test=1&token=" + token), nil, Sale, "click/abc/sale", ""},
		{"missing token", Generic{Token: token}, get("cid=abc"), ErrUnauthorized, 0, "", ""},
		{"wrong token", Generic{Token: token}, get("cid=abc&token=tok-124"), ErrUnauthorized, 0, "", ""},
		{"token prefix", Generic{Token: token}, get("cid=abc&token=tok-12"), ErrUnauthorized, 0, "", ""},
		{"no token configured", Generic{}, get("cid=abc&token="), ErrUnauthorized, 0, "", ""},
		{"no click id or txid", Generic{Token: token}, get("payout=1&token=" + token), ErrMalformed, 0, "", ""},
		{"bad json with good token", Generic{Token: token}, func() Request {
			r := post("application/json", `{"cid":`)
			r.Query.Set("token", token)
			return r
		}(), ErrMalformed, 0, "", ""},
		{"bad json without token", Generic{Token: token}, post("application/json", `{"cid":`), ErrUnauthorized, 0, "", ""},
		{"PUT", Generic{Token: token}, Request{Method: http.MethodPut, Query: url.Values{"token": {token}, "cid": {"a"}}}, ErrMalformed, 0, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := tt.source.Parse(tt.req)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err != nil {
				if strings.Contains(err.Error(), "tok-12") {
					t.Errorf("error leaks the token: %v", err)
				}
				return
			}
			if n.Kind != tt.kind || n.IdempotencyKey != tt.key || n.Value != tt.value {
				t.Errorf("got kind %v key %q value %q, want %v %q %q", n.Kind, n.IdempotencyKey, n.Value, tt.kind, tt.key, tt.value)
			}
			if tt.name == "test flag" && !n.Test {
				t.Error("test=1 not flagged")
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
