package postback

import (
	"net/http"
	"net/url"
	"testing"
)

// BenchmarkParse measures verification plus parsing of one realistic notification per source.
func BenchmarkParse(b *testing.B) {
	shopifyBody := readTestdata(b, "shopify_orders_paid.json")
	stripeBody := readTestdata(b, "stripe_checkout_completed.json")
	q, _ := url.ParseQuery("cid=k3j5m7p9q2r4s6t8v1w3x5y7&payout=12.5&txid=T-77&status=approved&token=s3cr3t")
	benches := []struct {
		name   string
		source Source
		req    Request
	}{
		{"clickbank", ClickBank{Secrets: []string{cbSecret}}, Request{Method: http.MethodPost, Body: clickBankEnvelope(b, cbSecret, cbIV, readTestdata(b, "clickbank_v8_sale.json"), false)}},
		{"jvzoo", JVZoo{Secrets: []string{"JS"}}, Request{Method: http.MethodPost, Body: jvzooForm("JS", url.Values{"ctransreceipt": {"R1"}, "ctransaction": {"SALE"}, "ctransamount": {"9.99"}, "ccustemail": {"a@b.co"}, "cvendthru": {"clickid=abc"}})}},
		{"shopify", Shopify{Secrets: []string{"s"}}, shopifyRequest("s", "orders/paid", shopifyBody)},
		{"woocommerce", WooCommerce{Secrets: []string{"w"}}, wooRequest("w", readTestdata(b, "woocommerce_order_processing.json"))},
		{"stripe", Stripe{Secrets: []string{"whsec_b"}, Now: fixedClock(1764241200)}, stripeRequest("t=1764241200,v1="+stripeSignature("whsec_b", 1764241200, stripeBody), stripeBody)},
		{"generic", Generic{Token: "s3cr3t"}, Request{Method: http.MethodGet, Query: q, Header: http.Header{}}},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			if _, err := bb.source.Parse(bb.req); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(bb.req.Body)))
			for b.Loop() {
				bb.source.Parse(bb.req)
			}
		})
	}
}
