package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-capi/caddy-capi/capi/inject"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler is the `capi` HTTP handler of a site: it reads ad click IDs, sets first-party cookies,
// injects the platforms' browser tags and fires conversions. Platforms, storage and delivery are
// configured once in the `capi` app (the global option); this handler holds what differs per site.
//
// The handler sets these placeholders for the directives that run after it:
//
// Placeholder | Description
// ------------|-------------
// `{capi.visitor_id}` | the visitor ID (the `_capi_vid` cookie)
// `{capi.event_id}` | the event ID of this page or conversion
// `{capi.fbclid}` | the Meta click ID in force: this request's, else the visitor's cookie's
// `{capi.gclid}` | the Google click ID in force
// `{capi.ttclid}` | the TikTok click ID in force
type Handler struct {
	// Pixels lists the platforms whose browser tags are injected into HTML pages: meta, tiktok,
	// google. Default: every platform configured in the capi app.
	Pixels []string `json:"pixels,omitempty"`

	// CookieDomain is the Domain attribute of the cookies the handler sets. Default: the eTLD+1 of
	// the request's host, and host-only cookies for IP addresses and localhost.
	CookieDomain string `json:"cookie_domain,omitempty"`

	// PageView is "browser" to send PageView from the injected tags only, or "server" to also send
	// it server-side to Meta and TikTok with the same event ID. Default: "browser".
	PageView string `json:"page_view,omitempty"`

	// Conversions fire an event server-side when a matching request completes with a 2xx or 3xx
	// status, and in the browser on the page that answers it. Default: none.
	Conversions []Conversion `json:"conversions,omitempty"`

	// Capture lists path patterns of form and JSON posts whose customer fields (email, phone,
	// name, address) join the visitor's hashed profile. Default: none.
	Capture []string `json:"capture,omitempty"`

	// CaptureFields adds, per customer field, form field names that carry it on this site, which
	// the capture paths recognize before the common names built in. Keys are our field names:
	// email, phone, first_name, last_name, full_name, date_of_birth, gender, street, city, state,
	// zip, country, cart_token. A name matches a posted name exactly (case-insensitively, such as
	// "kunde[plz]") or its last segment ("plz"). Default: none, only the built-in names.
	CaptureFields map[string][]string `json:"capture_fields,omitempty"`

	// Collect is the path of the first-party endpoint that receives browser events
	// (window.capi.track). Default: unset, and no collect endpoint is served.
	Collect string `json:"collect,omitempty"`

	// Links are tracking redirects. Default: none.
	Links []Link `json:"links,omitempty"`

	// Postbacks are the endpoints that receive affiliate postbacks and shop webhooks. Default: none.
	Postbacks []Postback `json:"postbacks,omitempty"`

	// Consent holds this site's consent rules, replacing the app's. Default: the app's rules.
	Consent *ConsentConfig `json:"consent,omitempty"`

	app           *App
	logger        *zap.Logger
	consentCookie *regexp.Regexp

	// edge is the request pipeline built from this config (edge.go).
	edge *edge
	// writerKey names the background writer this handler holds a reference on; writerAcquired
	// says that it does, so Cleanup releases it exactly once, also after a failed Provision.
	writerKey      string
	writerAcquired bool
}

// Conversion fires an event when a request matches.
type Conversion struct {
	// Event is the event name sent to every platform, such as Purchase or Lead. It is required.
	Event string `json:"event,omitempty"`

	// Path is the path pattern of the requests that fire the event, as the path matcher takes it
	// (such as /thank-you or /order/*). It is required.
	Path string `json:"path,omitempty"`

	// Method is the request method that fires the event. Default: GET.
	Method string `json:"method,omitempty"`

	// Value is the conversion value, a decimal amount or a placeholder resolved per request such
	// as {http.request.uri.query.total}. Default: unset, and no value is sent.
	Value string `json:"value,omitempty"`

	// Currency is the ISO 4217 code of Value, or a placeholder. Default: unset; the platforms then
	// ignore Value.
	Currency string `json:"currency,omitempty"`

	// OrderID identifies the order, usually a placeholder such as
	// {http.request.uri.query.order}. With it the event ID is derived from the event name and the
	// order, so a reload of the thank-you page, the shop's webhook and the postback count once.
	// Default: unset, and each request gets a random event ID.
	OrderID string `json:"order_id,omitempty"`

	// ContentIDs is a comma-separated list of product IDs, or a placeholder. Default: unset.
	ContentIDs string `json:"content_ids,omitempty"`
}

