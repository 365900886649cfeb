package caddymodule

import (
	"bytes"
	"context"
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
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-capi/caddy-capi/capi/conversion"
	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/queue"
	"github.com/caddy-capi/caddy-capi/capi/signal"
	"github.com/caddy-capi/caddy-capi/capi/store"
)

// The secrets of the test endpoints. The signed and encrypted bodies below are built with each
// source's published scheme (spec/postbacks.md), independently of the parsers in capi/postback.
const (
	pbClickBankSecret = "TESTSECRETKEY123"
	pbJVZooSecret     = "JVZTESTSECRET"
	pbShopifySecret   = "shpss_test_secret"
	pbWooSecret       = "woo_test_secret"
	pbStripeSecret    = "whsec_test_secret"
	pbGenericToken    = "s2s-token-7c1f0e"

	pbVisitor = "k3v9q2m8x7c4b1n6z5a0s2d4"
	pbFBCLID  = "IwAR3xYzAbCdEf"
	pbGCLID   = "Cj0KCQjwTestGclid"
	pbEmail   = "Buyer@Example.com"
)

// pbEnv is a handler with postback endpoints, provisioned from its JSON config beside a capi app
// on a temporary bbolt file, and the app started, as a config load does.
type pbEnv struct {
	h        *Handler
	app      *App
	q        queue.Queue
	visitors store.Store

	mu   sync.Mutex
	sent []pbEnqueued
}

// pbEnqueued is one call of the endpoints' enqueue: the event, where it went, and how many copies
// the queue took as new.
type pbEnqueued struct {
	platforms []string
	event     event.Event
	added     int
}

func pbRoutes() []Postback {
	return []Postback{
		{Source: "clickbank", Path: "/pb/clickbank", Secrets: []string{"OLDSECRET1", pbClickBankSecret}},
		{Source: "jvzoo", Path: "/pb/jvzoo", Secrets: []string{pbJVZooSecret}},
		{Source: "shopify", Path: "/pb/shopify", Secrets: []string{pbShopifySecret}},
		{Source: "woocommerce", Path: "/pb/woo", Secrets: []string{pbWooSecret}},
		{Source: "stripe", Path: "/pb/stripe", Secrets: []string{pbStripeSecret}},
		{Source: "generic", Path: "/pb/s2s", Token: pbGenericToken},
	}
}

// newPBEnv provisions the app with Meta, TikTok and Google uploads of Purchase (configure may
// change it) and a handler with the given endpoints, and watches what the endpoints enqueue: the
// delivery engine drains the real queue meanwhile, so the queue itself cannot be read back.
func newPBEnv(t testing.TB, routes []Postback, configure func(*App)) *pbEnv {
	t.Helper()
	env := newUnstartedPBEnv(t, routes, configure)
	env.start(t)
	return env
}

// newUnstartedPBEnv is newPBEnv before the app's Start, as when Caddy starts the http app first.
func newUnstartedPBEnv(t testing.TB, routes []Postback, configure func(*App)) *pbEnv {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("XDG_DATA_HOME", dir)
	t.Setenv("XDG_CONFIG_HOME", dir)
	// The endpoints point nowhere, so that nothing could reach a real platform.
	const nowhere = "http://127.0.0.1:9"
	app := &App{
		Storage:   &StorageConfig{Path: filepath.Join(dir, "capi.db")},
		Meta:      &MetaConfig{PixelID: "1234567890", AccessToken: "meta-token", Endpoint: nowhere},
		TikTok:    &TikTokConfig{PixelCode: "C4ABCDEFGH1234567890", AccessToken: "tiktok-token", Endpoint: nowhere},
		GoogleAds: &GoogleAdsConfig{CustomerID: "1234567890", DeveloperToken: "d", ClientID: "c", ClientSecret: "s", RefreshToken: "r", Endpoint: nowhere, TokenEndpoint: nowhere, Conversions: []GoogleConversion{{Event: "Purchase", ActionID: "111"}}},
	}
	if configure != nil {
		configure(app)
	}
	ctx, err := caddy.ProvisionContext(&caddy.Config{
		Admin:   &caddy.AdminConfig{Disabled: true},
		AppsRaw: caddy.ModuleMap{"capi": mustJSON(t, app)},
	})
	if err != nil {
		t.Fatalf("provisioning the capi app: %v", err)
	}
	appIface, err := ctx.App("capi")
	if err != nil {
		t.Fatal(err)
	}
	app = appIface.(*App)
	mod, err := ctx.LoadModuleByID("http.handlers.capi", mustJSON(t, Handler{Postbacks: routes}))
	if err != nil {
		t.Fatalf("provisioning the handler: %v", err)
	}
	h := mod.(*Handler)
	t.Cleanup(func() {
		_ = h.Cleanup()
		_ = app.Stop()
		_ = app.Cleanup()
	})
	env := &pbEnv{h: h, app: app}
	site, ok := postbackEndpoints.Load(h)
	if !ok {
		t.Fatal("Provision did not set up the postback endpoints")
	}
	real := site.(*postbackSite).enqueue
	site.(*postbackSite).enqueue = func(ctx context.Context, platforms []string, e event.Event) (int, error) {
		n, err := real(ctx, platforms, e)
		env.mu.Lock()
		env.sent = append(env.sent, pbEnqueued{platforms: platforms, event: e, added: n})
		env.mu.Unlock()
		return n, err
	}
	return env
}

