package conversion

import (
	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/google"
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
	// receives only those, and of them only the ones it can attribute.
	GoogleConversions map[string]bool
	// MetaTest and TikTokTest report that a test event code is configured for the platform.
	MetaTest, TikTokTest bool
	// PageViewServer is the site's `page_view server`: PageView is also sent server-side.
	PageViewServer bool
}

// Platforms returns the platforms (platform.Meta, platform.TikTok, platform.Google, in that order)
// that e goes to. Meta and TikTok receive every event, PageView only with PageViewServer. Google
// receives only its configured conversions, never PageView, and only when google.Attributable
// says it can attribute e: a gclid, gbraid or wbraid, or an order ID with user data to enhance the
// tag's conversion. A conversion that came from no Google ad (an organic purchase) is thus not sent
// to Google rather than failing there as a dead letter it never saw. An event marked Test goes only
// where a test event code is configured, so a test never reaches production counts. nil means
// nowhere.
func (r Routes) Platforms(e event.Event) []string {
	var out []string
	pageView := e.Name == PageView
	if r.Meta && (!pageView || r.PageViewServer) && (!e.Test || r.MetaTest) {
		out = append(out, platform.Meta)
	}
	if r.TikTok && (!pageView || r.PageViewServer) && (!e.Test || r.TikTokTest) {
		out = append(out, platform.TikTok)
	}
	if r.GoogleConversions[e.Name] && !pageView && !e.Test && google.Attributable(e) {
		out = append(out, platform.Google)
	}
	return out
}