// Link is a tracking redirect.
type Link struct {
	// Path is the exact path that redirects, such as /go/offer. It is required.
	Path string `json:"path,omitempty"`

	// Target is the absolute URL redirected to; placeholders such as {capi.visitor_id} are
	// replaced per request. It is required.
	Target string `json:"target,omitempty"`
}

// Postback is an endpoint that receives notifications from an affiliate network or a shop.
type Postback struct {
	// Source is the sender's format: clickbank, jvzoo, shopify, woocommerce, stripe or generic. It
	// is required.
	Source string `json:"source,omitempty"`

	// Path is the exact path the notifications are posted to. It is required.
	Path string `json:"path,omitempty"`

	// Secrets verify the notifications' signatures; several are tried in turn while the source
	// rotates its secret. Every source but generic requires at least one.
	Secrets []string `json:"secrets,omitempty"`

	// Event is the event name a sale becomes. Default: Purchase.
	Event string `json:"event,omitempty"`

	// Token authenticates generic notifications, compared in constant time. The generic source
	// requires it; the others do not take it.
	Token string `json:"token,omitempty"`

	// PostbackSettings are the settings only some sources take: vendor, currency, topics.
	PostbackSettings
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.capi",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision takes the capi app and checks the site's configuration against it.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	appIface, err := ctx.App("capi")
	if err != nil {
		return fmt.Errorf("capi: getting the capi app: %v", err)
	}
	h.app = appIface.(*App)

	if err := h.check(); err != nil {
		return err
	}
	for _, p := range h.Pixels {
		if !h.app.configures(p) {
			return fieldErr("capi.pixels", fmt.Errorf("%s is not configured; expected a %s block in the capi global option", p, appBlock(p)))
		}
	}
	consent := h.Consent
	if consent == nil && h.app.Consent != nil {
		consent = h.app.Consent
	}
	if consent != nil {
		if h.consentCookie, err = compileConsent(*consent); err != nil {
			return fieldErr("capi.consent.require", err)
		}
	}

	registerEdgeMetrics(ctx.GetMetricsRegistry(), h.logger)
	h.writerKey = h.app.storageKey
	writer, _, err := edgeWriters.LoadOrNew(h.writerKey, func() (caddy.Destructor, error) {
		return newBackgroundWriter(), nil
	})
	if err != nil {
		return fmt.Errorf("capi: starting the visitor writer: %v", err)
	}
	h.writerAcquired = true
	if h.edge, err = newEdge(ctx, h, writer.(*backgroundWriter)); err != nil {
		return err
	}

	return h.provisionPostbacks(ctx)
}

// Validate is a no-op beyond Provision's checks, which already refused every impossible value.
func (h *Handler) Validate() error {
	if h.app == nil {
		return errors.New("capi: not provisioned")
	}
	return nil
}

// Cleanup releases this handler's reference on the background writer of its storage.
func (h *Handler) Cleanup() error {
	if !h.writerAcquired {
		return nil
	}
	h.writerAcquired = false
	if _, err := edgeWriters.Delete(h.writerKey); err != nil {
		return fmt.Errorf("capi: releasing the visitor writer of %s: %v", h.writerKey, err)
	}
	return nil
}