// start starts the app, which opens the storage.
func (env *pbEnv) start(t testing.TB) {
	t.Helper()
	if err := env.app.Start(); err != nil {
		t.Fatalf("starting the capi app: %v", err)
	}
	q, visitors, err := env.app.storage.edgeHandles(context.Background(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	env.q, env.visitors = q, visitors
}

// serve sends r through the handler and fails the test if a postback reached the next handler.
func (env *pbEnv) serve(t testing.TB, r *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		t.Errorf("postback %s %s was passed to the next handler", r.Method, r.URL.Path)
		return nil
	})
	if err := env.h.ServeHTTP(w, r, next); err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
	if c := w.Header().Values("Set-Cookie"); len(c) > 0 {
		t.Errorf("a postback answer sets cookies: %v", c)
	}
	return w
}

// queued returns the events the queue took as new for a platform.
func (env *pbEnv) queued(t testing.TB, platformName string) []event.Event {
	t.Helper()
	return env.queuedAll(t)[platformName]
}

// queuedAll returns the events the queue took as new, by platform. Every copy of an event must have
// been new or none: a partial take is a duplicate the tests do not expect.
func (env *pbEnv) queuedAll(t testing.TB) map[string][]event.Event {
	t.Helper()
	env.mu.Lock()
	defer env.mu.Unlock()
	all := map[string][]event.Event{}
	for _, s := range env.sent {
		switch s.added {
		case 0:
		case len(s.platforms):
			for _, p := range s.platforms {
				all[p] = append(all[p], s.event)
			}
		default:
			t.Fatalf("%d of %d copies of %s were new", s.added, len(s.platforms), s.event.ID)
		}
	}
	return all
}

