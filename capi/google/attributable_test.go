package google

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/event"
)

// bare is a Purchase with a time and a value but no signal at all, the base the cases add to.
func bare() event.Event {
	return event.Event{Name: "Purchase", ID: "evt-1", Time: now.Add(-time.Minute), Value: "49.90", Currency: "EUR"}
}

func TestAttributableOnlyWithAClickOrAnOrderToEnhance(t *testing.T) {
	with := func(f func(*event.Event)) event.Event {
		ev := bare()
		f(&ev)
		return ev
	}
	tests := []struct {
		name string
		ev   event.Event
		want bool
	}{
		{"gclid only", with(func(e *event.Event) { e.User.GCLID = "Cj0K-gclid" }), true},
		{"gbraid only", with(func(e *event.Event) { e.User.GBRAID = "0AAAA-gbraid" }), true},
		{"wbraid only", with(func(e *event.Event) { e.User.WBRAID = "wbraid-1" }), true},
		{"a click with ad user data refused is still a click conversion",
			with(func(e *event.Event) { e.User.GCLID = "g"; e.Consent.AdUserDataDenied = true }), true},
		{"order ID and a hashed email", with(func(e *event.Event) { e.OrderID = "A-1"; e.User.Google.Emails = []string{hash('a')} }), true},
		{"order ID and a hashed phone", with(func(e *event.Event) { e.OrderID = "A-1"; e.User.Google.Phones = []string{hash('c')} }), true},
		{"order ID and a complete address", with(func(e *event.Event) {
			e.OrderID = "A-1"
			e.User.Google = event.Profile{FirstName: hash('1'), LastName: hash('2'), Zip: "10115", Country: "de"}
		}), true},
		{"order ID and an address without postal code", with(func(e *event.Event) {
			e.OrderID = "A-1"
			e.User.Google = event.Profile{FirstName: hash('1'), LastName: hash('2'), City: "berlin", Country: "de"}
		}), false},
		{"order ID and only empty emails and phones", with(func(e *event.Event) {
			e.OrderID = "A-1"
			e.User.Google = event.Profile{Emails: []string{""}, Phones: []string{"", ""}}
		}), false},
		{"order ID without user data", with(func(e *event.Event) { e.OrderID = "A-1" }), false},
		{"order ID and email but ad user data refused", with(func(e *event.Event) {
			e.OrderID = "A-1"
			e.User.Google.Emails = []string{hash('a')}
			e.Consent.AdUserDataDenied = true
		}), false},
		{"user data without an order ID", with(func(e *event.Event) { e.User.Google.Emails = []string{hash('a')} }), false},
		{"other platforms' click IDs do not count", with(func(e *event.Event) {
			e.User.FBC = "fb.1.1700000000000.abc"
			e.User.TTCLID = "ttclid"
			e.User.Meta.Emails = []string{hash('a')}
			e.OrderID = "A-1"
		}), false},
		{"no click and no order", bare(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Attributable(tt.ev); got != tt.want {
				t.Fatalf("Attributable = %v, want %v", got, tt.want)
			}
			_, _, err := buildConversion("1234567890", conversions, time.UTC, tt.ev)
			if tt.want && err != nil {
				t.Errorf("attributable, but building fails: %v", err)
			}
			if !tt.want && !errors.Is(err, ErrNoClickOrOrder) {
				t.Errorf("not attributable, but building gives %v, want ErrNoClickOrOrder", err)
			}
		})
	}
}

// An event without a time that Google could not attribute anyway is refused for that, first: the
// router keeps such events from Google, so only the error of an attributable event may differ.
func TestUnattributableIsReportedBeforeAMissingTime(t *testing.T) {
	ev := bare()
	ev.Time = time.Time{}
	if _, _, err := buildConversion("1", conversions, time.UTC, ev); !errors.Is(err, ErrNoClickOrOrder) {
		t.Errorf("err = %v, want ErrNoClickOrOrder", err)
	}
	ev.User.GCLID = "g"
	if _, _, err := buildConversion("1", conversions, time.UTC, ev); !errors.Is(err, ErrNoTime) {
		t.Errorf("err = %v, want ErrNoTime", err)
	}
}

