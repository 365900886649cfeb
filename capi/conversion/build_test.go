package conversion

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/capture"
	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/identity"
	"github.com/caddy-capi/caddy-capi/capi/platform"
	"github.com/caddy-capi/caddy-capi/capi/postback"
	"github.com/caddy-capi/caddy-capi/capi/signal"
	"github.com/caddy-capi/caddy-capi/capi/store"
)

const (
	buyerVID  = "b7uyer0k3j9x0a1b2c3d4e5f"
	landing   = "https://shop.example/landing?fbclid=IwAR_landing1&gclid=Cj0KCQ-gclid&ttclid=E.C.P.ttclid1"
	thankYou  = "https://shop.example/thank-you?order=CB123&email=buyer%40example.com#top"
	browserUA = "Mozilla/5.0 (Macintosh) Safari/605.1.15"
)

// visit resolves a real request through the identity package and folds it into the visitor record,
// as the handler does on every page.
func visit(t *testing.T, st store.Store, rawURL string, at time.Time) store.Visitor {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, rawURL, nil)
	r.AddCookie(&http.Cookie{Name: identity.CookieVisitorID, Value: buyerVID})
	for _, c := range previousCookies[buyerVID] {
		r.AddCookie(c)
	}
	id := identity.Resolve(r, identity.Options{Now: func() time.Time { return at }})
	previousCookies[buyerVID] = id.Cookies
	req := Request{URL: rawURL, IP: "203.0.113.7", UserAgent: browserUA, AcceptLanguage: "en-US,en;q=0.8", HTML: true}
	return put(t, st, id.VisitorID, func(v *store.Visitor) { ApplyIdentity(v, id, req, at) })
}

var previousCookies = map[string][]*http.Cookie{}

// clickBankSale is a ClickBank INS sale as the postback package reads it: the hoplink's tid carried
// our visitor ID, which ClickBank upper-cased.
func clickBankSale() postback.Notification {
	return postback.Notification{
		Source:         "clickbank",
		Kind:           postback.Sale,
		IdempotencyKey: "CB123:SALE",
		OrderID:        "CB123",
		Value:          "47.00",
		Currency:       "USD",
		Occurred:       t0.Add(2 * time.Hour),
		Customer: postback.Customer{
			Emails:    []string{"Buyer@Example.com"},
			FirstName: "Jane",
			LastName:  "Doe",
			Country:   "US",
			Zip:       "94105",
			City:      "San Francisco",
			State:     "CA",
		},
		Join:     postback.Join{TrackingIDs: []string{strings.ToUpper(buyerVID)}},
		Products: []postback.Product{{ID: "ebook-1", Title: "The Book", Quantity: 1, Price: "47.00"}},
	}
}