// addVisitor stores a visitor who landed from a Meta ad, as the edge records one.
func (env *pbEnv) addVisitor(t *testing.T, cartToken string) time.Time {
	t.Helper()
	landed := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	_, err := env.visitors.Update(context.Background(), pbVisitor, func(v *store.Visitor) error {
		v.Clicks = map[string]store.Click{
			store.ClickFBCLID: {Value: pbFBCLID, FirstSeen: landed, LastSeen: landed},
			store.ClickGCLID:  {Value: pbGCLID, FirstSeen: landed, LastSeen: landed},
		}
		v.User.IP = "203.0.113.7"
		v.User.UserAgent = "Mozilla/5.0 (X11; Linux x86_64) Test"
		v.LastPageURL = "https://shop.example.com/offer"
		if cartToken != "" {
			v.CartTokens = []string{cartToken}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return landed
}

// pbOrder is what a test notification says.
type pbOrder struct {
	order    string
	kind     string // sale, refund, test
	tracking string // our visitor ID where the source carries one
	cart     string // Shopify's cart token
}

// pbSource builds requests for one source. bad signs with the wrong secret.
type pbSource struct {
	name, path string
	build      func(t testing.TB, o pbOrder, bad bool) *http.Request
	// malformed is authentic (where the scheme allows) but unreadable.
	malformed func(t *testing.T) *http.Request
	// order is the order ID the event ID derives from, for o.order.
	order func(o pbOrder) string
	// noTest: the source has no test notifications (WooCommerce).
	noTest bool
}

func pbSources() []pbSource {
	same := func(o pbOrder) string { return o.order }
	return []pbSource{
		{name: "clickbank", path: "/pb/clickbank", order: same,
			build: func(t testing.TB, o pbOrder, bad bool) *http.Request {
				typ := map[string]string{"sale": "SALE", "refund": "RFND", "test": "TEST_SALE"}[o.kind]
				doc := map[string]any{
					"transactionTime": "2026-11-27T10:00:00+00:00", "receipt": o.order, "transactionType": typ,
					"vendor": "acme", "role": "VENDOR", "totalOrderAmount": 47.00, "currency": "USD",
					"lineItems": []any{map[string]any{"itemNo": "ebook", "productTitle": "The Book", "quantity": 1}},
					"customer":  map[string]any{"billing": map[string]any{"firstName": "Jo", "lastName": "Buyer", "email": pbEmail}},
					"version":   8.0, "attemptCount": 1,
				}
				if o.tracking != "" {
					// ClickBank upper-cases the tid.
					doc["trackingCodes"] = []string{strings.ToUpper(o.tracking)}
				}
				secret := pbClickBankSecret
				if bad {
					secret = "WRONGSECRET99"
				}
				return pbPost("/pb/clickbank", "application/json", pbClickBankBody(t, secret, mustJSON(t, doc)), nil)
			},
			malformed: func(t *testing.T) *http.Request {
				return pbPost("/pb/clickbank", "application/json", []byte(`{"notification":"not base64!","iv":"x"}`), nil)
			}},
		{name: "jvzoo", path: "/pb/jvzoo", order: same,
			build: func(t testing.TB, o pbOrder, bad bool) *http.Request {
				typ := map[string]string{"sale": "SALE", "refund": "RFND", "test": "TEST_SALE"}[o.kind]
				form := url.Values{
					"ccustname": {"Jo Buyer"}, "ccustemail": {pbEmail}, "ccustcc": {"US"}, "ccuststate": {"ID"},
					"cproditem": {"12345"}, "cprodtitle": {"The Book"}, "cprodtype": {"STANDARD"},
					"ctransaction": {typ}, "ctransamount": {"47.00"}, "ctranspaymentmethod": {"PYPL"},
					"ctransreceipt": {o.order}, "ctranstime": {"1795600000"}, "ctransvendor": {"111"},
					"caffitid": {o.tracking},
				}
				secret := pbJVZooSecret
				if bad {
					secret = "NOTTHESECRET"
				}
				form.Set("cverify", pbJVZooVerify(form, secret))
				return pbPost("/pb/jvzoo", "application/x-www-form-urlencoded", []byte(form.Encode()), nil)
			},
			malformed: func(t *testing.T) *http.Request {
				// Authentic, but without a receipt.
				form := url.Values{"ctransaction": {"SALE"}, "ccustemail": {pbEmail}}
				form.Set("cverify", pbJVZooVerify(form, pbJVZooSecret))
				return pbPost("/pb/jvzoo", "application/x-www-form-urlencoded", []byte(form.Encode()), nil)
			}},
		{name: "shopify", path: "/pb/shopify", order: func(o pbOrder) string { return "820982911946154508" + o.order },
			build: func(t testing.TB, o pbOrder, bad bool) *http.Request {
				id := "820982911946154508" + o.order
				topic := "orders/paid"
				doc := map[string]any{
					"id": json.Number(id), "email": pbEmail, "total_price": "47.00", "currency": "USD",
					"financial_status": "paid", "test": o.kind == "test", "processed_at": "2026-11-27T10:00:00Z",
					"billing_address": map[string]any{"first_name": "Jo", "last_name": "Buyer", "country_code": "US"},
					"line_items":      []any{map[string]any{"sku": "BOOK-1", "title": "The Book", "quantity": 1, "price": "47.00"}},
				}
				if o.cart != "" {
					doc["cart_token"] = o.cart
				}
				if o.kind == "refund" {
					topic = "refunds/create"
					doc = map[string]any{"id": json.Number("9" + id[1:]), "order_id": json.Number(id)}
				}
				body := mustJSON(t, doc)
				secret := pbShopifySecret
				if bad {
					secret = "shpss_other"
				}
				return pbPost("/pb/shopify", "application/json", body, map[string]string{
					"X-Shopify-Hmac-Sha256": pbHMACBase64(secret, body),
					"X-Shopify-Topic":       topic,
					"X-Shopify-Webhook-Id":  "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043-" + o.order + o.kind,
				})
			},
			malformed: func(t *testing.T) *http.Request {
				body := []byte(`{"id": 1, "total_price": `)
				return pbPost("/pb/shopify", "application/json", body, map[string]string{
					"X-Shopify-Hmac-Sha256": pbHMACBase64(pbShopifySecret, body), "X-Shopify-Topic": "orders/paid"})
			}},
		{name: "woocommerce", path: "/pb/woo", order: func(o pbOrder) string { return "727" + o.order }, noTest: true,
			build: func(t testing.TB, o pbOrder, bad bool) *http.Request {
				status := map[string]string{"sale": "processing", "refund": "refunded", "test": "processing"}[o.kind]
				doc := map[string]any{
					"id": json.Number("727" + o.order), "status": status, "currency": "USD", "total": "47.00",
					"billing":             map[string]any{"email": pbEmail, "first_name": "Jo", "last_name": "Buyer", "country": "US"},
					"customer_ip_address": "198.51.100.23", "customer_user_agent": "Mozilla/5.0 (Woo buyer)",
				}
				if o.tracking != "" {
					doc["meta_data"] = []any{map[string]any{"key": "capi_vid", "value": o.tracking}}
				}
				body := mustJSON(t, doc)
				secret := pbWooSecret
				if bad {
					secret = "woo_other"
				}
				return pbPost("/pb/woo", "application/json", body, map[string]string{
					"X-WC-Webhook-Signature": pbHMACBase64(secret, body), "X-WC-Webhook-Topic": "order.updated"})
			},
			malformed: func(t *testing.T) *http.Request {
				body := []byte(`{"status":"processing"}`)
				return pbPost("/pb/woo", "application/json", body, map[string]string{"X-WC-Webhook-Signature": pbHMACBase64(pbWooSecret, body)})
			}},
		{name: "stripe", path: "/pb/stripe", order: func(o pbOrder) string { return "cs_live_" + o.order },
			build: func(t testing.TB, o pbOrder, bad bool) *http.Request {
				typ, obj := "checkout.session.completed", map[string]any{
					"id": "cs_live_" + o.order, "payment_status": "paid", "amount_total": 4700, "currency": "usd",
					"customer_details": map[string]any{"email": pbEmail, "name": "Jo Buyer"},
				}
				if o.tracking != "" {
					obj["client_reference_id"] = o.tracking
				}
				if o.kind == "refund" {
					typ, obj = "charge.refunded", map[string]any{"id": "ch_" + o.order, "payment_intent": "pi_" + o.order, "amount_refunded": 4700, "currency": "usd"}
				}
				body := mustJSON(t, map[string]any{
					"id": "evt_" + o.order + o.kind, "object": "event", "type": typ, "livemode": o.kind != "test",
					"created": 1795600000, "data": map[string]any{"object": obj},
				})
				secret := pbStripeSecret
				if bad {
					secret = "whsec_other"
				}
				return pbPost("/pb/stripe", "application/json", body, map[string]string{"Stripe-Signature": pbStripeSignature(secret, time.Now(), body)})
			},
			malformed: func(t *testing.T) *http.Request {
				body := []byte(`{"object":"event"}`)
				return pbPost("/pb/stripe", "application/json", body, map[string]string{"Stripe-Signature": pbStripeSignature(pbStripeSecret, time.Now(), body)})
			}},
		{name: "generic", path: "/pb/s2s", order: same,
			build: func(t testing.TB, o pbOrder, bad bool) *http.Request {
				q := url.Values{"txid": {o.order}, "payout": {"47.00"}, "currency": {"USD"}, "email": {pbEmail},
					"status": {map[string]string{"sale": "approved", "refund": "refunded", "test": "test"}[o.kind]}}
				if o.tracking != "" {
					q.Set("cid", o.tracking)
				}
				r := httptest.NewRequest(http.MethodGet, "http://shop.example.com/pb/s2s?"+q.Encode(), nil)
				token := pbGenericToken
				if bad {
					token = "guessed"
				}
				r.Header.Set("Authorization", "Bearer "+token)
				return r
			},
			malformed: func(t *testing.T) *http.Request {
				// Authentic, but neither a click ID nor a transaction ID.
				r := httptest.NewRequest(http.MethodGet, "http://shop.example.com/pb/s2s?payout=1", nil)
				r.Header.Set("Authorization", "Bearer "+pbGenericToken)
				return r
			}},
	}
}

func TestPostbackSaleIsEnqueuedOncePerRoutedPlatform(t *testing.T) {
	for _, src := range pbSources() {
		t.Run(src.name, func(t *testing.T) {
			env := newPBEnv(t, pbRoutes(), nil)
			o := pbOrder{order: "1001", kind: "sale"}
			if w := env.serve(t, src.build(t, o, false)); w.Code != http.StatusOK {
				t.Fatalf("status %d (%s), want 200", w.Code, w.Body)
			}
			all := env.queuedAll(t)
			wantID := conversion.EventID(installKey(t, env.app.storage), "Purchase", src.order(o))
			for _, p := range []string{"meta", "tiktok", "google"} {
				evs := all[p]
				if len(evs) != 1 {
					t.Fatalf("%s has %d events, want 1", p, len(evs))
				}
				e := evs[0]
				if e.Name != "Purchase" || e.ID != wantID || e.OrderID != src.order(o) {
					t.Errorf("%s: event %s id %s order %q; want Purchase %s %q", p, e.Name, e.ID, e.OrderID, wantID, src.order(o))
				}
				if e.Value != "47.00" && e.Value != "47" || e.Currency != "USD" {
					t.Errorf("%s: value %q %q, want 47 USD", p, e.Value, e.Currency)
				}
				if want := signal.Hash("buyer@example.com"); len(e.User.Meta.Emails) == 0 || e.User.Meta.Emails[0] != want {
					t.Errorf("%s: Meta emails %v, want the hash %s", p, e.User.Meta.Emails, want)
				}
				if e.Test {
					t.Errorf("%s: a live sale is marked test", p)
				}
			}
		})
	}
}

func TestPostbackReplayIsAnsweredAndNotEnqueuedAgain(t *testing.T) {
	for _, src := range pbSources() {
		t.Run(src.name, func(t *testing.T) {
			env := newPBEnv(t, pbRoutes(), nil)
			o := pbOrder{order: "2002", kind: "sale"}
			first := src.build(t, o, false)
			body, header, target := pbSnapshot(t, first)
			for i := range 3 {
				r := httptest.NewRequest(first.Method, target, bytes.NewReader(body))
				r.Header = header.Clone()
				if w := env.serve(t, r); w.Code != http.StatusOK {
					t.Fatalf("delivery %d: status %d (%s), want 200", i+1, w.Code, w.Body)
				}
			}
			for p, evs := range env.queuedAll(t) {
				if len(evs) != 1 {
					t.Errorf("%s has %d events after three deliveries, want 1", p, len(evs))
				}
			}
		})
	}
}

func TestPostbackForgedIsRefusedWithNothingStored(t *testing.T) {
	for _, src := range pbSources() {
		t.Run(src.name, func(t *testing.T) {
			env := newPBEnv(t, pbRoutes(), nil)
			o := pbOrder{order: "3003", kind: "sale"}
			if w := env.serve(t, src.build(t, o, true)); w.Code != http.StatusUnauthorized {
				t.Fatalf("status %d (%s), want 401", w.Code, w.Body)
			}
			if all := env.queuedAll(t); len(all) != 0 {
				t.Fatalf("a forged notification was enqueued: %v", all)
			}
			// Nothing was marked seen either: the genuine notification is still taken.
			if w := env.serve(t, src.build(t, o, false)); w.Code != http.StatusOK {
				t.Fatalf("genuine after forged: status %d (%s)", w.Code, w.Body)
			}
			if n := len(env.queued(t, "meta")); n != 1 {
				t.Fatalf("genuine after forged: %d Meta events, want 1", n)
			}
		})
	}
}

func TestPostbackMalformedIsRefused(t *testing.T) {
	for _, src := range pbSources() {
		t.Run(src.name, func(t *testing.T) {
			env := newPBEnv(t, pbRoutes(), nil)
			w := env.serve(t, src.malformed(t))
			if w.Code != http.StatusBadRequest {
				t.Fatalf("status %d (%s), want 400", w.Code, w.Body)
			}
			if !strings.Contains(w.Body.String(), "malformed notification") {
				t.Errorf("body %q does not say what is wrong", w.Body)
			}
			for _, secret := range []string{pbClickBankSecret, pbJVZooSecret, pbShopifySecret, pbWooSecret, pbStripeSecret, pbGenericToken, "uyer@"} {
				if strings.Contains(w.Body.String(), secret) {
					t.Errorf("the answer %q holds a secret or personal data", w.Body)
				}
			}
			if all := env.queuedAll(t); len(all) != 0 {
				t.Fatalf("a malformed notification was enqueued: %v", all)
			}
		})
	}
}

func TestPostbackOversizeIsRefused(t *testing.T) {
	env := newPBEnv(t, pbRoutes(), nil)
	for _, declared := range []bool{true, false} {
		t.Run(fmt.Sprintf("length declared %v", declared), func(t *testing.T) {
			body := bytes.Repeat([]byte("a"), maxPostbackBody+1)
			r := pbPost("/pb/shopify", "application/json", body, map[string]string{
				"X-Shopify-Hmac-Sha256": pbHMACBase64(pbShopifySecret, body), "X-Shopify-Topic": "orders/paid"})
			if !declared {
				r.ContentLength = -1
				r.Body = io.NopCloser(struct{ io.Reader }{bytes.NewReader(body)})
			}
			if w := env.serve(t, r); w.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d, want 413", w.Code)
			}
		})
	}
	// A body exactly at the cap is read (and refused here only for being garbage).
	body := bytes.Repeat([]byte(" "), maxPostbackBody)
	r := pbPost("/pb/shopify", "application/json", body, map[string]string{
		"X-Shopify-Hmac-Sha256": pbHMACBase64(pbShopifySecret, body), "X-Shopify-Topic": "orders/paid"})
	if w := env.serve(t, r); w.Code != http.StatusBadRequest {
		t.Fatalf("body at the cap: status %d, want 400", w.Code)
	}
}

func TestPostbackReversalIsRecordedNotSent(t *testing.T) {
	for _, src := range pbSources() {
		t.Run(src.name, func(t *testing.T) {
			env := newPBEnv(t, pbRoutes(), nil)
			o := pbOrder{order: "4004", kind: "refund"}
			for i := range 2 {
				if w := env.serve(t, src.build(t, o, false)); w.Code != http.StatusOK {
					t.Fatalf("delivery %d: status %d (%s), want 200", i+1, w.Code, w.Body)
				}
			}
			if all := env.queuedAll(t); len(all) != 0 {
				t.Fatalf("a refund was enqueued: %v", all)
			}
		})
	}
}

func TestPostbackTestGoesOnlyWhereATestCodeIs(t *testing.T) {
	for _, src := range pbSources() {
		if src.noTest {
			continue
		}
		t.Run(src.name+" without test codes", func(t *testing.T) {
			env := newPBEnv(t, pbRoutes(), nil)
			if w := env.serve(t, src.build(t, pbOrder{order: "5005", kind: "test"}, false)); w.Code != http.StatusOK {
				t.Fatalf("status %d (%s), want 200", w.Code, w.Body)
			}
			if all := env.queuedAll(t); len(all) != 0 {
				t.Fatalf("a test notification reached production: %v", all)
			}
		})
		t.Run(src.name+" with a Meta test code", func(t *testing.T) {
			env := newPBEnv(t, pbRoutes(), func(a *App) { a.Meta.TestEventCode = "TEST12345" })
			if w := env.serve(t, src.build(t, pbOrder{order: "5005", kind: "test"}, false)); w.Code != http.StatusOK {
				t.Fatalf("status %d (%s), want 200", w.Code, w.Body)
			}
			all := env.queuedAll(t)
			if len(all) != 1 || len(all["meta"]) != 1 || !all["meta"][0].Test {
				t.Fatalf("want one test event for Meta only, got %v", all)
			}
		})
	}
}

func TestPostbackJoinsTheVisitor(t *testing.T) {
	for _, src := range pbSources() {
		t.Run(src.name, func(t *testing.T) {
			env := newPBEnv(t, pbRoutes(), nil)
			const cart = "c1-5f3a9e0b7d2c4a6f8e1b3d5c7a9f0e2d"
			landed := env.addVisitor(t, cart)
			o := pbOrder{order: "6006", kind: "sale", tracking: pbVisitor, cart: cart}
			if w := env.serve(t, src.build(t, o, false)); w.Code != http.StatusOK {
				t.Fatalf("status %d (%s), want 200", w.Code, w.Body)
			}
			evs := env.queued(t, "meta")
			if len(evs) != 1 {
				t.Fatalf("%d Meta events, want 1", len(evs))
			}
			u := evs[0].User
			wantFBC := "fb.1." + strconv.FormatInt(landed.UnixMilli(), 10) + "." + pbFBCLID
			if evs[0].ActionSource != event.ActionWebsite || evs[0].SourceURL != "https://shop.example.com/offer" {
				t.Errorf("action source %q url %q; want website from the visitor's last page", evs[0].ActionSource, evs[0].SourceURL)
			}
			if u.FBC != wantFBC || u.GCLID != pbGCLID {
				t.Errorf("fbc %q gclid %q; want the visitor's clicks %q %q", u.FBC, u.GCLID, wantFBC, pbGCLID)
			}
			if u.IP != "203.0.113.7" || !strings.HasSuffix(u.UserAgent, "Test") {
				t.Errorf("ip %q ua %q; want the visitor's", u.IP, u.UserAgent)
			}
			if u.ExternalID != signal.ExternalID(pbVisitor) {
				t.Errorf("external_id %q, want the hashed visitor ID", u.ExternalID)
			}
			if want := signal.Hash("buyer@example.com"); len(u.Meta.Emails) == 0 || u.Meta.Emails[0] != want {
				t.Errorf("the buyer's email hash is missing from the joined event: %v", u.Meta.Emails)
			}
		})
	}
}

func TestPostbackUnjoinedIsSystemGenerated(t *testing.T) {
	for _, src := range pbSources() {
		t.Run(src.name, func(t *testing.T) {
			env := newPBEnv(t, pbRoutes(), nil)
			env.addVisitor(t, "some-other-cart-token-1234567890")
			o := pbOrder{order: "7007", kind: "sale", tracking: "zzzzzzzzzzzzzzzzzzzzzzzz"}
			if w := env.serve(t, src.build(t, o, false)); w.Code != http.StatusOK {
				t.Fatalf("status %d (%s), want 200", w.Code, w.Body)
			}
			evs := env.queued(t, "meta")
			if len(evs) != 1 {
				t.Fatalf("%d Meta events, want 1", len(evs))
			}
			if e := evs[0]; e.ActionSource != event.ActionSystemGenerated || e.User.FBC != "" || e.User.ExternalID != "" {
				t.Errorf("unjoined event: action source %q fbc %q external_id %q; want system_generated without the visitor's signals",
					e.ActionSource, e.User.FBC, e.User.ExternalID)
			}
		})
	}
}

func TestPostbackWebhookAndThankYouPageShareTheEventID(t *testing.T) {
	// The thank-you page's conversion rule derives its ID from the same event name and order ID; a
	// queue that already holds it refuses the webhook's copy.
	env := newPBEnv(t, pbRoutes(), nil)
	src := pbSources()[0]
	o := pbOrder{order: "8008", kind: "sale"}
	page := event.Event{Name: "Purchase", ID: conversion.EventID(installKey(t, env.app.storage), "Purchase", o.order), Time: time.Now(), ActionSource: event.ActionWebsite}
	if _, err := env.q.Enqueue(context.Background(), "meta", page); err != nil {
		t.Fatal(err)
	}
	if w := env.serve(t, src.build(t, o, false)); w.Code != http.StatusOK {
		t.Fatalf("status %d (%s)", w.Code, w.Body)
	}
	env.mu.Lock()
	defer env.mu.Unlock()
	if len(env.sent) != 1 || env.sent[0].event.ID != page.ID || len(env.sent[0].platforms) != 3 || env.sent[0].added != 2 {
		t.Fatalf("enqueued %+v; want the page's event ID for three platforms, new for TikTok and Google only", env.sent)
	}
}

func TestPostbackMethodsAndPings(t *testing.T) {
	env := newPBEnv(t, pbRoutes(), nil)
	tests := []struct {
		name  string
		req   *http.Request
		code  int
		allow string
	}{
		{"GET on a signed source", httptest.NewRequest(http.MethodGet, "http://shop.example.com/pb/shopify", nil), 405, "POST"},
		{"PUT on generic", httptest.NewRequest(http.MethodPut, "http://shop.example.com/pb/s2s", nil), 405, "GET, POST"},
		{"WooCommerce creation ping", pbPost("/pb/woo", "application/x-www-form-urlencoded", []byte("webhook_id=42"), nil), 200, ""},
		{"generic POST form", func() *http.Request {
			r := pbPost("/pb/s2s", "application/x-www-form-urlencoded", []byte("cid=abc&txid=T1&payout=5"), nil)
			r.Header.Set("Authorization", "Bearer "+pbGenericToken)
			return r
		}(), 200, ""},
		{"generic token in the query", httptest.NewRequest(http.MethodGet, "http://shop.example.com/pb/s2s?cid=abc&txid=T2&token="+pbGenericToken, nil), 200, ""},
		{"generic without token", httptest.NewRequest(http.MethodGet, "http://shop.example.com/pb/s2s?cid=abc&txid=T3", nil), 401, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := env.serve(t, tc.req)
			if w.Code != tc.code {
				t.Fatalf("status %d (%s), want %d", w.Code, w.Body, tc.code)
			}
			if got := w.Header().Get("Allow"); got != tc.allow {
				t.Errorf("Allow %q, want %q", got, tc.allow)
			}
		})
	}
}

func TestPostbackOtherPathsPassThrough(t *testing.T) {
	env := newPBEnv(t, pbRoutes(), nil)
	r := httptest.NewRequest(http.MethodPost, "http://shop.example.com/pb/shopify/other", nil)
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	called := false
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		called = true
		return nil
	})
	if err := env.h.ServeHTTP(httptest.NewRecorder(), r, next); err != nil || !called {
		t.Fatalf("a non-postback path was not passed on (err %v)", err)
	}
}

