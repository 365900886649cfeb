package conversion

import (
	"reflect"
	"testing"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/platform"
)

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
		{"a configured conversion goes everywhere", all, event.Event{Name: "Purchase"}, []string{platform.Meta, platform.TikTok, platform.Google}},
		{"an event without a Google conversion action skips Google", all, event.Event{Name: "Lead"}, []string{platform.Meta, platform.TikTok}},
		{"Google matches names exactly", all, event.Event{Name: "purchase"}, []string{platform.Meta, platform.TikTok}},
		{"PageView stays in the browser by default", all, event.Event{Name: "PageView"}, nil},
		{"page_view server sends it to Meta and TikTok, never Google", withPageView, event.Event{Name: "PageView"}, []string{platform.Meta, platform.TikTok}},
		{"a test event goes nowhere without a test code", all, event.Event{Name: "Purchase", Test: true}, nil},
		{"a test event goes only where a test code is, never to Google", withTests, event.Event{Name: "Purchase", Test: true}, []string{platform.Meta}},
		{"test codes do not hold back real events", withTests, event.Event{Name: "Purchase"}, []string{platform.Meta, platform.TikTok, platform.Google}},
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
