package conversion

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/google"
	"github.com/caddy-capi/caddy-capi/capi/platform"
)

// clicked is an event of the given name that came from a Google ad, so Google can attribute it.
func clicked(name string) event.Event {
	return event.Event{Name: name, User: event.User{GCLID: "Cj0KCQiA-gclid"}}
}

func TestRoutesPlatforms(t *testing.T) {
	all := Routes{Meta: true, TikTok: true, GoogleConversions: map[string]bool{"Purchase": true, "PageView": true}}
	withTests := all
	withTests.MetaTest = true
	withPageView := all
	withPageView.PageViewServer = true
	tests := []struct {
		name   string
		routes Routes
		event  event.Event
		want   []string
	}{
		{"a configured conversion goes everywhere", all, clicked("Purchase"), []string{platform.Meta, platform.TikTok, platform.Google}},
		{"an event without a Google conversion action skips Google", all, clicked("Lead"), []string{platform.Meta, platform.TikTok}},
		{"Google matches names exactly", all, clicked("purchase"), []string{platform.Meta, platform.TikTok}},
		{"PageView stays in the browser by default", all, event.Event{Name: "PageView"}, nil},
		{"page_view server sends it to Meta and TikTok, never Google", withPageView, event.Event{Name: "PageView"}, []string{platform.Meta, platform.TikTok}},
		{"a test event goes nowhere without a test code", all, event.Event{Name: "Purchase", Test: true}, nil},
		{"a test event goes only where a test code is, never to Google", withTests, event.Event{Name: "Purchase", Test: true}, []string{platform.Meta}},
		{"a clicked test event never goes to Google", withTests, event.Event{Name: "Purchase", Test: true, User: event.User{GCLID: "g"}}, []string{platform.Meta}},
		{"a clicked PageView never goes to Google", withPageView, clicked("PageView"), []string{platform.Meta, platform.TikTok}},
		{"test codes do not hold back real events", withTests, clicked("Purchase"), []string{platform.Meta, platform.TikTok, platform.Google}},
		{"unconfigured platforms get nothing", Routes{TikTok: true, TikTokTest: true}, event.Event{Name: "Purchase", Test: true}, []string{platform.TikTok}},
		{"nothing configured", Routes{}, event.Event{Name: "Purchase"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.routes.Platforms(tt.event); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Platforms(%s, test=%v) = %v, want %v", tt.event.Name, tt.event.Test, got, tt.want)
			}
		})
	}
}

// purchase is a Purchase as the edge builds it, with no Google signal; the cases add some.
func purchase(f func(*event.Event)) event.Event {
	e := event.Event{Name: "Purchase", ID: "evt-1", Time: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC),
		ActionSource: event.ActionWebsite, Value: "49.90", Currency: "EUR",
		User: event.User{IP: "203.0.113.9", UserAgent: "Mozilla/5.0", ExternalID: strings.Repeat("e", 64)}}
	if f != nil {
		f(&e)
	}
	return e
}

// googleConversions is the configuration both the router and Google's builder see in the tests.
var googleConversions = map[string]google.Conversion{"Purchase": {ActionID: "987654"}, "PageView": {ActionID: "1"}}