func TestPostbackWriteFailureAnswers503AndTheRetryIsTaken(t *testing.T) {
	env := newPBEnv(t, pbRoutes(), nil)
	src := pbSources()[2] // shopify
	o := pbOrder{order: "9009", kind: "sale"}
	body, header, target := pbSnapshot(t, src.build(t, o, false))
	resend := func() *http.Request {
		r := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body))
		r.Header = header.Clone()
		return r
	}

	// The storage goes away (the last config released it): nothing durable can be written.
	storage := env.app.storage
	q, visitors := storage.queue, storage.visitors
	storage.mu.Lock()
	storage.queue, storage.visitors, storage.closed = nil, nil, true
	storage.mu.Unlock()
	if w := env.serve(t, resend()); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d (%s), want 503", w.Code, w.Body)
	}
	storage.mu.Lock()
	storage.queue, storage.visitors, storage.closed = q, visitors, false
	storage.mu.Unlock()

	if w := env.serve(t, resend()); w.Code != http.StatusOK {
		t.Fatalf("retry: status %d (%s), want 200", w.Code, w.Body)
	}
	if n := len(env.queued(t, "meta")); n != 1 {
		t.Fatalf("after the retry Meta holds %d events, want 1", n)
	}
}

func TestPostbackSecretsFromPlaceholders(t *testing.T) {
	t.Setenv("CAPI_TEST_SHOPIFY_SECRET", pbShopifySecret)
	routes := []Postback{{Source: "shopify", Path: "/pb/shopify", Secrets: []string{"{env.CAPI_TEST_SHOPIFY_SECRET}"}}}
	env := newPBEnv(t, routes, nil)
	src := pbSources()[2]
	if w := env.serve(t, src.build(t, pbOrder{order: "1111", kind: "sale"}, false)); w.Code != http.StatusOK {
		t.Fatalf("status %d (%s), want 200", w.Code, w.Body)
	}

	h := &Handler{Postbacks: []Postback{{Source: "clickbank", Path: "/pb", Secrets: []string{"{env.CAPI_TEST_UNSET_SECRET}"}}}, app: env.app, logger: zaptest.NewLogger(t)}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	err := h.provisionPostbacks(ctx)
	if err == nil || !strings.Contains(err.Error(), "capi.postbacks[0].secrets[0]") || !strings.Contains(err.Error(), "{env.CAPI_TEST_UNSET_SECRET}") {
		t.Fatalf("an unset secret placeholder: got %v, want an error naming the directive and the placeholder", err)
	}
}