// ServeHTTP runs the edge (DESIGN §3–§5, §9): consent, the visitor's identity and cookies, then
// the site's endpoints (collect, link), form capture, and the request on to the upstream with its
// conversions decided and the page's tags injected. It works before the capi app has started (the
// http app may serve first): storage access waits a few seconds for it to open.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if handled, err := h.servePostback(w, r); handled {
		return err
	}
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		repl = caddy.NewReplacer()
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	}
	e := h.edge
	if e == nil || e.postbacks[r.URL.Path] {
		// Postback routes are answered by their receivers, untouched by the edge.
		setPlaceholders(repl, r)
		return next.ServeHTTP(w, r)
	}
	linkTarget, isLink := e.links[r.URL.Path]
	isCollect := e.collect != "" && r.URL.Path == e.collect
	consent, ok := e.consentOf(r)
	if !ok {
		// An opt-in site without consent: no cookies, tags or events; links still lead on, and the
		// collect endpoint is still the handler's (the upstream has no such path).
		switch {
		case isLink:
			return e.serveLink(w, r, repl, nil, linkTarget)
		case isCollect:
			return answerCollect(w, collectError(http.StatusForbidden, "no_consent", "the visitor has not consented to tracking on this site; nothing was recorded"))
		}
		return next.ServeHTTP(w, r)
	}

	prepared := inject.PrepareRequest(r)
	navigation := prepared != r
	capturing := r.Method == http.MethodPost && e.capture != nil && e.capture.Match(r)
	rules := e.matchConversions(r)
	if !e.wantsIdentity(r, navigation, isLink || isCollect, capturing, rules) {
		setPlaceholders(repl, r)
		return next.ServeHTTP(w, r)
	}

	v := e.identify(w, r, repl, consent)
	switch {
	case isCollect:
		return answerCollect(w, e.serveCollect(w, r, v))
	case isLink:
		return e.serveLink(w, r, repl, v, linkTarget)
	}
	if capturing {
		e.captureForm(r, v)
		prepared.Body = r.Body
	}
	return e.serve(w, prepared, next, repl, v, navigation, rules)
}

// visitorCookie is the cookie that carries the visitor ID.
const visitorCookie = "_capi_vid"

// setPlaceholders exposes the visitor ID and click IDs of the request, when they are well formed;
// a malformed value is never echoed into another directive's output.
func setPlaceholders(repl *caddy.Replacer, r *http.Request) {
	if c, err := r.Cookie(visitorCookie); err == nil && validVisitorID(c.Value) {
		repl.Set("capi.visitor_id", c.Value)
	}
	// Most requests carry no click ID; skip parsing their query.
	if !strings.Contains(r.URL.RawQuery, "clid=") {
		return
	}
	q := r.URL.Query()
	for _, name := range []string{"fbclid", "gclid", "ttclid"} {
		if v := q.Get(name); validClickID(v) {
			repl.Set("capi."+name, v)
		}
	}
}

// validVisitorID reports whether v has the visitor ID's form: 24 characters from a-z0-9.
func validVisitorID(v string) bool {
	if len(v) != 24 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// validClickID reports whether v is a click ID we accept: 1 to 500 characters from the URL's
// unreserved set.
func validClickID(v string) bool {
	if v == "" || len(v) > 500 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '_', c == '~', c == '-':
		default:
			return false
		}
	}
	return true
}

// check refuses impossible values in a site's config, naming the directive path, so that a JSON
// config gets the same checks as a Caddyfile.
func (h *Handler) check() error {
	seen := map[string]bool{}
	for _, p := range h.Pixels {
		if !isPixel(p) {
			return fieldErr("capi.pixels", fmt.Errorf("unknown platform %q; expected meta, tiktok or google", p))
		}
		if seen[p] {
			return fieldErr("capi.pixels", fmt.Errorf("%s is listed twice", p))
		}
		seen[p] = true
	}
	if h.CookieDomain != "" {
		if _, err := checkCookieDomain(h.CookieDomain); err != nil {
			return fieldErr("capi.cookie_domain", err)
		}
	}
	switch h.PageView {
	case "", "browser", "server":
	default:
		return fieldErr("capi.page_view", errors.New("expected browser or server"))
	}
	for i, c := range h.Conversions {
		if err := c.check(); err != nil {
			return fieldErr(fmt.Sprintf("capi.conversions[%d]", i), err)
		}
	}
	for i, p := range h.Capture {
		if err := checkPathPattern(p); err != nil {
			return fieldErr(fmt.Sprintf("capi.capture[%d]", i), err)
		}
	}
	if err := checkCaptureFields(h.CaptureFields); err != nil {
		return fieldErr("capi.capture_fields", err)
	}
	endpoints := map[string]string{}
	claim := func(path, what string) error {
		if other, ok := endpoints[path]; ok {
			return fmt.Errorf("path %s is already used by %s", path, other)
		}
		endpoints[path] = what
		return nil
	}
	if h.Collect != "" {
		if err := checkExactPath(h.Collect); err != nil {
			return fieldErr("capi.collect", err)
		}
		_ = claim(h.Collect, "collect")
	}
	for i, l := range h.Links {
		path := fmt.Sprintf("capi.links[%d]", i)
		if err := checkExactPath(l.Path); err != nil {
			return fieldErr(path+".path", err)
		}
		if err := checkLinkTarget(l.Target); err != nil {
			return fieldErr(path+".target", err)
		}
		if err := claim(l.Path, "a link"); err != nil {
			return fieldErr(path+".path", err)
		}
	}
	for i, p := range h.Postbacks {
		path := fmt.Sprintf("capi.postbacks[%d]", i)
		if err := p.check(path); err != nil {
			return err
		}
		if err := claim(p.Path, "a postback"); err != nil {
			return fieldErr(path+".path", err)
		}
	}
	if h.Consent != nil {
		return checkConsent("capi.consent", *h.Consent)
	}
	return nil
}