func TestFromNotificationJoinedSale(t *testing.T) {
	delete(previousCookies, buyerVID)
	st := newStore(t)
	visit(t, st, landing, t0)
	// The checkout form's fields joined the visitor profile; the phone is known only from it and the
	// first name differs from the one on the order.
	put(t, st, buyerVID, func(v *store.Visitor) {
		ApplyCapture(v, capture.Submission{Customer: capture.Customer{
			Emails: []string{"jane.old@example.com"}, Phones: []string{"+1 415 555 0100"}, FirstName: "Janet",
			DateOfBirth: "1990-04-12", Gender: "female", Street: "1 Market St",
		}}, Options{Now: fixedNow})
	})
	visit(t, st, thankYou, t0.Add(time.Hour))

	n := clickBankSale()
	v, by, found, err := Join(context.Background(), st, n.Join, nil)
	if err != nil || !found || by != JoinedByTrackingID {
		t.Fatalf("Join = (%v, %q, %v)", found, by, err)
	}
	e, err := FromNotification(n, &v, Options{IDKey: testIDKey, DefaultCountry: "US", Now: func() time.Time { return t0.Add(3 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}

	fresh, _ := signal.Normalize(signal.Customer(n.Customer), signal.Options{DefaultCountry: "US", Now: fixedNow})
	checks := []struct {
		what      string
		got, want any
	}{
		{"name", e.Name, "Purchase"},
		{"event ID shared with the thank-you page", e.ID, EventID(testIDKey, "Purchase", "CB123")},
		{"time is the sale's", e.Time, n.Occurred},
		{"action source", e.ActionSource, event.ActionWebsite},
		{"source URL is the last page, without the email in its query or the fragment", e.SourceURL, "https://shop.example/thank-you?order=CB123"},
		{"value", e.Value, "47.00"},
		{"currency", e.Currency, "USD"},
		{"order ID", e.OrderID, "CB123"},
		{"contents", e.Contents, []event.Content{{ID: "ebook-1", Quantity: 1, ItemPrice: "47.00", Title: "The Book"}}},
		{"content IDs", e.ContentIDs, []string{"ebook-1"}},
		{"content type", e.ContentType, "product"},
		{"num items", e.NumItems, 1},
		{"test", e.Test, false},
		{"external_id", e.User.ExternalID, signal.ExternalID(buyerVID)},
		{"ip", e.User.IP, "203.0.113.7"},
		{"user agent", e.User.UserAgent, browserUA},
		{"locale", e.User.Locale, "en-US"},
		{"fbc from the landing's click", e.User.FBC, "fb.1." + strconv.FormatInt(t0.UnixMilli(), 10) + ".IwAR_landing1"},
		{"gclid", e.User.GCLID, "Cj0KCQ-gclid"},
		{"ttclid", e.User.TTCLID, "E.C.P.ttclid1"},
		{"the notification's email first, the form's kept", e.User.Meta.Emails, []string{fresh.Meta.Emails[0], signal.Hash("jane.old@example.com")}},
		{"phone from the captured form", e.User.Meta.Phones, []string{signal.Hash("14155550100")}},
		{"the notification's first name wins", e.User.Meta.FirstName, signal.Hash("jane")},
		{"last name", e.User.Meta.LastName, signal.Hash("doe")},
		{"city", e.User.Meta.City, fresh.Meta.City},
		{"zip", e.User.Meta.Zip, signal.Hash("94105")},
		{"TikTok city plain", e.User.TikTok.City, fresh.TikTok.City},
		{"Google country", e.User.Google.Country, "US"},
	}
	for _, c := range checks {
		eq(t, c.what, c.got, c.want)
	}
	if !identity.ValidFBP(e.User.FBP) || e.User.TTP == "" {
		t.Errorf("fbp %q / ttp %q missing", e.User.FBP, e.User.TTP)
	}
	// The joined conversion carries every signal each platform accepts (DESIGN §1.6).
	for _, p := range []string{platform.Meta, platform.TikTok, platform.Google} {
		if c := signal.CoverageOf(p, e.User); len(c.Missing) > 0 {
			t.Errorf("%s signals missing: %v", p, c.Missing)
		}
	}
	assertNoPlaintext(t, e, "buyer@example.com", "Jane", "Doe", "jane.old@example.com", "4155550100", "1990-04-12", "Market")
}

func TestFromNotificationUnjoined(t *testing.T) {
	n := clickBankSale()
	n.Join = postback.Join{FBCLID: "IwAR_fromVendorVar", GCLID: "gclid-from-meta"}
	n.IP, n.UserAgent = "2001:db8::1", "Shopify Checkout UA"
	e, err := FromNotification(n, nil, Options{IDKey: testIDKey, EventName: "Subscribe", Now: func() time.Time { return t0.Add(3 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"configured name", e.Name, "Subscribe"},
		{"ID from the configured name", e.ID, EventID(testIDKey, "Subscribe", "CB123")},
		{"action source", e.ActionSource, event.ActionSystemGenerated},
		{"no source URL", e.SourceURL, ""},
		{"no external_id without a visitor", e.User.ExternalID, ""},
		{"the notification's IP", e.User.IP, "2001:db8::1"},
		{"the notification's user agent", e.User.UserAgent, "Shopify Checkout UA"},
		{"fbc built from the click with the sale's time and index 1", e.User.FBC, "fb.1." + strconv.FormatInt(n.Occurred.UnixMilli(), 10) + ".IwAR_fromVendorVar"},
		{"gclid", e.User.GCLID, "gclid-from-meta"},
		{"email hashed", e.User.Meta.Emails, []string{signal.Hash("buyer@example.com")}},
	}
	for _, c := range checks {
		eq(t, c.what, c.got, c.want)
	}

	n.Join = postback.Join{}
	e, err = FromNotification(n, nil, Options{IDKey: testIDKey, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	if e.User.FBC != "" {
		t.Errorf("fbc %q made up without any click", e.User.FBC)
	}
	if !e.Time.Equal(t0) {
		t.Errorf("a sale dated after now (%v) kept its future time %v", t0, e.Time)
	}
}

func TestFromNotificationJoinedVisitorWithoutPageIsSystemGenerated(t *testing.T) {
	v := store.Visitor{ID: buyerVID, User: event.User{IP: "198.51.100.2"}} // no page, no user agent
	e, err := FromNotification(clickBankSale(), &v, Options{IDKey: testIDKey, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	if e.ActionSource != event.ActionSystemGenerated || e.SourceURL != "" {
		t.Errorf("action source %q, url %q: Meta refuses a website event without page URL and user agent", e.ActionSource, e.SourceURL)
	}
	if e.User.ExternalID != signal.ExternalID(buyerVID) || e.User.IP != "198.51.100.2" {
		t.Errorf("visitor identity lost: %+v", e.User)
	}
}

// A visitor whose browser sent Global Privacy Control keeps its restrictions on the order that comes
// back by postback, and an unjoined notification has none to apply.
func TestFromNotificationCarriesTheVisitorsConsent(t *testing.T) {
	limited := event.Consent{LimitedDataUse: true, AdUserDataDenied: true}
	v := store.Visitor{ID: buyerVID, Consent: limited, LastPageURL: "https://shop.example.com/offer",
		User: event.User{IP: "198.51.100.2", UserAgent: "Mozilla/5.0 Test"}}
	e, err := FromNotification(clickBankSale(), &v, Options{IDKey: testIDKey, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	if e.Consent != limited {
		t.Errorf("consent %+v, want the visitor's %+v", e.Consent, limited)
	}
	if e, err := FromNotification(clickBankSale(), nil, Options{IDKey: testIDKey, Now: fixedNow}); err != nil || e.Consent != (event.Consent{}) {
		t.Errorf("unjoined: consent %+v, %v", e.Consent, err)
	}
}

func TestFromNotificationKinds(t *testing.T) {
	tests := []struct {
		kind     postback.Kind
		test     bool
		wantErr  bool
		wantTest bool
	}{
		{postback.Sale, false, false, false},
		{postback.Rebill, false, false, false},
		{postback.Sale, true, false, true},
		{postback.Test, true, false, true},
		{postback.Refund, false, true, false},
		{postback.Chargeback, false, true, false},
		{postback.Cancel, false, true, false},
		{postback.Other, false, true, false},
		{postback.Refund, true, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.kind.String(), func(t *testing.T) {
			n := clickBankSale()
			n.Kind, n.Test = tt.kind, tt.test
			e, err := FromNotification(n, nil, Options{IDKey: testIDKey, Now: fixedNow})
			if tt.wantErr {
				if !errors.Is(err, ErrNotConversion) {
					t.Fatalf("err = %v, want ErrNotConversion", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.Test != tt.wantTest {
				t.Errorf("Test = %v, want %v", e.Test, tt.wantTest)
			}
		})
	}
}

func TestFromNotificationDropsBadValues(t *testing.T) {
	n := clickBankSale()
	n.Value, n.Currency = "4,7", "dollars"
	n.IP, n.UserAgent = "not-an-ip", "bad\x00agent"
	n.Customer.Emails = []string{"not-an-email"}
	n.Products = []postback.Product{
		{ID: "a", Quantity: 2, Price: "10"}, {ID: "a", Quantity: 1, Price: "10"},
		{ID: strings.Repeat("x", MaxContentIDLength+1), Quantity: 1}, {ID: "b", Price: "-3"},
	}
	var drops []string
	e, err := FromNotification(n, nil, Options{IDKey: testIDKey, Now: fixedNow, Dropped: func(d Drop) { drops = append(drops, d.Field) }})
	if err != nil {
		t.Fatal(err)
	}
	if e.Value != "" || e.Currency != "" || e.User.IP != "" || e.User.UserAgent != "" || len(e.User.Meta.Emails) != 0 {
		t.Errorf("invalid values kept: %+v", e)
	}
	want := []event.Content{{ID: "a", Quantity: 3, ItemPrice: "10"}, {ID: "b"}}
	if !reflect.DeepEqual(e.Contents, want) || e.NumItems != 4 {
		t.Errorf("contents = %+v (num %d), want %+v (num 4)", e.Contents, e.NumItems, want)
	}
	for _, f := range []string{"value", "currency", "ip", "user_agent", "email", "contents", "item_price"} {
		if !strings.Contains(strings.Join(drops, ","), f) {
			t.Errorf("no drop reported for %s (got %v)", f, drops)
		}
	}
}

func TestFromRequest(t *testing.T) {
	delete(previousCookies, buyerVID)
	st := newStore(t)
	v := visit(t, st, landing, t0)
	req := Request{
		URL: thankYou, Referrer: "https://shop.example/checkout", IP: "203.0.113.9", UserAgent: "UA 2",
		AcceptLanguage: "de-CH, de;q=0.9", Consent: event.Consent{LimitedDataUse: true},
	}
	tests := []struct {
		name      string
		c         Conversion
		v         *store.Visitor
		want      func(*testing.T, event.Event)
		wantDrops []string
		wantErr   error
	}{
		{
			name: "order ID gives the deterministic ID; values cleaned",
			c: Conversion{Name: "Purchase", Value: " +0049.90 ", Currency: "eur", OrderID: " 1001 ",
				ContentIDs: []string{"sku-1, sku-2", "sku-1", ""}},
			v: &v,
			want: func(t *testing.T, e event.Event) {
				eq(t, "id", e.ID, EventID(testIDKey, "Purchase", "1001"))
				eq(t, "value", e.Value, "49.90")
				eq(t, "currency", e.Currency, "EUR")
				eq(t, "order", e.OrderID, "1001")
				eq(t, "content IDs", e.ContentIDs, []string{"sku-1", "sku-2"})
				eq(t, "content type", e.ContentType, "product")
				eq(t, "action source", e.ActionSource, event.ActionWebsite)
				eq(t, "source URL", e.SourceURL, "https://shop.example/thank-you?order=CB123")
				eq(t, "referrer", e.Referrer, "https://shop.example/checkout")
				eq(t, "consent", e.Consent, event.Consent{LimitedDataUse: true})
				eq(t, "external_id", e.User.ExternalID, signal.ExternalID(buyerVID))
				eq(t, "this request's IP", e.User.IP, "203.0.113.9")
				eq(t, "this request's UA", e.User.UserAgent, "UA 2")
				eq(t, "locale", e.User.Locale, "de-CH")
				eq(t, "gclid from the visitor", e.User.GCLID, "Cj0KCQ-gclid")
				eq(t, "fbc from the visitor", identity.FBCLIDOf(e.User.FBC), "IwAR_landing1")
				eq(t, "time", e.Time, t0)
			},
		},
		{
			name: "no order ID: random",
			c:    Conversion{Name: "Lead"},
			want: func(t *testing.T, e event.Event) {
				if !ValidEventID(e.ID) || e.ID == EventID(testIDKey, "Lead", "") {
					t.Errorf("id %q", e.ID)
				}
			},
		},
		{
			name: "the browser's ID is kept",
			c:    Conversion{Name: "AddToCart", ID: "0123456789abcdef0123456789abcdef", OrderID: "1001"},
			want: func(t *testing.T, e event.Event) { eq(t, "id", e.ID, "0123456789abcdef0123456789abcdef") },
		},
		{
			name: "no visitor record: external_id from the cookie's visitor ID",
			c:    Conversion{Name: "Lead"},
			want: func(t *testing.T, e event.Event) {
				eq(t, "external_id", e.User.ExternalID, signal.ExternalID(buyerVID))
				eq(t, "ip", e.User.IP, "203.0.113.9")
			},
		},
		{
			name: "invalid value, currency, content ID and order ID are dropped, the event is made",
			c: Conversion{Name: "Purchase", Value: "1,234.00", Currency: "XXX", OrderID: "a\nb",
				ContentIDs: []string{strings.Repeat("s", MaxContentIDLength+1) + ",ok"}},
			want: func(t *testing.T, e event.Event) {
				eq(t, "value", e.Value, "")
				eq(t, "currency", e.Currency, "")
				eq(t, "order", e.OrderID, "")
				eq(t, "content IDs", e.ContentIDs, []string{"ok"})
			},
			wantDrops: []string{"order_id", "value", "currency", "content_ids"},
		},
		{name: "empty name", c: Conversion{Name: " "}, wantErr: ErrEventName},
		{name: "name with control characters", c: Conversion{Name: "Purchase\n"}, wantErr: nil, want: func(t *testing.T, e event.Event) { eq(t, "name", e.Name, "Purchase") }},
		{name: "name with inner control characters", c: Conversion{Name: "Pur\x01chase"}, wantErr: ErrEventName},
		{name: "hostile browser ID", c: Conversion{Name: "Lead", ID: "x'><script>"}, wantErr: ErrEventID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := req
			r.VisitorID = buyerVID
			e, drops, err := FromRequest(tt.c, tt.v, r, Options{IDKey: testIDKey, Now: fixedNow})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.want(t, e)
			var fields []string
			for _, d := range drops {
				fields = append(fields, d.Field)
			}
			eq(t, "drops", fields, tt.wantDrops)
		})
	}
}

func eq(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

// assertNoPlaintext fails if any of the plaintext values appears anywhere in the event.
func assertNoPlaintext(t *testing.T, e event.Event, plain ...string) {
	t.Helper()
	s := strings.ToLower(fmtEvent(e))
	for _, p := range plain {
		if strings.Contains(s, strings.ToLower(p)) {
			t.Errorf("plaintext %q in the event", p)
		}
	}
}