// pbPost builds a POST to path with a body and headers.
func pbPost(path, contentType string, body []byte, header map[string]string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "http://shop.example.com"+path, bytes.NewReader(body))
	r.Header.Set("Content-Type", contentType)
	for k, v := range header {
		r.Header.Set(k, v)
	}
	return r
}

// pbSnapshot returns what is needed to send r again byte for byte.
func pbSnapshot(t testing.TB, r *http.Request) ([]byte, http.Header, string) {
	t.Helper()
	var body []byte
	if r.Body != nil {
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(r.Body); err != nil {
			t.Fatal(err)
		}
		body = buf.Bytes()
	}
	return body, r.Header.Clone(), r.URL.String()
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pbClickBankBody encrypts a notification as ClickBank INS does: AES-256-CBC under the first 32
// lowercase hex characters of SHA-1(secret), PKCS#7 padding, random-looking IV, both base64.
func pbClickBankBody(t testing.TB, secret string, plaintext []byte) []byte {
	t.Helper()
	sum := sha1.Sum([]byte(secret))
	block, err := aes.NewCipher([]byte(hex.EncodeToString(sum[:])[:32]))
	if err != nil {
		t.Fatal(err)
	}
	pad := aes.BlockSize - len(plaintext)%aes.BlockSize
	padded := append(append([]byte(nil), plaintext...), bytes.Repeat([]byte{byte(pad)}, pad)...)
	iv := []byte("M0EwQTZDMjlBRQ==")
	ct := make([]byte, len(padded))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, padded)
	return mustJSON(t, map[string]string{
		"notification": base64.StdEncoding.EncodeToString(ct),
		"iv":           base64.StdEncoding.EncodeToString(iv),
	})
}

