package conversion

import (
	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/platform"
)

// Routes says which platforms are configured and how, as far as the choice of destinations for an
// event goes.
//
// Google Ads has no test event code (spec/tiktok-google.md), so there is no GoogleTest: a test event
// never goes to Google, where it would count as a real conversion.
type Routes struct {
	// Meta and TikTok report that the platform is configured.
	Meta, TikTok bool
	// GoogleConversions holds the event names that have a Google Ads conversion action; Google
	// receives only those.
	GoogleConversions map[string]bool
	// MetaTest and TikTokTest report that a test event code is configured for the platform.
	MetaTest, TikTokTest bool
	// PageViewServer is the site's `page_view server`: PageView is also sent server-side.
	PageViewServer bool
}

// Platforms returns the platforms (platform.Meta, platform.TikTok, platform.Google, in that order)
// that e goes to. Meta and TikTok receive every event, PageView only with PageViewServer; Google
// receives only its configured conversions, never PageView. An event marked Test goes only where a
// test event code is configured, so a test never reaches production counts. nil means nowhere.
func (r Routes) Platforms(e event.Event) []string {
	var out []string
	pageView := e.Name == PageView
	if r.Meta && (!pageView || r.PageViewServer) && (!e.Test || r.MetaTest) {
		out = append(out, platform.Meta)
	}
	if r.TikTok && (!pageView || r.PageViewServer) && (!e.Test || r.TikTokTest) {
		out = append(out, platform.TikTok)
	}
	if r.GoogleConversions[e.Name] && !pageView && !e.Test {
		out = append(out, platform.Google)
	}
	return out
}