// FuzzAttributableAgreesWithTheBuilder holds Attributable, which the router asks, to what
// buildConversion does with the same event: it fails with ErrNoClickOrOrder exactly when
// Attributable is false, and otherwise builds a click conversion exactly when there is a click ID
// and an enhancement (with 1 to 5 identifiers) exactly when Attributable's enhancement half holds.
func FuzzAttributableAgreesWithTheBuilder(f *testing.F) {
	f.Add("Purchase", "g", "", "", "", "", "", "", "", "", "", "49.90", false, true)
	f.Add("Purchase", "", "b", "", "", "", "", "", "", "", "", "", false, true)
	f.Add("Purchase", "", "", "w", "", "", "", "", "", "", "", "", false, true)
	f.Add("Purchase", "", "", "", "A-1", hash('a'), "", "", "", "", "", "", false, true)
	f.Add("Purchase", "", "", "", "A-1", ",", ",,", "", "", "", "", "", false, true)
	f.Add("Purchase", "", "", "", "A-1", "", "", hash('1'), hash('2'), "10115", "de", "", false, true)
	f.Add("Purchase", "", "", "", "A-1", hash('a'), hash('c'), "", "", "", "", "", true, true)
	f.Add("Purchase", "", "", "", "A-1", "", "", "", "", "", "", "", false, true)
	f.Add("Purchase", "", "", "", "", "", "", "", "", "", "", "", false, false)
	f.Add("Purchase", "g", "", "", "", "", "", "", "", "", "", "4,99", false, true)
	f.Add("Unmapped", "g", "", "", "A-1", hash('a'), "", "", "", "", "", "", false, true)
	f.Fuzz(func(t *testing.T, name, gclid, gbraid, wbraid, orderID, emails, phones, first, last, zip, country, value string, denied, timed bool) {
		ev := event.Event{Name: name, OrderID: orderID, Value: value, Consent: event.Consent{AdUserDataDenied: denied}}
		if timed {
			ev.Time = now
		}
		ev.User.GCLID, ev.User.GBRAID, ev.User.WBRAID = gclid, gbraid, wbraid
		// Split on commas so that lists hold empty entries too, which Google is never sent.
		if emails != "" {
			ev.User.Google.Emails = strings.Split(emails, ",")
		}
		if phones != "" {
			ev.User.Google.Phones = strings.Split(phones, ",")
		}
		ev.User.Google.FirstName, ev.User.Google.LastName, ev.User.Google.Zip, ev.User.Google.Country = first, last, zip, country

		attributable := Attributable(ev)
		c, a, err := buildConversion("1234567890", conversions, time.UTC, ev)
		if _, configured := conversions[name]; !configured {
			if !errors.Is(err, ErrNoConversion) {
				t.Fatalf("unconfigured %q: err = %v, want ErrNoConversion", name, err)
			}
			return
		}
		if attributable == errors.Is(err, ErrNoClickOrOrder) {
			t.Fatalf("Attributable = %v but buildConversion err = %v", attributable, err)
		}
		_, adjOK := BuildAdjustment(ev, "a", time.UTC)
		if adjOK != enhanceable(ev) {
			t.Fatalf("BuildAdjustment ok = %v, enhanceable = %v", adjOK, enhanceable(ev))
		}
		if err != nil {
			if c != nil || a != nil {
				t.Fatalf("err %v with a conversion built", err)
			}
			return
		}
		if c == nil && a == nil {
			t.Fatal("neither a click conversion nor an enhancement, and no error")
		}
		if (c != nil) != hasClickID(ev.User) {
			t.Fatalf("click conversion built = %v, click ID present = %v", c != nil, hasClickID(ev.User))
		}
		if a != nil && (len(a.UserIdentifiers) == 0 || len(a.UserIdentifiers) > maxIdentifiers) {
			t.Fatalf("enhancement with %d identifiers", len(a.UserIdentifiers))
		}
		if a == nil && enhanceable(ev) {
			t.Fatal("enhanceable, but no enhancement built")
		}
	})
}

func BenchmarkAttributable(b *testing.B) {
	organic := bare()
	organic.OrderID = "A-1"
	enhanced := organic
	enhanced.User.Google = event.Profile{Emails: []string{""}, Phones: []string{hash('c')}}
	clicked := bare()
	clicked.User.GCLID = "Cj0K-gclid"
	for _, bc := range []struct {
		name string
		ev   event.Event
	}{{"organic", organic}, {"enhanced", enhanced}, {"clicked", clicked}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if Attributable(bc.ev) != (bc.name != "organic") {
					b.Fatal("wrong answer")
				}
			}
		})
	}
}