// pbJVZooVerify computes JVZIPN v1's cverify: every field's value but cverify's, in the order of
// the field names, each followed by a pipe, then the secret; SHA-1; the first 8 hex digits upper-cased.
func pbJVZooVerify(form url.Values, secret string) string {
	var names []string
	for k := range form {
		if k != "cverify" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var pre strings.Builder
	for _, k := range names {
		pre.WriteString(form.Get(k) + "|")
	}
	sum := sha1.Sum([]byte(pre.String() + secret))
	return strings.ToUpper(hex.EncodeToString(sum[:])[:8])
}

func pbHMACBase64(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// pbStripeSignature builds Stripe-Signature: t=<unix>,v1=hex(HMAC-SHA256("<t>.<body>")).
func pbStripeSignature(secret string, at time.Time, body []byte) string {
	ts := strconv.FormatInt(at.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(body)))
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

func TestPostbackJoinsByHashedEmail(t *testing.T) {
	env := newPBEnv(t, pbRoutes(), nil)
	env.addVisitor(t, "")
	if _, err := env.visitors.Update(context.Background(), pbVisitor, func(v *store.Visitor) error {
		v.User.Meta.Emails = []string{signal.Hash("buyer@example.com")}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A postback with no tracking ID and no click ID: only the buyer's email can find the visitor.
	r := httptest.NewRequest(http.MethodGet, "http://shop.example.com/pb/s2s?txid=1212&payout=9&email="+url.QueryEscape(pbEmail), nil)
	r.Header.Set("Authorization", "Bearer "+pbGenericToken)
	if w := env.serve(t, r); w.Code != http.StatusOK {
		t.Fatalf("status %d (%s)", w.Code, w.Body)
	}
	evs := env.queued(t, "meta")
	if len(evs) != 1 || evs[0].User.ExternalID != signal.ExternalID(pbVisitor) || evs[0].ActionSource != event.ActionWebsite {
		t.Fatalf("the postback was not joined by the email hash: %+v", evs)
	}
}

// FuzzPostbackRequest sends arbitrary bodies and signature headers to every endpoint. Without the
// secrets nothing can be authentic, so whatever arrives is refused (or, for a WooCommerce creation
// ping, answered) with nothing enqueued, and no answer echoes a secret.
func FuzzPostbackRequest(f *testing.F) {
	env := newPBEnv(f, pbRoutes(), nil)
	f.Add(uint8(0), []byte(`{"notification":"AAAAAAAAAAAAAAAAAAAAAA==","iv":"QUJDREVGR0hJSktMTU5PUA=="}`), "")
	f.Add(uint8(1), []byte("ctransreceipt=A&ctransaction=SALE&cverify=DEADBEEF"), "")
	f.Add(uint8(2), []byte(`{"id":1}`), "hMTq0K2x7oyOjoBwGYeTj5oxfnaVYXzbanUG9aajpKI=")
	f.Add(uint8(3), []byte("webhook_id=12"), "")
	f.Add(uint8(4), []byte(`{"id":"evt_1","type":"checkout.session.completed"}`), "t=1700000000,v1=00")
	f.Add(uint8(5), []byte("cid=abc&txid=1&token=wrong"), "Bearer wrong")
	routes := pbRoutes()
	headers := map[string]string{"shopify": "X-Shopify-Hmac-Sha256", "woocommerce": "X-WC-Webhook-Signature", "stripe": "Stripe-Signature", "generic": "Authorization"}
	f.Fuzz(func(t *testing.T, which uint8, body []byte, sig string) {
		route := routes[int(which)%len(routes)]
		r := httptest.NewRequest(http.MethodPost, "http://shop.example.com"+route.Path, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if h := headers[route.Source]; h != "" && sig != "" && !strings.ContainsAny(sig, "\r\n\x00") {
			r.Header.Set(h, sig)
		}
		w := env.serve(t, r)
		switch w.Code {
		case http.StatusBadRequest, http.StatusUnauthorized:
		case http.StatusOK:
			if route.Source != "woocommerce" {
				t.Fatalf("%s: an unsigned request was answered 200", route.Source)
			}
		default:
			t.Fatalf("%s: status %d", route.Source, w.Code)
		}
		for _, secret := range []string{pbClickBankSecret, pbJVZooSecret, pbShopifySecret, pbWooSecret, pbStripeSecret, pbGenericToken} {
			if strings.Contains(w.Body.String(), secret) {
				t.Fatalf("the answer echoes a secret: %q", w.Body)
			}
		}
		if all := env.queuedAll(t); len(all) != 0 {
			t.Fatalf("%s: an unsigned request was enqueued", route.Source)
		}
	})
}

// BenchmarkPostback measures a signed Shopify webhook through the handler: a new order (verify,
// join, two durable writes and three enqueues, each an fsync'd bbolt commit) and a replay (verify
// and the idempotency check only).
func BenchmarkPostback(b *testing.B) {
	env := newPBEnv(b, pbRoutes(), nil)
	src := pbSources()[2]
	b.Run("new order", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			w := httptest.NewRecorder()
			r := src.build(b, pbOrder{order: strconv.Itoa(100000 + i), kind: "sale"}, false)
			if handled, _ := env.h.servePostback(w, r); !handled || w.Code != http.StatusOK {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
	b.Run("replay", func(b *testing.B) {
		body, header, target := pbSnapshot(b, src.build(b, pbOrder{order: "777", kind: "sale"}, false))
		b.ReportAllocs()
		for b.Loop() {
			r := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body))
			r.Header = header
			w := httptest.NewRecorder()
			if handled, _ := env.h.servePostback(w, r); !handled || w.Code != http.StatusOK {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
}

func TestPostbackLogsHoldNoTokenSecretOrPersonalData(t *testing.T) {
	env := newPBEnv(t, pbRoutes(), nil)
	core, logs := observer.New(zapcore.DebugLevel)
	env.h.logger = zap.New(core)
	requests := []*http.Request{
		// The token in the query, as networks that cannot set headers send it, with the buyer's email.
		httptest.NewRequest(http.MethodGet, "http://shop.example.com/pb/s2s?cid=abc&txid=L1&email="+url.QueryEscape(pbEmail)+"&token="+pbGenericToken, nil),
		httptest.NewRequest(http.MethodGet, "http://shop.example.com/pb/s2s?cid=abc&txid=L2&token="+pbGenericToken+"x", nil),
		// Keyed by its click ID, here our own visitor ID: replayed as a cookie it would be the visitor.
		httptest.NewRequest(http.MethodGet, "http://shop.example.com/pb/s2s?cid="+pbVisitor+"&token="+pbGenericToken, nil),
	}
	for _, src := range pbSources() {
		requests = append(requests, src.build(t, pbOrder{order: "4242", kind: "sale", tracking: pbVisitor}, false),
			src.build(t, pbOrder{order: "4243", kind: "refund"}, false), src.build(t, pbOrder{order: "4244", kind: "sale"}, true), src.malformed(t))
	}
	for _, r := range requests {
		env.serve(t, r)
	}
	if logs.Len() == 0 {
		t.Fatal("nothing was logged; the test observes the wrong logger")
	}
	for _, entry := range logs.All() {
		line := entry.Message
		for k, v := range entry.ContextMap() {
			line += " " + k + "=" + fmt.Sprint(v)
		}
		for _, secret := range []string{pbClickBankSecret, pbJVZooSecret, pbShopifySecret, pbWooSecret, pbStripeSecret, pbGenericToken, "uyer@example.com", "Jo Buyer", pbVisitor} {
			if strings.Contains(strings.ToLower(line), strings.ToLower(secret)) {
				t.Errorf("a log entry holds %q: %s", secret, line)
			}
		}
	}
}

func TestPostbackBeforeTheAppStartedWaitsForTheStorage(t *testing.T) {
	env := newUnstartedPBEnv(t, pbRoutes(), nil)
	src := pbSources()[0]
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- env.serve(t, src.build(t, pbOrder{order: "1313", kind: "sale"}, false)) }()
	time.Sleep(100 * time.Millisecond)
	env.start(t)
	select {
	case w := <-done:
		if w.Code != http.StatusOK {
			t.Fatalf("status %d (%s), want 200 once the storage opened", w.Code, w.Body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the postback did not complete after the app started")
	}
	if n := len(env.queued(t, "meta")); n != 1 {
		t.Fatalf("Meta has %d events, want 1", n)
	}
}
