package integration

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/google"
	"github.com/caddy-capi/caddy-capi/capi/meta"
	"github.com/caddy-capi/caddy-capi/capi/platform"
	"github.com/caddy-capi/caddy-capi/capi/signal"
	"github.com/caddy-capi/caddy-capi/capi/tiktok"
	"github.com/caddy-capi/caddy-capi/integration/fakes"
)

// fullPurchase is a Purchase whose user carries every signal we know of: a customer from a
// checkout form, normalized by package signal, and the identity signals the edge collects.
func fullPurchase(t *testing.T, id, order string) event.Event {
	t.Helper()
	profiles, drops := signal.Normalize(signal.Customer{
		Emails:      []string{" Jane.Doe+Shop@GMail.com "},
		Phones:      []string{"(650) 555-1212"},
		FirstName:   "Jane",
		LastName:    "O'Doe",
		DateOfBirth: "02/16/1997",
		Gender:      "Female",
		Street:      "1 Hacker Way",
		City:        "Menlo Park",
		State:       "California",
		Zip:         "94025-1234",
		Country:     "United States",
	}, signal.Options{DefaultCountry: "US"})
	if len(drops) > 0 {
		t.Fatalf("a valid customer lost values: %v", drops)
	}
	now := time.Now()
	return event.Event{
		Name:         "Purchase",
		ID:           id,
		Time:         now.Add(-time.Minute),
		SourceURL:    "https://shop.example.com/thank-you?order=" + order,
		Referrer:     "https://shop.example.com/checkout",
		ActionSource: event.ActionWebsite,
		Value:        "49.90",
		Currency:     "USD",
		OrderID:      order,
		ContentType:  "product",
		ContentIDs:   []string{"SKU-1"},
		Contents:     []event.Content{{ID: "SKU-1", Quantity: 1, ItemPrice: "49.90"}},
		User: event.User{
			ExternalID: signal.ExternalID("abcdefghijklmnopqrstuvwx"),
			IP:         "2001:db8::7",
			UserAgent:  "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36",
			Locale:     "en-US",
			FBC:        "fb.1.1700000000000.IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk",
			FBP:        "fb.1.1700000000000.1116446470",
			TTCLID:     "E.C.P.v3Bq9kLm",
			TTP:        "2F7h37YkS1j57AYSKTI7IHhJPYH",
			GCLID:      "Cj0KCQiA-test_gclid",
			Meta:       profiles.Meta,
			TikTok:     profiles.TikTok,
			Google:     profiles.Google,
		},
	}
}

