package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// pbSourceNamed returns the test source of that name.
func pbSourceNamed(t *testing.T, name string) pbSource {
	t.Helper()
	for _, s := range pbSources() {
		if s.name == name {
			return s
		}
	}
	t.Fatalf("no test source %s", name)
	return pbSource{}
}

// withSettings returns the test endpoints with one source's settings set.
func withSettings(source string, s PostbackSettings) []Postback {
	routes := pbRoutes()
	for i := range routes {
		if routes[i].Source == source {
			routes[i].PostbackSettings = s
		}
	}
	return routes
}

// TestPostbackClickBankVendorMustMatch: with vendor set, a notification for another ClickBank
// account, though it decrypts under the shared secret, is refused as not authentic and nothing is
// stored; the account's own (vendor "acme", in any case) is taken.
func TestPostbackClickBankVendorMustMatch(t *testing.T) {
	src := pbSourceNamed(t, "clickbank")
	o := pbOrder{order: "CB1001", kind: "sale"}

	env := newPBEnv(t, withSettings("clickbank", PostbackSettings{Vendor: "otherstore"}), nil)
	if w := env.serve(t, src.build(t, o, false)); w.Code != http.StatusUnauthorized {
		t.Fatalf("another vendor's notification: status %d (%s), want 401", w.Code, w.Body)
	}
	if all := env.queuedAll(t); len(all) != 0 {
		t.Fatalf("another vendor's notification was enqueued: %v", all)
	}

	env = newPBEnv(t, withSettings("clickbank", PostbackSettings{Vendor: "ACME"}), nil)
	if w := env.serve(t, src.build(t, o, false)); w.Code != http.StatusOK {
		t.Fatalf("our vendor's notification: status %d (%s), want 200", w.Code, w.Body)
	}
	if n := len(env.queued(t, "meta")); n != 1 {
		t.Fatalf("our vendor's sale: %d Meta events, want 1", n)
	}
}

// TestPostbackJVZooCurrency: JVZIPN v1 sends no currency; the configured one is the sale's, USD
// without one.
func TestPostbackJVZooCurrency(t *testing.T) {
	src := pbSourceNamed(t, "jvzoo")
	for _, tc := range []struct {
		configured, want string
	}{{"", "USD"}, {"EUR", "EUR"}} {
		env := newPBEnv(t, withSettings("jvzoo", PostbackSettings{Currency: tc.configured}), nil)
		if w := env.serve(t, src.build(t, pbOrder{order: "J1", kind: "sale"}, false)); w.Code != http.StatusOK {
			t.Fatalf("status %d (%s)", w.Code, w.Body)
		}
		evs := env.queued(t, "meta")
		if len(evs) != 1 || evs[0].Currency != tc.want || evs[0].Value != "47.00" {
			t.Fatalf("currency %q: enqueued %+v, want one 47.00 %s", tc.configured, evs, tc.want)
		}
	}
}

// TestPostbackGenericCurrencyFillsAMissingOne: a postback without a currency takes the configured
// one; one that names its currency keeps it.
func TestPostbackGenericCurrencyFillsAMissingOne(t *testing.T) {
	env := newPBEnv(t, withSettings("generic", PostbackSettings{Currency: "EUR"}), nil)
	for txid, want := range map[string]string{"T-1": "EUR", "T-2": "GBP"} {
		target := "http://shop.example.com/pb/s2s?status=approved&payout=12.50&txid=" + txid
		if want == "GBP" {
			target += "&currency=gbp"
		}
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.Header.Set("Authorization", "Bearer "+pbGenericToken)
		if w := env.serve(t, r); w.Code != http.StatusOK {
			t.Fatalf("%s: status %d (%s)", txid, w.Code, w.Body)
		}
	}
	got := map[string]string{}
	for _, e := range env.queued(t, "meta") {
		got[e.OrderID] = e.Currency
	}
	if got["T-1"] != "EUR" || got["T-2"] != "GBP" {
		t.Fatalf("currencies by order %v, want T-1 EUR and T-2 GBP", got)
	}
}

// TestPostbackShopifyTopicsDecideWhatIsAPurchase: a shop that counts a purchase at fulfilment lists
// orders/fulfilled; its orders/paid webhook is then answered and recorded, but sends nothing.
func TestPostbackShopifyTopicsDecideWhatIsAPurchase(t *testing.T) {
	src := pbSourceNamed(t, "shopify")
	env := newPBEnv(t, withSettings("shopify", PostbackSettings{Topics: []string{"orders/fulfilled"}}), nil)
	paid := src.build(t, pbOrder{order: "7", kind: "sale"}, false) // topic orders/paid
	if w := env.serve(t, paid); w.Code != http.StatusOK {
		t.Fatalf("orders/paid: status %d (%s)", w.Code, w.Body)
	}
	if all := env.queuedAll(t); len(all) != 0 {
		t.Fatalf("orders/paid was sent though only orders/fulfilled counts: %v", all)
	}
	fulfilled := src.build(t, pbOrder{order: "8", kind: "sale"}, false)
	fulfilled.Header.Set("X-Shopify-Topic", "orders/fulfilled")
	if w := env.serve(t, fulfilled); w.Code != http.StatusOK {
		t.Fatalf("orders/fulfilled: status %d (%s)", w.Code, w.Body)
	}
	if evs := env.queued(t, "meta"); len(evs) != 1 || evs[0].OrderID != "8209829119461545088" {
		t.Fatalf("orders/fulfilled enqueued %+v, want the order's Purchase", evs)
	}
}

// TestPostbackSettingsRefusedInJSONWhereTheSourceTakesNone: the JSON twin is checked at
// provision time, naming the directive path.
func TestPostbackSettingsRefusedInJSONWhereTheSourceTakesNone(t *testing.T) {
	h := Handler{Postbacks: withSettings("stripe", PostbackSettings{Vendor: "acme"})}
	err := h.check()
	if err == nil || err.Error() != "capi.postbacks[4].vendor: only the clickbank source takes a vendor; stripe notifications carry no ClickBank account nickname" {
		t.Fatalf("got %v", err)
	}
}