func (c Conversion) check() error {
	if err := checkEventName(c.Event); err != nil {
		return fmt.Errorf("event: %v", err)
	}
	if err := checkPathPattern(c.Path); err != nil {
		return fmt.Errorf("path: %v", err)
	}
	if c.Method != "" {
		if err := checkMethod(c.Method); err != nil {
			return fmt.Errorf("method: %v", err)
		}
	}
	if c.Value != "" && !hasPlaceholder(c.Value) {
		if err := checkValue(c.Value); err != nil {
			return fmt.Errorf("value: %v", err)
		}
	}
	if c.Currency != "" && !hasPlaceholder(c.Currency) {
		if _, err := checkCurrency(c.Currency); err != nil {
			return fmt.Errorf("currency: %v", err)
		}
	}
	return nil
}

func (p Postback) check(path string) error {
	if !isPostbackSource(p.Source) {
		return fieldErr(path+".source", fmt.Errorf("unknown source %q; expected one of %s", p.Source, strings.Join(postbackSources, ", ")))
	}
	if err := checkExactPath(p.Path); err != nil {
		return fieldErr(path+".path", err)
	}
	if p.Event != "" {
		if err := checkEventName(p.Event); err != nil {
			return fieldErr(path+".event", err)
		}
	}
	if _, field, err := checkPostbackSettings(p.Source, p.PostbackSettings); err != nil {
		return fieldErr(path+"."+field, err)
	}
	if p.Source == "generic" {
		if len(p.Secrets) > 0 {
			return fieldErr(path+".secrets", errors.New("the generic source authenticates with token, not secret"))
		}
		if p.Token == "" {
			return fieldErr(path+".token", errors.New("is required for the generic source; expected `token <token>` (an {env.NAME} placeholder works)"))
		}
		if err := checkSecret(p.Token); err != nil {
			return fieldErr(path+".token", err)
		}
		return nil
	}
	if p.Token != "" {
		return fieldErr(path+".token", fmt.Errorf("is for the generic source; %s authenticates with secret", p.Source))
	}
	if len(p.Secrets) == 0 {
		return fieldErr(path+".secrets", fmt.Errorf("is required for %s; expected `secret <key>` (an {env.NAME} placeholder works)", p.Source))
	}
	for i, s := range p.Secrets {
		if err := checkPostbackSecret(p.Source, s); err != nil {
			return fieldErr(fmt.Sprintf("%s.secrets[%d]", path, i), err)
		}
	}
	return nil
}

func isPixel(p string) bool { return p == "meta" || p == "tiktok" || p == "google" }

func isPostbackSource(s string) bool {
	for _, p := range postbackSources {
		if s == p {
			return true
		}
	}
	return false
}

// configures reports whether the app configures the platform of a pixel name.
func (a *App) configures(pixel string) bool {
	switch pixel {
	case "meta":
		return a.Meta != nil
	case "tiktok":
		return a.TikTok != nil
	case "google":
		return a.GoogleAds != nil && a.GoogleAds.TagID != ""
	}
	return false
}

func appBlock(pixel string) string {
	if pixel == "google" {
		return "google_ads block with tag_id"
	}
	return pixel
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
