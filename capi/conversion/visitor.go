package conversion

import (
	"strings"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/capture"
	"github.com/caddy-capi/caddy-capi/capi/identity"
	"github.com/caddy-capi/caddy-capi/capi/signal"
	"github.com/caddy-capi/caddy-capi/capi/store"
)

// maxCartTokens is how many cart and checkout tokens a visitor record keeps, the newest: a shop
// mints a new one per cart, and only recent ones can still turn into an order.
const maxCartTokens = 10

// ApplyIdentity folds what a request tells about its visitor into the record: the click IDs in
// force (a new value of a kind replaces the old one and restarts its first-seen time; the same
// value moves its last-seen time), the fbc, fbp, ttp and click cookies, the external_id, the IP,
// user agent and locale, and, for an HTML page, its URL as the last page URL. Use it inside
// store.Store.Update. Values that are empty or invalid leave the record's as they are.
func ApplyIdentity(v *store.Visitor, id identity.Result, req Request, now time.Time) {
	if id.VisitorID != "" && v.ID == "" {
		v.ID = id.VisitorID
	}
	v.User.ExternalID = signal.ExternalID(v.ID)
	// The browser's latest choice: a visitor who turns Global Privacy Control on or off is
	// recorded as they are now, for the orders that come back later by postback.
	v.Consent = req.Consent
	for _, c := range []struct{ kind, value string }{
		{store.ClickFBCLID, id.Known.FBCLID},
		{store.ClickGCLID, id.Known.GCLID},
		{store.ClickGBRAID, id.Known.GBRAID},
		{store.ClickWBRAID, id.Known.WBRAID},
		{store.ClickTTCLID, id.Known.TTCLID},
	} {
		if !identity.ValidClickID(c.value) {
			continue
		}
		if v.Clicks == nil {
			v.Clicks = make(map[string]store.Click)
		}
		click, ok := v.Clicks[c.kind]
		if !ok || click.Value != c.value {
			click = store.Click{Value: c.value, FirstSeen: now}
		}
		click.LastSeen = now
		v.Clicks[c.kind] = click
	}
	u := &v.User
	for _, f := range []struct {
		value string
		dst   *string
	}{
		{id.FBC, &u.FBC}, {id.FBP, &u.FBP}, {id.TTP, &u.TTP},
		{id.Known.TTCLID, &u.TTCLID}, {id.Known.GCLID, &u.GCLID},
		{id.Known.GBRAID, &u.GBRAID}, {id.Known.WBRAID, &u.WBRAID},
	} {
		if f.value != "" {
			*f.dst = f.value
		}
	}
	var opt Options // drops of request facts are not worth a metric here: the event counts them
	if ip := cleanIP(req.IP, opt); ip != "" {
		u.IP = ip
	}
	if ua := cleanUserAgent(req.UserAgent, opt); ua != "" {
		u.UserAgent = ua
	}
	if loc := ParseLocale(req.AcceptLanguage); loc != "" {
		u.Locale = loc
	}
	if req.HTML {
		if page, err := PageURL(req.URL); err == nil && page != "" {
			v.LastPageURL = page
		}
	}
}

// ApplyCapture folds a captured form or JSON post into the visitor record: the customer fields,
// normalized and hashed, laid over the record's profiles (the form's values are fresher), and the
// cart token, which joins the shop's order webhook to this visitor later. Use it inside
// store.Store.Update. Values that cannot be normalized are left out and told to opt.Dropped.
func ApplyCapture(v *store.Visitor, sub capture.Submission, opt Options) {
	if !sub.Customer.IsZero() {
		fresh := opt.normalize(signal.Customer(sub.Customer))
		merged := signal.Profiles{Meta: v.User.Meta, TikTok: v.User.TikTok, Google: v.User.Google}.Merge(fresh)
		v.User.Meta, v.User.TikTok, v.User.Google = merged.Meta, merged.TikTok, merged.Google
	}
	token := strings.TrimSpace(sub.CartToken)
	if token == "" {
		return
	}
	if !validCartToken(token) {
		opt.dropped(Drop{Field: "cart_token", Reason: "longer than 256 bytes or not printable UTF-8"})
		return
	}
	// Newest last; a token seen again moves to the end so the oldest one is evicted first.
	tokens := make([]string, 0, len(v.CartTokens)+1)
	for _, t := range v.CartTokens {
		if t != token {
			tokens = append(tokens, t)
		}
	}
	tokens = append(tokens, token)
	if len(tokens) > maxCartTokens {
		tokens = tokens[len(tokens)-maxCartTokens:]
	}
	v.CartTokens = tokens
}