func TestRoutesSendGoogleOnlyWhatItCanAttribute(t *testing.T) {
	routes := Routes{Meta: true, TikTok: true, MetaTest: true, GoogleConversions: map[string]bool{"Purchase": true, "PageView": true}}
	email := strings.Repeat("a", 64)
	everywhere := []string{platform.Meta, platform.TikTok, platform.Google}
	notGoogle := []string{platform.Meta, platform.TikTok}
	tests := []struct {
		name  string
		event event.Event
		want  []string
	}{
		{"gclid only", purchase(func(e *event.Event) { e.User.GCLID = "Cj0K-gclid" }), everywhere},
		{"gbraid", purchase(func(e *event.Event) { e.User.GBRAID = "0AAAA-gbraid" }), everywhere},
		{"wbraid", purchase(func(e *event.Event) { e.User.WBRAID = "wbraid-1" }), everywhere},
		{"order ID and a hashed email enhance the tag's conversion",
			purchase(func(e *event.Event) { e.OrderID = "A-1"; e.User.Google.Emails = []string{email} }), everywhere},
		{"order ID without user data is an organic purchase", purchase(func(e *event.Event) { e.OrderID = "A-1" }), notGoogle},
		{"order ID and an email the user refused to share", purchase(func(e *event.Event) {
			e.OrderID = "A-1"
			e.User.Google.Emails = []string{email}
			e.Consent.AdUserDataDenied = true
		}), notGoogle},
		{"no click and no order", purchase(nil), notGoogle},
		{"a Meta click is no Google click", purchase(func(e *event.Event) { e.User.FBC = "fb.1.1700000000000.x" }), notGoogle},
		{"PageView with a gclid", purchase(func(e *event.Event) { e.Name = PageView; e.User.GCLID = "g" }), nil},
		{"Test event with a gclid", purchase(func(e *event.Event) { e.Test = true; e.User.GCLID = "g" }), []string{platform.Meta}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := routes.Platforms(tt.event)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Platforms = %v, want %v", got, tt.want)
			}
			// What the router keeps from a configured conversion is what Google's builder would
			// refuse for want of a click or an order to enhance, and what it sends builds.
			if tt.event.Name == PageView || tt.event.Test {
				return
			}
			_, _, err := google.BuildRequests("1234567890", googleConversions, time.UTC, []event.Event{tt.event})
			if sent := slices.Contains(got, platform.Google); sent != (err == nil) || !sent && !errors.Is(err, google.ErrNoClickOrOrder) {
				t.Errorf("sent to Google = %v, but Google's builder gives %v", sent, err)
			}
		})
	}
}

// FuzzRoutesKeepFromGoogleOnlyWhatItWouldRefuse asserts, for random events, that Routes.Platforms
// sends a configured, real conversion to Google exactly when Google's builder does not refuse it
// with ErrNoClickOrOrder: no organic purchase becomes a Google dead letter, and nothing Google
// could attribute is withheld.
func FuzzRoutesKeepFromGoogleOnlyWhatItWouldRefuse(f *testing.F) {
	email := strings.Repeat("a", 64)
	f.Add("Purchase", "g", "", "", "", "", "", false, false)
	f.Add("Purchase", "", "b", "w", "", "", "", false, false)
	f.Add("Purchase", "", "", "", "A-1", email, "", false, false)
	f.Add("Purchase", "", "", "", "A-1", "", "", false, false)
	f.Add("Purchase", "", "", "", "A-1", email, "", true, false)
	f.Add("Purchase", "", "", "", "A-1", ",", ",", false, false)
	f.Add("Purchase", "", "", "", "", "", "", false, false)
	f.Add("PageView", "g", "", "", "", "", "", false, false)
	f.Add("Purchase", "g", "", "", "", "", "", false, true)
	f.Add("Lead", "g", "", "", "A-1", email, "", false, false)
	f.Fuzz(func(t *testing.T, name, gclid, gbraid, wbraid, orderID, emails, phones string, denied, test bool) {
		e := purchase(func(e *event.Event) {
			e.Name, e.OrderID, e.Test, e.Consent.AdUserDataDenied = name, orderID, test, denied
			e.User.GCLID, e.User.GBRAID, e.User.WBRAID = gclid, gbraid, wbraid
			if emails != "" {
				e.User.Google.Emails = strings.Split(emails, ",")
			}
			if phones != "" {
				e.User.Google.Phones = strings.Split(phones, ",")
			}
		})
		routes := Routes{GoogleConversions: map[string]bool{"Purchase": true, "PageView": true}}
		sent := slices.Contains(routes.Platforms(e), platform.Google)
		_, _, err := google.BuildRequests("1234567890", googleConversions, time.UTC, []event.Event{e})
		configured := name == "Purchase" || name == PageView
		want := configured && name != PageView && !test && !errors.Is(err, google.ErrNoClickOrOrder)
		if sent != want {
			t.Fatalf("sent to Google = %v, want %v (builder: %v)", sent, want, err)
		}
		if sent && err != nil {
			t.Fatalf("sent to Google, but its builder fails: %v", err)
		}
	})
}

func BenchmarkRoutesPlatforms(b *testing.B) {
	routes := Routes{Meta: true, TikTok: true, GoogleConversions: map[string]bool{"Purchase": true}}
	for _, bc := range []struct {
		name  string
		event event.Event
	}{
		{"organic", purchase(func(e *event.Event) { e.OrderID = "A-1" })},
		{"clicked", purchase(func(e *event.Event) { e.User.GCLID = "g" })},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				routes.Platforms(bc.event)
			}
		})
	}
}
