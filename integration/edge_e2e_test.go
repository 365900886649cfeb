package integration

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/conversion"
	"github.com/caddy-capi/caddy-capi/capi/tiktok"
	"github.com/caddy-capi/caddy-capi/integration/browser"
	"github.com/caddy-capi/caddy-capi/integration/fakes"
	"github.com/caddy-capi/caddy-capi/integration/harness"
)

// edgeShop is a storefront as the module sees it: a landing page, a product page, a checkout form
// with every field the platforms match on, and a thank-you page the form redirects to with the
// order's ID and total, as real checkouts do.
func edgeShop(t *testing.T, orderID string) *httptest.Server {
	t.Helper()
	page := func(title, body string) string {
		return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>` + title +
			`</title></head><body><h1>` + title + `</h1>` + body + `</body></html>`
	}
	pages := map[string]string{
		"/":        page("Landing", `<a href="/product">Mug</a>`),
		"/product": page("Product", `<a href="/checkout">Buy</a>`),
		"/checkout": page("Checkout", `<form id="order" method="post" action="/checkout">
<input name="checkout[email]"><input name="checkout[phone]"><input name="first_name"><input name="last_name">
<input name="birthday"><input name="gender"><input name="billing_address[street]"><input name="billing_address[city]">
<input name="billing_address[state]"><input name="billing_address[zip]"><input name="billing_address[country]">
<button>Place order</button></form>`),
		"/thank-you": page("Thank you", `<p>Thank you for your order</p>`),
	}
	shop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/checkout" {
			if err := r.ParseForm(); err != nil || r.PostForm.Get("checkout[email]") == "" {
				http.Error(w, "the form did not reach the shop intact", http.StatusBadRequest)
				return
			}
			http.Redirect(w, r, "/thank-you?order="+orderID+"&total=24.95", http.StatusSeeOther)
			return
		}
		body, ok := pages[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, body)
	}))
	t.Cleanup(shop.Close)
	return shop
}

// TestEdgeLandingToPurchase walks a visitor from an ad click to a purchase in headless Chromium
// through the real binary, and checks that every platform's fake received the conversion with the
// event ID the browser tags fired, with every signal it matches on, exactly once.
func TestEdgeLandingToPurchase(t *testing.T) {
	const (
		fbclid  = "IwAR2e2eFbClickId_0123456789"
		gclid   = "Cj0KCQiAe2eGoogleClick-123"
		ttclid  = "E.C.P.e2eTikTokClick123"
		orderID = "E2E-1001"
		tagID   = "AW-123456789"
		label   = "AbCdEf"
	)
	meta := fakes.NewMeta(t, fakes.MetaConfig{})
	tt := fakes.NewTikTok(t, fakes.TikTokConfig{})
	google := fakes.NewGoogle(t, fakes.GoogleConfig{})
	shop := edgeShop(t, orderID)
	c := harness.Start(t, `{
	capi {
		{{.Vars.meta}}
		{{.Vars.tiktok}}
		{{.Vars.google}}
		default_country US
		delivery {
			flush 100ms
		}
	}
}
{{.Site}} {
	capi {
		capture /checkout
		collect /capi/collect
		conversion Purchase /thank-you {
			value    {http.request.uri.query.total}
			currency USD
			order_id {http.request.uri.query.order}
		}
	}
	reverse_proxy {{.Vars.shop}}
}`,
		harness.Var("meta", meta.Block()),
		harness.Var("tiktok", tt.Block()),
		harness.Var("google", google.Block("tag_id "+tagID, "conversion Purchase 987654321 "+label)),
		harness.Var("shop", shop.URL))

	b := browser.New(t)
	b.Navigate(c.URL("/?fbclid=" + fbclid + "&gclid=" + gclid + "&ttclid=" + ttclid))
	landing := b.WaitEvent("fbq", "PageView", 20*time.Second)
	if !conversion.ValidEventID(landing.EventID()) {
		t.Fatalf("the landing PageView carries no valid event ID: %v", landing)
	}
	for _, name := range []string{"_capi_vid", "_fbc", "_fbp", "_ttp", "ttclid", "_gcl_aw"} {
		if b.Cookie(name) == nil {
			t.Errorf("the landing page did not set %s", name)
		}
	}
	if fbc := b.Cookie("_fbc"); fbc != nil && !strings.HasSuffix(fbc.Value, "."+fbclid) {
		t.Errorf("_fbc = %s, want it to end in the fbclid", fbc.Value)
	}
	if vid := b.Cookie("_capi_vid"); vid != nil && !vid.HTTPOnly {
		t.Error("_capi_vid is readable by scripts")
	}

	b.Navigate(c.URL("/product"))
	b.Navigate(c.URL("/checkout"))
	b.WaitCalls(20*time.Second, "the checkout page's PageView", func(cs []browser.Call) bool {
		for _, c := range cs {
			if c.Lib == "fbq" && c.EventName() == "PageView" && strings.HasSuffix(c.Page, "/checkout") {
				return true
			}
		}
		return false
	})
	form := map[string]string{
		"checkout[email]": "Jane.Doe@Example.com", "checkout[phone]": "+1 (650) 555-1212",
		"first_name": "Jane", "last_name": "Doe", "birthday": "1990-02-16", "gender": "female",
		"billing_address[street]": "1 Main St", "billing_address[city]": "New York",
		"billing_address[state]": "NY", "billing_address[zip]": "10001", "billing_address[country]": "US",
	}
	var js strings.Builder
	for name, value := range form {
		fmt.Fprintf(&js, "document.querySelector(%q).value = %q;\n", `[name="`+name+`"]`, value)
	}
	js.WriteString("document.getElementById('order').submit();")
	b.Exec(js.String())

	purchase := b.WaitEvent("fbq", "Purchase", 20*time.Second)
	eventID := purchase.EventID()
	// The order's ID is derived under the installation's key, which only the server holds: the
	// test checks it is no public function of the order, and below that every platform's server
	// copy carries it.
	if len(eventID) != conversion.EventIDLength || !conversion.ValidEventID(eventID) || eventID == publicEventID("Purchase", orderID) ||
		!strings.Contains(purchase.Page, "/thank-you?order="+orderID) {
		t.Fatalf("browser Purchase %v; want the order's keyed event ID on the thank-you page", purchase)
	}
	ttName := tiktok.EventName("Purchase", nil)
	ttPurchase := b.WaitEvent("ttq", ttName, 20*time.Second)
	if ttPurchase.EventID() != eventID {
		t.Errorf("ttq %s carries event_id %q, want %s", ttName, ttPurchase.EventID(), eventID)
	}
	gtagConv := b.WaitEvent("gtag", "conversion", 20*time.Second)
	if gtagConv.EventID() != orderID || gtagConv.Param(1, "send_to") != tagID+"/"+label {
		t.Errorf("gtag conversion %v; want transaction_id %s to %s/%s", gtagConv, orderID, tagID, label)
	}

	// Meta: the server copy with the browser's event ID and all 15 matching signals.
	me := meta.WaitEvent(t, eventID, 30*time.Second)
	for _, key := range []string{"em", "ph", "fn", "ln", "db", "ge", "ct", "st", "zp", "country",
		"external_id", "client_ip_address", "client_user_agent", "fbc", "fbp"} {
		if v := me.Get("user_data." + key); v == nil || v == "" {
			t.Errorf("Meta Purchase lacks user_data.%s", key)
		}
	}
	if fbc := fmt.Sprint(me.Get("user_data.fbc")); !strings.HasSuffix(fbc, "."+fbclid) {
		t.Errorf("Meta fbc = %s, want the landing's click", fbc)
	}
	if me.Get("custom_data.order_id") != orderID || me.Get("action_source") != "website" {
		t.Errorf("Meta Purchase custom_data %v, action_source %v", me.Get("custom_data"), me.Get("action_source"))
	}

	// TikTok: the same event ID and its 12 signals.
	te := tt.WaitEvent(t, eventID, 30*time.Second)
	for _, key := range []string{"email", "phone", "external_id", "ttclid", "ttp", "ip", "user_agent", "locale",
		"first_name", "last_name", "zip_code", "city", "state", "country"} {
		if v := te.Get("user." + key); v == nil || v == "" {
			t.Errorf("TikTok %s lacks user.%s", ttName, key)
		}
	}
	if te.Get("user.ttclid") != ttclid {
		t.Errorf("TikTok ttclid = %v, want %s", te.Get("user.ttclid"), ttclid)
	}

	// Google: the click conversion with the gclid and the order as its key, and the enhancement
	// with all 9 user-provided fields.
	conv := google.WaitFor(t, 30*time.Second, "the click conversion and its enhancement", func(es []fakes.Event) bool {
		return len(es) >= 2
	})
	var click, enhancement *fakes.Event
	for i := range conv {
		switch conv[i].Endpoint {
		case "uploadClickConversions":
			click = &conv[i]
		case "uploadConversionAdjustments":
			enhancement = &conv[i]
		}
	}
	if click == nil || enhancement == nil {
		t.Fatalf("Google received %d events, want a click conversion and an enhancement", len(conv))
	}
	if click.Get("gclid") != gclid || click.ID != orderID || click.Get("conversionAction") != google.ConversionAction("987654321") {
		t.Errorf("Google click conversion %s", click.Raw)
	}
	got := map[string]bool{}
	ids, _ := enhancement.Get("userIdentifiers").([]any)
	for _, id := range ids {
		m, _ := id.(map[string]any)
		for k, v := range m {
			if k == "addressInfo" {
				for ak := range v.(map[string]any) {
					got[ak] = true
				}
				continue
			}
			got[k] = true
		}
	}
	for _, key := range []string{"hashedEmail", "hashedPhoneNumber", "hashedFirstName", "hashedLastName",
		"hashedStreetAddress", "city", "state", "postalCode", "countryCode"} {
		if !got[key] {
			t.Errorf("Google enhancement lacks %s: %s", key, enhancement.Raw)
		}
	}

	// A reload of the thank-you page fires nothing new, in the browser or on the server. A later
	// event posted through window.capi.track is the barrier: once it reached Meta and TikTok,
	// anything the reload had enqueued before it would have too.
	b.Navigate(b.Location())
	b.WaitCalls(20*time.Second, "the reload's PageView", func(cs []browser.Call) bool {
		n := 0
		for _, c := range cs {
			if c.Lib == "fbq" && c.EventName() == "PageView" && strings.Contains(c.Page, "/thank-you") {
				n++
			}
		}
		return n == 2
	})
	if id := browser.Eval[string](b, "window.capi.track('Contact', {})"); !conversion.ValidEventID(id) {
		t.Fatalf("window.capi.track returned %q", id)
	}
	meta.WaitFor(t, 30*time.Second, "the barrier event", func(es []fakes.Event) bool { return hasEventNamed(es, "Contact") })
	tt.WaitFor(t, 30*time.Second, "the barrier event", func(es []fakes.Event) bool { return hasEventNamed(es, "Contact") })
	if n := len(meta.EventsWithID(eventID)); n != 1 {
		t.Errorf("Meta received the Purchase %d times", n)
	}
	if n := len(tt.EventsWithID(eventID)); n != 1 {
		t.Errorf("TikTok received the Purchase %d times", n)
	}
	if n := len(google.EventsWithID(orderID)); n != 2 {
		t.Errorf("Google received %d uploads for the order, want the conversion and its enhancement once", n)
	}
	purchases := 0
	for _, call := range b.Calls() {
		if call.Lib == "fbq" && call.EventName() == "Purchase" {
			purchases++
		}
	}
	if purchases != 1 {
		t.Errorf("the browser fired Purchase %d times", purchases)
	}
}

func hasEventNamed(es []fakes.Event, name string) bool {
	for _, e := range es {
		if e.Name == name {
			return true
		}
	}
	return false
}
