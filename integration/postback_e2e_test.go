package integration

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/conversion"
	"github.com/caddy-capi/caddy-capi/integration/fakes"
	"github.com/caddy-capi/caddy-capi/integration/harness"
)

const (
	e2eClickBankSecret = "E2ECBSECRET2026"
	e2eShopifySecret   = "shpss_e2e_secret"
	e2eBuyerEmail      = "Buyer.E2E@Example.com"
)

// postbackShop is a site whose every page is a small HTML page.
func postbackShop(t *testing.T) *httptest.Server {
	t.Helper()
	shop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><html><head><title>Offer</title></head><body><a href="/go/offer">Buy</a></body></html>`)
	}))
	t.Cleanup(shop.Close)
	return shop
}

// startPostbackSite runs the real binary with the three platform fakes, a `link` to a ClickBank
// hoplink carrying the visitor ID as tid, and ClickBank and Shopify postback routes.
func startPostbackSite(t *testing.T) (*harness.Caddy, *fakes.Meta, *fakes.TikTok, *fakes.Google) {
	t.Helper()
	meta := fakes.NewMeta(t, fakes.MetaConfig{})
	tt := fakes.NewTikTok(t, fakes.TikTokConfig{})
	google := fakes.NewGoogle(t, fakes.GoogleConfig{})
	c := harness.Start(t, `{
	capi {
		{{.Vars.meta}}
		{{.Vars.tiktok}}
		{{.Vars.google}}
		delivery {
			flush 100ms
		}
	}
}
{{.Site}} {
	capi {
		page_view server
		link /go/offer "https://hop.clickbank.net/?affiliate=aff1&vendor=acme&tid={capi.visitor_id}"
		postback clickbank /capi/pb/clickbank {
			secret {env.E2E_CLICKBANK_SECRET}
		}
		postback shopify /capi/pb/shopify {
			secret {env.E2E_SHOPIFY_SECRET}
		}
	}
	reverse_proxy {{.Vars.shop}}
}`,
		harness.Var("meta", meta.Block()),
		harness.Var("tiktok", tt.Block()),
		harness.Var("google", google.Block("conversion Purchase 987654321")),
		harness.Var("shop", postbackShop(t).URL),
		harness.Env("E2E_CLICKBANK_SECRET", e2eClickBankSecret),
		harness.Env("E2E_SHOPIFY_SECRET", e2eShopifySecret))
	return c, meta, tt, google
}

// land visits url as a browser navigating from an ad, with the client's cookie jar, and waits until
// the server-side PageView reached Meta: the visitor record is written by the same background
// writer before it, so the visitor is in the store when this returns.
func land(t *testing.T, client *http.Client, target string, meta *fakes.Meta) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, target, nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) E2E")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("landing: %d", resp.StatusCode)
	}
	meta.WaitFor(t, 20*time.Second, "the landing PageView", func(es []fakes.Event) bool {
		for _, e := range es {
			if e.Name == "PageView" {
				return true
			}
		}
		return false
	})
}

func cookieValue(t *testing.T, client *http.Client, site, name string) string {
	t.Helper()
	u, _ := url.Parse(site)
	for _, c := range client.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	t.Fatalf("no %s cookie", name)
	return ""
}

// holds reports whether v (a string or a list of strings in an event's JSON) holds want.
func holds(v any, want string) bool {
	switch x := v.(type) {
	case string:
		return x == want
	case []any:
		for _, e := range x {
			if s, ok := e.(string); ok && s == want {
				return true
			}
		}
	}
	return false
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// publicEventID is what anyone can compute for an order without the installation's event ID key:
// the unkeyed scheme of earlier versions. A server-made ID must never equal it, or a browser could
// post the order's event first and have the real one dropped as its duplicate.
func publicEventID(name, orderID string) string {
	sum := sha256.Sum256([]byte("capi-event-v1\x00" + name + "\x00" + orderID))
	return hex.EncodeToString(sum[:16])
}

// waitMetaOrder waits for Meta's event named name for the order orderID (custom_data.order_id)
// and checks its ID is the installation's keyed derivation, not one computable from the order.
// The key lives in the server's storage, so the test learns the ID from what the server sent.
func waitMetaOrder(t *testing.T, meta *fakes.Meta, name, orderID string) fakes.Event {
	t.Helper()
	find := func(es []fakes.Event) (fakes.Event, bool) {
		for _, e := range es {
			if e.Name == name && e.Get("custom_data.order_id") == orderID {
				return e, true
			}
		}
		return fakes.Event{}, false
	}
	es := meta.WaitFor(t, 20*time.Second, name+" for order "+orderID, func(es []fakes.Event) bool {
		_, ok := find(es)
		return ok
	})
	e, _ := find(es)
	if len(e.ID) != conversion.EventIDLength || !conversion.ValidEventID(e.ID) || e.ID == publicEventID(name, orderID) {
		t.Errorf("Meta's %s for order %s has event ID %q; want 32 hex digits no one can compute without the key", name, orderID, e.ID)
	}
	return e
}

// clickBankSale is ClickBank's INS for the sale of one ebook to the e2e buyer, tracked by tid,
// encrypted as ClickBank sends it.
func clickBankSale(t *testing.T, receipt, tid string, amount float64) []byte {
	t.Helper()
	ins, _ := json.Marshal(map[string]any{
		"transactionTime": time.Now().UTC().Format(time.RFC3339), "receipt": receipt, "transactionType": "SALE",
		"vendor": "acme", "affiliate": "aff1", "role": "VENDOR", "totalOrderAmount": amount, "currency": "USD",
		"trackingCodes": []string{tid},
		"customer":      map[string]any{"billing": map[string]any{"firstName": "Jo", "lastName": "Buyer", "email": e2eBuyerEmail}},
		"lineItems":     []any{map[string]any{"itemNo": "ebook", "productTitle": "The Book", "quantity": 1}},
		"version":       8.0, "attemptCount": 1,
	})
	return clickBankEnvelope(t, e2eClickBankSecret, ins)
}

func TestPostbackClickBankSaleReachesEveryPlatformJoinedToTheAdClick(t *testing.T) {
	const (
		fbclid  = "IwAR2e2ePostbackClick_01"
		gclid   = "Cj0KCQiAe2ePostbackGclid"
		ttclid  = "E.C.P.e2ePostbackTtclid"
		receipt = "E2ECB001"
	)
	c, meta, tt, google := startPostbackSite(t)
	client := harness.NewClient()
	land(t, client, c.URL("/?fbclid="+fbclid+"&gclid="+gclid+"&ttclid="+ttclid), meta)
	vid := cookieValue(t, client, c.URL("/"), "_capi_vid")

	// The visitor follows the affiliate link: the hoplink carries the visitor ID as tid.
	resp, err := client.Get(c.URL("/go/offer"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	hop, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode/100 != 3 || err != nil || hop.Host != "hop.clickbank.net" || hop.Query().Get("tid") != vid {
		t.Fatalf("the link answered %d to %q; want a redirect to the hoplink with tid=%s", resp.StatusCode, resp.Header.Get("Location"), vid)
	}

	// ClickBank's INS for the sale, with the tid upper-cased as ClickBank does.
	body := clickBankSale(t, receipt, strings.ToUpper(hop.Query().Get("tid")), 47.00)
	for i := range 2 { // the second is a network retry, which must not count twice
		pb, err := http.Post(c.URL("/capi/pb/clickbank"), "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		pb.Body.Close()
		if pb.StatusCode != http.StatusOK {
			t.Fatalf("INS delivery %d answered %d", i+1, pb.StatusCode)
		}
	}

	email := sha256Hex("buyer.e2e@example.com")
	m := waitMetaOrder(t, meta, "Purchase", receipt)
	id := m.ID
	if m.Name != "Purchase" || m.Get("action_source") != "website" {
		t.Errorf("Meta got %s with action_source %v; want a website Purchase", m.Name, m.Get("action_source"))
	}
	if fbc, _ := m.Get("user_data.fbc").(string); !strings.HasSuffix(fbc, "."+fbclid) {
		t.Errorf("Meta fbc %q does not carry the ad's fbclid", fbc)
	}
	if !holds(m.Get("user_data.em"), email) || !holds(m.Get("user_data.external_id"), sha256Hex(vid)) {
		t.Errorf("Meta user_data lacks the buyer's email hash or the visitor's external_id: %s", m.Raw)
	}
	k := tt.WaitEvent(t, id, 20*time.Second)
	if !strings.Contains(string(k.Raw), ttclid) || !strings.Contains(string(k.Raw), email) {
		t.Errorf("TikTok's Purchase lacks the visitor's ttclid or the buyer's email hash: %s", k.Raw)
	}
	// Google gets the click conversion (its orderId is the receipt) and, when the conversion
	// carries customer data, an ENHANCEMENT adjustment of it with the same orderId.
	clicks := func(es []fakes.Event) []fakes.Event {
		var out []fakes.Event
		for _, e := range es {
			if e.ID == receipt && e.Endpoint == "uploadClickConversions" {
				out = append(out, e)
			}
		}
		return out
	}
	g := clicks(google.WaitFor(t, 20*time.Second, "the click conversion", func(es []fakes.Event) bool { return len(clicks(es)) > 0 }))[0]
	if g.Get("gclid") != gclid {
		t.Errorf("Google's click conversion lacks the visitor's gclid: %s", g.Raw)
	}
	hashed := false
	for _, e := range google.EventsWithID(receipt) {
		hashed = hashed || strings.Contains(string(e.Raw), email)
	}
	if !hashed {
		t.Errorf("Google received no hash of the buyer's email with the sale")
	}
	time.Sleep(500 * time.Millisecond) // a second copy would have been sent by now
	for _, f := range []struct {
		name string
		n    int
	}{{"meta", len(meta.EventsWithID(id))}, {"tiktok", len(tt.EventsWithID(id))}, {"google", len(clicks(google.Accepted()))}} {
		if f.n != 1 {
			t.Errorf("%s received the sale %d times, want once", f.name, f.n)
		}
	}
	if log := strings.ToLower(c.Log()); strings.Contains(log, "buyer.e2e@example.com") || strings.Contains(log, strings.ToLower(e2eClickBankSecret)) {
		t.Error("the log holds the buyer's email or the INS secret in plain text")
	}
}

// TestPostbackJoinedThroughTheLinkAloneIsAWebsiteEventWithTheVisitorsGPC: the affiliate bridge with
// nothing else. The visitor comes from an ad straight to the tracking link, with Global Privacy
// Control on, and never sees a page of the shop; ClickBank's INS for the sale joins them by tid.
// Meta gets a website Purchase whose source URL is the link, with Limited Data Use, and Google is
// told ad user data was denied.
func TestPostbackJoinedThroughTheLinkAloneIsAWebsiteEventWithTheVisitorsGPC(t *testing.T) {
	const (
		fbclid  = "IwAR2e2eLinkOnly_01"
		gclid   = "Cj0KCQiAe2eLinkOnlyGclid"
		receipt = "E2ECB002"
	)
	c, meta, _, google := startPostbackSite(t)
	client := harness.NewClient()
	req, _ := http.NewRequest(http.MethodGet, c.URL("/go/offer?fbclid="+fbclid+"&gclid="+gclid), nil)
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) E2E")
	req.Header.Set("Sec-GPC", "1")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	hop, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode/100 != 3 || err != nil || hop.Query().Get("tid") == "" {
		t.Fatalf("the link answered %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// The link's visit is written by the background writer, within milliseconds when idle; the INS
	// must find it, or the sale would be recorded unjoined.
	time.Sleep(1500 * time.Millisecond)

	pb, err := http.Post(c.URL("/capi/pb/clickbank"), "application/json", bytes.NewReader(clickBankSale(t, receipt, hop.Query().Get("tid"), 19.00)))
	if err != nil {
		t.Fatal(err)
	}
	pb.Body.Close()
	if pb.StatusCode != http.StatusOK {
		t.Fatalf("INS answered %d", pb.StatusCode)
	}

	m := waitMetaOrder(t, meta, "Purchase", receipt)
	if m.Get("action_source") != "website" {
		t.Errorf("Meta got action_source %v; want website, joined through the link", m.Get("action_source"))
	}
	if src, _ := m.Get("event_source_url").(string); !strings.HasPrefix(src, c.URL("/go/offer")) {
		t.Errorf("Meta event_source_url %q; want the link the visitor followed", src)
	}
	if !holds(m.Get("data_processing_options"), "LDU") {
		t.Errorf("Meta's Purchase lacks Limited Data Use for a visitor who sent Sec-GPC: %s", m.Raw)
	}
	g := google.WaitFor(t, 20*time.Second, "the click conversion", func(es []fakes.Event) bool {
		for _, e := range es {
			if e.ID == receipt {
				return true
			}
		}
		return false
	})
	for _, e := range g {
		if e.ID == receipt && (!strings.Contains(string(e.Raw), `"adUserData":"DENIED"`) || strings.Contains(string(e.Raw), "hashedEmail")) {
			t.Errorf("Google's %s for the sale does not deny ad user data, or sends it anyway: %s", e.Endpoint, e.Raw)
		}
	}
}

func TestPostbackShopifyOrderJoinedByCartToken(t *testing.T) {
	const (
		fbclid = "IwAR2e2eShopifyClick_02"
		cart   = "c1-7e2ecart0123456789abcdef"
		order  = "820982911946154599"
	)
	c, meta, tt, _ := startPostbackSite(t)
	client := harness.NewClient()
	// Shopify's storefront sets its cart cookie on the shop's domain; the module reads it.
	u, _ := url.Parse(c.URL("/"))
	client.Jar.SetCookies(u, []*http.Cookie{{Name: "cart", Value: cart, Path: "/"}})
	land(t, client, c.URL("/?fbclid="+fbclid), meta)
	vid := cookieValue(t, client, c.URL("/"), "_capi_vid")

	webhook, _ := json.Marshal(map[string]any{
		"id": json.Number(order), "email": e2eBuyerEmail, "total_price": "59.00", "currency": "USD",
		"financial_status": "paid", "cart_token": cart, "processed_at": time.Now().UTC().Format(time.RFC3339),
		"line_items": []any{map[string]any{"sku": "MUG-1", "title": "Mug", "quantity": 2, "price": "29.50"}},
	})
	mac := hmac.New(sha256.New, []byte(e2eShopifySecret))
	mac.Write(webhook)
	req, _ := http.NewRequest(http.MethodPost, c.URL("/capi/pb/shopify"), bytes.NewReader(webhook))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Shopify-Topic", "orders/paid")
	req.Header.Set("X-Shopify-Webhook-Id", "e2e-webhook-1")
	req.Header.Set("X-Shopify-Hmac-Sha256", base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("webhook answered %d", resp.StatusCode)
	}

	m := waitMetaOrder(t, meta, "Purchase", order)
	id := m.ID
	if fbc, _ := m.Get("user_data.fbc").(string); !strings.HasSuffix(fbc, "."+fbclid) || m.Get("action_source") != "website" {
		t.Errorf("Meta's Purchase is not joined to the visitor by cart token: %s", m.Raw)
	}
	if !holds(m.Get("user_data.external_id"), sha256Hex(vid)) || !holds(m.Get("user_data.em"), sha256Hex("buyer.e2e@example.com")) {
		t.Errorf("Meta user_data lacks the visitor's external_id or the buyer's email hash: %s", m.Raw)
	}
	tt.WaitEvent(t, id, 20*time.Second)
}

// clickBankEnvelope encrypts an INS notification as ClickBank does (spec/postbacks.md §1.2):
// AES-256-CBC under the first 32 lowercase hex digits of SHA-1(secret), PKCS#7 padding.
func clickBankEnvelope(t *testing.T, secret string, plaintext []byte) []byte {
	t.Helper()
	sum := sha1.Sum([]byte(secret))
	block, err := aes.NewCipher([]byte(hex.EncodeToString(sum[:])[:32]))
	if err != nil {
		t.Fatal(err)
	}
	pad := aes.BlockSize - len(plaintext)%aes.BlockSize
	padded := append(append([]byte(nil), plaintext...), bytes.Repeat([]byte{byte(pad)}, pad)...)
	iv := []byte("E2EivSixteenByte")
	ct := make([]byte, len(padded))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, padded)
	body, _ := json.Marshal(map[string]string{
		"notification": base64.StdEncoding.EncodeToString(ct),
		"iv":           base64.StdEncoding.EncodeToString(iv),
	})
	return body
}
