package signal

import (
	"slices"
	"testing"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/platform"
)

func TestPresenceOfNamesTheSignalsCoverageOfReports(t *testing.T) {
	users := map[string]event.User{
		"empty":         {},
		"network only":  {IP: "192.0.2.1", UserAgent: "UA", Locale: "en-US"},
		"click IDs":     {ExternalID: "x", FBC: "fb.1.1.a", FBP: "fb.1.1.b", TTCLID: "t", TTP: "p", GCLID: "g"},
		"address parts": {TikTok: event.Profile{Country: "us"}, Google: event.Profile{Street: "s", Zip: "z"}, Meta: event.Profile{Gender: "f", DateOfBirth: "d"}},
		"contact": {
			Meta:   event.Profile{Emails: []string{"e"}, Phones: []string{"p"}, FirstName: "f", LastName: "l"},
			TikTok: event.Profile{Emails: []string{"e"}, Zip: "z", City: "c"},
			Google: event.Profile{Phones: []string{"p"}, State: "s", Country: "US"},
		},
	}
	for name, u := range users {
		for _, p := range []string{platform.Meta, platform.TikTok, platform.Google} {
			names, present := PresenceOf(p, u)
			var got []string
			for i, n := range names {
				if present.Has(i) {
					got = append(got, n)
				}
			}
			cov := CoverageOf(p, u)
			if !slices.Equal(got, cov.Present) || present.Count() != len(cov.Present) {
				t.Errorf("%s, %s: PresenceOf gives %v (count %d), CoverageOf %v", name, p, got, present.Count(), cov.Present)
			}
			if present.Has(len(names)) || present.Has(-1) || present.Has(40) {
				t.Errorf("%s, %s: a bit past the %d signals is set: %b", name, p, len(names), present)
			}
		}
	}
}

func TestPresenceOfAnUnknownPlatformIsEmpty(t *testing.T) {
	names, present := PresenceOf("bing", event.User{IP: "192.0.2.1"})
	if names != nil || present != 0 {
		t.Errorf("PresenceOf(bing) = %v, %b", names, present)
	}
}

func TestPresenceOfDoesNotAllocate(t *testing.T) {
	u := event.User{IP: "192.0.2.1", UserAgent: "UA", FBP: "fb.1.1.b", Meta: event.Profile{Emails: []string{"e"}}}
	if n := testing.AllocsPerRun(100, func() { PresenceOf(platform.Meta, u) }); n != 0 {
		t.Errorf("PresenceOf allocates %v times per call", n)
	}
}

// BenchmarkCoverage compares CoverageOf, which builds name lists, with PresenceOf, which the
// delivery metrics call for every accepted event.
func BenchmarkCoverage(b *testing.B) {
	u := event.User{ExternalID: "x", IP: "192.0.2.1", UserAgent: "UA", FBC: "fb.1.1.a", FBP: "fb.1.1.b",
		Meta: event.Profile{Emails: []string{"e"}, Phones: []string{"p"}, FirstName: "f", City: "c"}}
	b.Run("CoverageOf", func(b *testing.B) {
		loop(b, func() { CoverageOf(platform.Meta, u) })
	})
	b.Run("PresenceOf", func(b *testing.B) {
		loop(b, func() { PresenceOf(platform.Meta, u) })
	})
}