// TestFullProfilePayloadsAreAcceptedByStrictFakes sends a full-profile Purchase through the real
// senders to the strict fake platforms: each must accept it with no violation, and what arrives
// must carry every signal the platform takes (Meta 15, TikTok 12, Google 9).
func TestFullProfilePayloadsAreAcceptedByStrictFakes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := fullPurchase(t, "0123456789abcdef0123456789abcdef", "ORD-1001")
	for _, p := range []string{platform.Meta, platform.TikTok, platform.Google} {
		if c := signal.CoverageOf(p, e.User); len(c.Missing) > 0 {
			t.Fatalf("%s: the full customer lacks %v", p, c.Missing)
		}
	}
	client := &http.Client{Timeout: 10 * time.Second}

	t.Run("meta", func(t *testing.T) {
		fake := fakes.NewMeta(t, fakes.MetaConfig{})
		s, err := meta.NewSender(meta.Config{PixelID: "1234567890123456", AccessToken: "meta-test-token", Endpoint: fake.URL(), Client: client})
		if err != nil {
			t.Fatal(err)
		}
		if r := s.Send(ctx, []event.Event{e}); r.Outcome != platform.Delivered || len(r.Events) > 0 {
			t.Fatalf("Meta did not accept the event: %+v", r)
		}
		got := fake.WaitEvent(t, e.ID, 5*time.Second)
		for _, key := range []string{"em", "ph", "fn", "ln", "db", "ge", "ct", "st", "zp", "country",
			"external_id", "client_ip_address", "client_user_agent", "fbc", "fbp"} {
			if got.Get("user_data."+key) == nil {
				t.Errorf("user_data.%s missing from what Meta received", key)
			}
		}
		if got.Get("custom_data.order_id") != "ORD-1001" {
			t.Errorf("custom_data.order_id = %v", got.Get("custom_data.order_id"))
		}
	})

	t.Run("tiktok", func(t *testing.T) {
		fake := fakes.NewTikTok(t, fakes.TikTokConfig{})
		s, err := tiktok.NewSender(tiktok.Config{PixelCode: "CAPITESTPIXEL0000001", AccessToken: "tiktok-test-token", Endpoint: fake.URL(), Client: client})
		if err != nil {
			t.Fatal(err)
		}
		if r := s.Send(ctx, []event.Event{e}); r.Outcome != platform.Delivered || len(r.Events) > 0 {
			t.Fatalf("TikTok did not accept the event: %+v", r)
		}
		got := fake.WaitEvent(t, e.ID, 5*time.Second)
		// TikTok's 12 (DESIGN §1): the address counts once, as city, state and country.
		for _, key := range []string{"email", "phone", "external_id", "ttclid", "ttp", "ip", "user_agent",
			"locale", "first_name", "last_name", "zip_code", "city", "state", "country"} {
			if got.Get("user."+key) == nil {
				t.Errorf("user.%s missing from what TikTok received", key)
			}
		}
	})

	t.Run("google", func(t *testing.T) {
		fake := fakes.NewGoogle(t, fakes.GoogleConfig{})
		s, err := google.NewSender(google.Config{
			CustomerID: "1234567890", DeveloperToken: "google-dev-token",
			ClientID: "google-client-id", ClientSecret: "google-client-secret", RefreshToken: "google-refresh-token",
			Conversions: map[string]google.Conversion{"Purchase": {ActionID: "987654321", Label: "AbCdEf"}},
			Endpoint:    fake.URL(), TokenEndpoint: fake.TokenURL(), Client: client,
		})
		if err != nil {
			t.Fatal(err)
		}
		if r := s.Send(ctx, []event.Event{e}); r.Outcome != platform.Delivered || len(r.Events) > 0 {
			t.Fatalf("Google did not accept the event: %+v", r)
		}
		var click, adjustment *fakes.Event
		for _, got := range fake.WaitAccepted(t, 2, 5*time.Second) {
			switch got.Endpoint {
			case "uploadClickConversions":
				click = &got
			case "uploadConversionAdjustments":
				adjustment = &got
			}
		}
		if click == nil || adjustment == nil {
			t.Fatalf("want a click conversion and an enhancement, got click=%v adjustment=%v", click != nil, adjustment != nil)
		}
		if click.Get("gclid") != e.User.GCLID || click.Get("orderId") != "ORD-1001" {
			t.Errorf("click conversion: gclid %v, orderId %v", click.Get("gclid"), click.Get("orderId"))
		}
		if adjustment.Get("orderId") != "ORD-1001" || adjustment.Get("adjustmentType") != "ENHANCEMENT" {
			t.Errorf("enhancement: orderId %v, adjustmentType %v", adjustment.Get("orderId"), adjustment.Get("adjustmentType"))
		}
		// Google's 9 user-provided fields, all in the enhancement.
		found := map[string]bool{}
		ids, _ := adjustment.Get("userIdentifiers").([]any)
		for _, id := range ids {
			m, _ := id.(map[string]any)
			for k, v := range m {
				if k == "addressInfo" {
					addr, _ := v.(map[string]any)
					for ak := range addr {
						found[ak] = true
					}
					continue
				}
				found[k] = true
			}
		}
		for _, key := range []string{"hashedEmail", "hashedPhoneNumber", "hashedFirstName", "hashedLastName",
			"hashedStreetAddress", "city", "state", "postalCode", "countryCode"} {
			if !found[key] {
				t.Errorf("%s missing from the enhancement's userIdentifiers", key)
			}
		}
	})
}
