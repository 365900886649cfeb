package postback

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestCheckShopifyTopics(t *testing.T) {
	tests := []struct {
		name   string
		topics []string
		want   []string
		err    string
	}{
		{"the default pair", []string{"orders/paid", "orders/create"}, []string{"orders/paid", "orders/create"}, ""},
		{"any case, sent lower-case", []string{"Orders/Fulfilled", " orders/updated "}, []string{"orders/fulfilled", "orders/updated"}, ""},
		{"cancellation", []string{"orders/paid", "orders/cancelled"}, nil, "topic orders/cancelled is never a purchase"},
		{"refund", []string{"refunds/create"}, nil, "topic refunds/create is never a purchase"},
		{"order edit", []string{"orders/edited"}, nil, `topic "orders/edited" does not carry an order`},
		{"not an order", []string{"customers/create"}, nil, "expected one of orders/paid, orders/create, orders/updated, orders/fulfilled, orders/partially_fulfilled"},
		{"twice", []string{"orders/paid", "ORDERS/PAID"}, nil, "topic orders/paid is listed twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CheckShopifyTopics(tc.topics)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, %v; want an error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil || strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// TestShopifyConfiguredTopicsDecideWhatIsAPurchase: a shop that counts a purchase when the order
// is fulfilled lists orders/fulfilled; orders/paid is then no purchase, and a topic configured in
// another case still matches the lower-case header.
func TestShopifyConfiguredTopicsDecideWhatIsAPurchase(t *testing.T) {
	paid := []byte(`{"id":42,"financial_status":"paid","total_price":"10.00","currency":"USD"}`)
	s := Shopify{Secrets: []string{"s"}, Topics: []string{"Orders/Fulfilled"}}
	for topic, want := range map[string]Kind{"orders/fulfilled": Sale, "orders/paid": Other, "orders/create": Other} {
		n, err := s.Parse(shopifyRequest("s", topic, paid))
		if err != nil {
			t.Fatal(err)
		}
		if n.Kind != want {
			t.Errorf("%s: kind %v, want %v", topic, n.Kind, want)
		}
	}
}

func TestJVZooCurrencyIsTheConfiguredOneElseUSD(t *testing.T) {
	fields := url.Values{"ctransreceipt": {"R1"}, "ctransaction": {"SALE"}, "ctransamount": {"19.99"}}
	body := jvzooForm("K", fields)
	for _, tc := range []struct{ configured, want string }{{"", "USD"}, {"EUR", "EUR"}, {"gbp", "GBP"}} {
		n, err := JVZoo{Secrets: []string{"K"}, Currency: tc.configured}.Parse(Request{Method: http.MethodPost, Body: body})
		if err != nil {
			t.Fatal(err)
		}
		if n.Currency != tc.want || n.Value != "19.99" {
			t.Errorf("currency %q: got %s %s, want %s 19.99", tc.configured, n.Value, n.Currency, tc.want)
		}
	}
}

func TestGenericCurrencyFillsOnlyWhatThePostbackLacks(t *testing.T) {
	for _, tc := range []struct{ query, configured, want string }{
		{"payout=5&txid=T1&token=t", "", ""},
		{"payout=5&txid=T1&token=t", "EUR", "EUR"},
		{"payout=5&txid=T1&currency=usd&token=t", "EUR", "USD"},
	} {
		q, _ := url.ParseQuery(tc.query)
		n, err := Generic{Token: "t", Currency: tc.configured}.Parse(Request{Method: http.MethodGet, Query: q, Header: http.Header{}})
		if err != nil {
			t.Fatal(err)
		}
		if n.Currency != tc.want {
			t.Errorf("%s with %q: currency %q, want %q", tc.query, tc.configured, n.Currency, tc.want)
		}
	}
}
