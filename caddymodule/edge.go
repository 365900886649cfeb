package caddymodule

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-capi/caddy-capi/capi/capture"
	"github.com/caddy-capi/caddy-capi/capi/conversion"
	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/identity"
	"github.com/caddy-capi/caddy-capi/capi/inject"
	"github.com/caddy-capi/caddy-capi/capi/pixel"
	"github.com/caddy-capi/caddy-capi/capi/signal"
	"github.com/caddy-capi/caddy-capi/capi/store"
)

const (
	// defaultCaptureLimit is the largest form or JSON post read for customer fields. Checkout and
	// sign-up forms are a few KB; a larger body (an upload) passes through uncaptured.
	defaultCaptureLimit = 64 << 10
	// visitorRefresh is how old a visitor record may get before a visit rewrites it unchanged, so
	// that visitor_ttl runs from the last visit (within a day) rather than the last change.
	visitorRefresh = 24 * time.Hour
	// pageURLRefresh is how often a visitor's last page URL alone causes a write: postbacks use it
	// as the source URL, where a minute's precision is plenty, and browsing must not cost a write
	// per page.
	pageURLRefresh = time.Minute
	// enqueueTimeout bounds the queue write of a conversion, storage wait included. The queue
	// write outlives the request's context: a visitor closing the tab must not lose the order.
	enqueueTimeout = 10 * time.Second
)

// edge is the request pipeline of one site's handler (DESIGN §3–§5, §9), built once in Provision
// from the site's and the app's configuration. Its state is read-only after that, apart from the
// collect rate limiter.
type edge struct {
	storage *sharedStorage
	writer  *backgroundWriter
	logger  *zap.Logger
	// enqueue appends an event for platforms to the durable queue (storage.enqueueEdge); tests
	// observe it here.
	enqueue func(ctx context.Context, platforms []string, e event.Event) (int, error)

	cookieDomain string
	// platforms are the configured platforms, whose cookies identity resolves.
	platforms []string
	// pixels are the browser tags to inject; injects reports that there is anything to inject.
	pixels pixel.Config
	// snippets is pixels compiled once: each page splices only its own values into it.
	snippets *pixel.Template
	injects  bool
	routes   conversion.Routes

	conversions  []conversionRule
	capture      caddyhttp.MatchPath
	captureLimit int64
	collect      string
	limiter      *visitorLimiter
	// addressLimiter bounds collect posts per client IP, whatever cookie they carry.
	addressLimiter *visitorLimiter
	links          map[string]string
	postbacks      map[string]bool
	// collectNames are the names collect accepts; carriedNames those a _capi_evt cookie may carry.
	collectNames map[string]bool
	carriedNames map[string]bool
	// captureFields are the site's extra names for customer fields (capture_field).
	captureFields capture.Fields

	consentCookie  string
	consentPattern *regexp.Regexp
	gpc            bool

	defaultCountry string
	// seenTTL is how long a counted order is remembered against a second count.
	seenTTL time.Duration

	now  func() time.Time
	rand io.Reader
}

// conversionRule is a site's conversion with its matcher.
type conversionRule struct {
	Conversion
	method string
	path   caddyhttp.MatchPath
}

// newEdge builds the pipeline of h, whose app is provisioned.
func newEdge(ctx caddy.Context, h *Handler, writer *backgroundWriter) (*edge, error) {
	cfg := h.app.resolved
	e := &edge{
		storage:        h.app.storage,
		writer:         writer,
		logger:         h.logger,
		cookieDomain:   h.CookieDomain,
		platforms:      []string{},
		captureLimit:   defaultCaptureLimit,
		captureFields:  capture.Fields(h.CaptureFields),
		collect:        h.Collect,
		links:          map[string]string{},
		postbacks:      map[string]bool{},
		collectNames:   map[string]bool{},
		carriedNames:   map[string]bool{},
		defaultCountry: cfg.defaultCountry,
		seenTTL:        cfg.visitorTTL,
		now:            time.Now,
	}
	e.enqueue = e.storage.enqueueEdge
	e.limiter = newVisitorLimiter(collectPerMinute, maxLimiterKeys, func() time.Time { return e.now() })
	e.addressLimiter = newVisitorLimiter(collectPerAddressMinute, maxLimiterKeys, func() time.Time { return e.now() })
	if p := cfg.platforms(); p != nil {
		e.platforms = p
	}

	pixels := h.Pixels
	if len(pixels) == 0 {
		for _, p := range []string{"meta", "tiktok", "google"} {
			if h.app.configures(p) {
				pixels = append(pixels, p)
			}
		}
	}
	for _, p := range pixels {
		switch {
		case p == "meta" && cfg.meta != nil:
			e.pixels.MetaPixelID = cfg.meta.PixelID
		case p == "tiktok" && cfg.tiktok != nil:
			e.pixels.TikTokPixelCode = cfg.tiktok.PixelCode
			e.pixels.TikTokEventNames = cfg.tiktok.Events
		case p == "google" && cfg.google != nil:
			e.pixels.GoogleTagID = cfg.google.TagID
			for _, c := range cfg.google.Conversions {
				if c.Label != "" {
					if e.pixels.GoogleConversions == nil {
						e.pixels.GoogleConversions = map[string]string{}
					}
					e.pixels.GoogleConversions[c.Event] = c.Label
				}
			}
		}
	}
	e.pixels.CollectPath = h.Collect
	e.snippets = pixel.Compile(e.pixels)
	e.injects = e.snippets != nil // Compile is nil exactly when nothing is configured

	e.routes = conversion.Routes{
		Meta:           cfg.meta != nil,
		TikTok:         cfg.tiktok != nil,
		MetaTest:       cfg.meta != nil && cfg.meta.TestEventCode != "",
		TikTokTest:     cfg.tiktok != nil && cfg.tiktok.TestEventCode != "",
		PageViewServer: h.PageView == "server",
	}
	// Google receives uploads only for events mapped to a conversion action of an account that
	// takes uploads; a tag_id alone is a browser tag.
	if g := cfg.google; g != nil && g.CustomerID != "" {
		e.routes.GoogleConversions = map[string]bool{}
		for _, c := range g.Conversions {
			e.routes.GoogleConversions[c.Event] = true
		}
	}

	for _, name := range metaStandardEvents {
		e.collectNames[name] = true
	}
	for i, c := range h.Conversions {
		rule := conversionRule{Conversion: c, method: c.Method, path: caddyhttp.MatchPath{c.Path}}
		if rule.method == "" {
			rule.method = http.MethodGet
		}
		if err := rule.path.Provision(ctx); err != nil {
			return nil, fieldErr(fmt.Sprintf("capi.conversions[%d].path", i), err)
		}
		e.conversions = append(e.conversions, rule)
		e.collectNames[c.Event] = true
		e.carriedNames[c.Event] = true
	}
	if len(h.Capture) > 0 {
		e.capture = caddyhttp.MatchPath(slices.Clone(h.Capture))
		if err := e.capture.Provision(ctx); err != nil {
			return nil, fieldErr("capi.capture", err)
		}
	}
	for _, l := range h.Links {
		e.links[l.Path] = l.Target
	}
	for _, p := range h.Postbacks {
		e.postbacks[p.Path] = true
	}

	consent := cfg.consent
	if h.Consent != nil {
		consent = *h.Consent
	}
	e.gpc = consent.GPC == nil || *consent.GPC
	if consent.Require != nil {
		e.consentCookie, e.consentPattern = consent.Require.Cookie, h.consentCookie
	}
	return e, nil
}

// visit is what the edge knows of one request's visitor.
type visit struct {
	id      identity.Result
	consent event.Consent
	// req is the request as events and the visitor record see it.
	req conversion.Request
	// cart is the shop's cart token from its cookie, "" when none.
	cart string
	// cookieDomain and secure are the identity cookies' attributes, reused for _capi_evt.
	cookieDomain string
	secure       bool
}

// consentOf applies the consent rules (DESIGN §9): false when the site is opt-in and the consent
// cookie does not match; otherwise the restrictions Global Privacy Control asks for.
func (e *edge) consentOf(r *http.Request) (event.Consent, bool) {
	if e.consentPattern != nil {
		c, err := r.Cookie(e.consentCookie)
		if err != nil || !e.consentPattern.MatchString(c.Value) {
			return event.Consent{}, false
		}
	}
	if e.gpc && r.Header.Get("Sec-GPC") == "1" {
		return event.Consent{LimitedDataUse: true, AdUserDataDenied: true}, true
	}
	return event.Consent{}, true
}

// wantsIdentity reports whether a request is worth resolving the visitor for. Assets and API
// calls are not: identity's cookies are re-sent on every response that resolves, which would put
// Set-Cookie on every image and make it uncacheable.
func (e *edge) wantsIdentity(r *http.Request, navigation, endpoint, capturing bool, rules []*conversionRule) bool {
	return navigation || endpoint || capturing || len(rules) > 0 || hasClickID(r.URL.RawQuery)
}

// hasClickID is a cheap test for a query that may carry a click ID; identity parses it properly.
func hasClickID(rawQuery string) bool {
	return strings.Contains(rawQuery, "clid=") || strings.Contains(rawQuery, "braid=")
}

// identify resolves the visitor's identity, adds the identity cookies to the response and sets the
// capi placeholders. Rejected click IDs and refused cookies are counted, never logged.
func (e *edge) identify(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, consent event.Consent) *visit {
	secure := isHTTPS(r)
	id := identity.Resolve(r, identity.Options{
		CookieDomain: e.cookieDomain,
		Secure:       secure,
		Platforms:    e.platforms,
		Now:          e.now,
		Rand:         e.rand,
	})
	h := w.Header()
	for _, c := range id.Cookies {
		if line := c.String(); line != "" {
			h.Add("Set-Cookie", line)
		}
	}
	if id.Rejected > 0 {
		edgeStats().clickIDsRejected.Add(float64(id.Rejected))
	}
	if id.RefusedCookies > 0 {
		edgeStats().cookiesRefused.Add(float64(id.RefusedCookies))
	}

	if id.VisitorID != "" {
		repl.Set("capi.visitor_id", id.VisitorID)
	}
	if id.Known.FBCLID != "" {
		repl.Set("capi.fbclid", id.Known.FBCLID)
	}
	if id.Known.GCLID != "" {
		repl.Set("capi.gclid", id.Known.GCLID)
	}
	if id.Known.TTCLID != "" {
		repl.Set("capi.ttclid", id.Known.TTCLID)
	}

	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	domain := id.Domain
	v := &visit{
		id:      id,
		consent: consent,
		req: conversion.Request{
			URL:            requestURL(r, secure),
			Referrer:       r.Referer(),
			IP:             ip,
			UserAgent:      r.UserAgent(),
			AcceptLanguage: r.Header.Get("Accept-Language"),
			VisitorID:      id.VisitorID,
			Consent:        consent,
		},
		cookieDomain: domain,
		secure:       secure,
	}
	if c, err := r.Cookie("cart"); err == nil {
		v.cart = shopifyCartToken(c.Value)
	}
	return v
}

// requestURL is the page's full URL as the browser addressed it, over HTTPS when https is set
// (isHTTPS).
func requestURL(r *http.Request, https bool) string {
	scheme := "http"
	if https {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.URL.RequestURI()
}

// isHTTPS reports whether the browser reached the site over HTTPS: Caddy terminated TLS itself, or
// a proxy in the server's trusted_proxies did and says so in X-Forwarded-Proto (its last value, as
// Caddy's reverse_proxy reads it). The header from any other client is ignored, so a client cannot
// make the cookies lose their Secure attribute, nor gain it on plain HTTP where browsers drop them.
func isHTTPS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); !trusted {
		return false
	}
	values := r.Header.Values("X-Forwarded-Proto")
	if len(values) == 0 {
		return false
	}
	last := values[len(values)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	return strings.EqualFold(strings.TrimSpace(last), "https")
}

// shopifyCartToken returns the cart token in the value of Shopify's `cart` cookie. Newer stores
// append "?key=…" (escaped) to the token, which order webhooks do not carry (unconfirmed: Shopify
// does not document the cookie), so only the part before it is kept. The conversion package
// validates what remains before it reaches the record.
func shopifyCartToken(value string) string {
	// PathUnescape, not QueryUnescape: a raw '+' (base64 tokens have them) stays a '+'.
	if v, err := url.PathUnescape(value); err == nil {
		value = v
	}
	token, _, _ := strings.Cut(value, "?")
	return strings.TrimSpace(token)
}

// options are the conversion package's options for this site; drops are counted by field.
func (e *edge) options() conversion.Options {
	return conversion.Options{DefaultCountry: e.defaultCountry, Now: e.now, Rand: e.rand, Dropped: countDrop}
}

// eventOptions are options() with the installation's event ID key, which FromRequest needs. It
// waits, as the queue writes do, for the storage to open: the key lives there.
func (e *edge) eventOptions(ctx context.Context) (conversion.Options, error) {
	opt := e.options()
	key, err := e.storage.eventIDKey(ctx)
	if err != nil {
		return opt, err
	}
	opt.IDKey = key
	return opt, nil
}

func countDrop(d conversion.Drop) { edgeStats().valuesDropped.WithLabelValues(d.Field).Inc() }

// applyVisit folds a request's identity and cart token into a visitor record.
func (e *edge) applyVisit(rec *store.Visitor, v *visit, req conversion.Request, now time.Time) {
	conversion.ApplyIdentity(rec, v.id, req, now)
	if v.cart != "" {
		conversion.ApplyCapture(rec, capture.Submission{CartToken: v.cart}, e.options())
	}
}

// visitorRecord returns the visitor's record with this request's identity applied, for the events
// of this request. It does not write: remember does, in the background. A store that cannot be
// read yields a record made of this request alone; the event still goes out.
func (e *edge) visitorRecord(ctx context.Context, v *visit) *store.Visitor {
	rec := store.Visitor{ID: v.id.VisitorID}
	visitors, err := e.storage.edgeVisitors(ctx)
	if err == nil {
		var found bool
		var got store.Visitor
		if got, found, err = visitors.Get(ctx, v.id.VisitorID); err == nil && found {
			rec = got
		}
	}
	if err != nil {
		e.logger.Warn("capi: reading the visitor record failed; the event carries this request's signals only", zap.Error(err))
	}
	e.applyVisit(&rec, v, v.req, e.now())
	return &rec
}

// remember writes the visit into the visitor record in the background, when it changed something
// (see edge_background.go for why, and what counts as a change).
//
// A returning visitor's pages mostly change nothing, so the writer remembers what it last found
// recorded for each visitor (see recentVisits): a visit with the same signals within pageURLRefresh
// of that is not handed to it at all, which spares the page the hand-off to the writer's goroutine
// and the writer a read of the record.
func (e *edge) remember(v *visit, html bool) {
	req, now := v.req, e.now()
	req.HTML = html
	vid, fp := v.id.VisitorID, visitFingerprint(v)
	if e.writer.recent.unchanged(vid, fp, now) {
		return
	}
	e.writer.submitVisitor(func(ctx context.Context) (visitorWrite, error) {
		visitors, err := e.storage.edgeVisitors(ctx)
		if err != nil {
			return visitorWrite{}, err
		}
		// A visitor ID minted on this request has no record yet: nothing to read.
		var old store.Visitor
		found := false
		if !v.id.NewVisitor {
			if old, found, err = visitors.Get(ctx, vid); err != nil {
				return visitorWrite{}, err
			}
		}
		if found && !e.visitChanges(old, v, req, now) {
			// Recorded as of old.Updated: the next write due is the page URL's, pageURLRefresh later.
			e.writer.recent.note(vid, fp, old.Updated)
			return visitorWrite{}, nil
		}
		return visitorWrite{
			visitors: visitors,
			change: store.Change{ID: vid, Fn: func(rec *store.Visitor) error {
				e.applyVisit(rec, v, req, now)
				return nil
			}},
			written: func() { e.writer.recent.note(vid, fp, now) },
		}, nil
	})
}

// firstVisitWithoutSignals reports a page request that carried no visitor cookie, no click ID, no
// cart and fired no conversion. Its record would hold only what the cookies just set and the next
// request carry again (browser IDs, IP, user agent), so it is written on that next request, which
// also shows a client that keeps cookies. A client that never does (a crawler, a monitoring probe,
// a flood of cookie-less requests) would otherwise add a record to the store on every request.
// Tracking links and collected events still record a first visit: a postback may look the visitor
// up by the ID a link just handed out.
func firstVisitWithoutSignals(v *visit, converted bool) bool {
	return v.id.NewVisitor && v.id.Clicks.IsZero() && v.cart == "" && !converted
}

// visitChanges reports whether applying the visit to old changes what the record is for: click
// IDs, browser IDs, IP, user agent, locale, cart tokens; the page URL at most every pageURLRefresh;
// and anything once the record is visitorRefresh old, to keep its lifetime sliding.
func (e *edge) visitChanges(old store.Visitor, v *visit, req conversion.Request, now time.Time) bool {
	age := now.Sub(old.Updated)
	if age >= visitorRefresh {
		return true
	}
	next := old
	next.Clicks = maps.Clone(old.Clicks)
	next.CartTokens = slices.Clone(old.CartTokens)
	e.applyVisit(&next, v, req, now)
	for kind, c := range next.Clicks {
		if old.Clicks[kind].Value != c.Value {
			return true
		}
	}
	a, b := old.User, next.User
	if a.ExternalID != b.ExternalID || a.IP != b.IP || a.UserAgent != b.UserAgent || a.Locale != b.Locale ||
		a.FBC != b.FBC || a.FBP != b.FBP || a.TTP != b.TTP || a.TTCLID != b.TTCLID ||
		a.GCLID != b.GCLID || a.GBRAID != b.GBRAID || a.WBRAID != b.WBRAID {
		return true
	}
	if !slices.Equal(old.CartTokens, next.CartTokens) || old.Consent != next.Consent {
		return true
	}
	return next.LastPageURL != old.LastPageURL && age >= pageURLRefresh
}

// captureForm reads a POST on a capture path (up to captureLimit), folds the customer fields it
// recognizes, normalized and hashed, into the visitor record, and puts the body back for the
// upstream byte for byte. The record is written before the request goes on, so the page the form
// leads to sends its conversion with these fields.
func (e *edge) captureForm(r *http.Request, v *visit) {
	stats := edgeStats().captures
	if r.Body == nil || r.Body == http.NoBody {
		stats.WithLabelValues("empty").Inc()
		return
	}
	if r.ContentLength > e.captureLimit {
		stats.WithLabelValues("oversized").Inc()
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, e.captureLimit+1))
	r.Body = replayBody(body, r.Body, err)
	if err != nil {
		stats.WithLabelValues("failed").Inc()
		return
	}
	if int64(len(body)) > e.captureLimit {
		stats.WithLabelValues("oversized").Inc()
		return
	}
	// A malformed body still yields the fields recognized before the problem.
	sub, err := capture.Extract(r.Header.Get("Content-Type"), body, e.captureFields)
	if errors.Is(err, capture.ErrUnsupported) {
		stats.WithLabelValues("unsupported").Inc()
		return
	}
	if sub.Customer.IsZero() && sub.CartToken == "" {
		stats.WithLabelValues("empty").Inc()
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), enqueueTimeout)
	defer cancel()
	visitors, err := e.storage.edgeVisitors(ctx)
	if err == nil {
		now := e.now()
		_, err = visitors.Update(ctx, v.id.VisitorID, func(rec *store.Visitor) error {
			e.applyVisit(rec, v, v.req, now)
			conversion.ApplyCapture(rec, sub, e.options())
			return nil
		})
	}
	if err != nil {
		stats.WithLabelValues("failed").Inc()
		e.logger.Error("capi: saving captured customer fields failed", zap.Error(err))
		return
	}
	stats.WithLabelValues("captured").Inc()
}

// replayBody returns a body that yields prefix and then the rest of the original body, or, when
// reading the prefix failed, prefix and then that error: the upstream sees exactly what the client
// sent, as far as it got.
func replayBody(prefix []byte, rest io.ReadCloser, err error) io.ReadCloser {
	var tail io.Reader = rest
	if err != nil {
		tail = failingReader{err}
	}
	return replayedBody{Reader: io.MultiReader(bytes.NewReader(prefix), tail), Closer: rest}
}

type replayedBody struct {
	io.Reader
	io.Closer
}

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

// matchConversions returns the conversion rules whose method and path match r.
func (e *edge) matchConversions(r *http.Request) []*conversionRule {
	var rules []*conversionRule
	for i := range e.conversions {
		rule := &e.conversions[i]
		if r.Method == rule.method && rule.path.Match(r) {
			rules = append(rules, rule)
		}
	}
	return rules
}

// pendingConversion is a conversion of this request: its event is built before the upstream
// answers (the browser copy's event ID must be known when the status is written); whether it fires
// is decided by the status.
type pendingConversion struct {
	event event.Event
	fired bool
}

// buildConversions resolves the rules' placeholders with the request's replacer and builds their
// events with the visitor's full profile. The event ID is derived from the event name and the
// resolved order ID under the installation's key, so a reload or a webhook for the same order
// carries the same one. Without the key (the storage did not open in time) no conversion is
// built: the queue write would fail the same way, and an ID made up here would not match the
// webhook's.
func (e *edge) buildConversions(ctx context.Context, repl *caddy.Replacer, v *visit, rules []*conversionRule) []*pendingConversion {
	if len(rules) == 0 {
		return nil
	}
	opt, err := e.eventOptions(ctx)
	if err != nil {
		e.logger.Error("capi: conversions not built; the storage holding the event ID key is not open",
			zap.Int("conversions", len(rules)), zap.Error(err))
		return nil
	}
	rec := e.visitorRecord(ctx, v)
	var out []*pendingConversion
	for _, rule := range rules {
		c := conversion.Conversion{
			Name:     rule.Event,
			Value:    repl.ReplaceAll(rule.Value, ""),
			Currency: repl.ReplaceAll(rule.Currency, ""),
			OrderID:  repl.ReplaceAll(rule.OrderID, ""),
		}
		if rule.ContentIDs != "" {
			c.ContentIDs = []string{repl.ReplaceAll(rule.ContentIDs, "")}
		}
		ev, drops, err := conversion.FromRequest(c, rec, v.req, opt)
		for _, d := range drops {
			countDrop(d)
		}
		if err != nil {
			e.logger.Error("capi: building a conversion event failed", zap.String("event", rule.Event), zap.Error(err))
			continue
		}
		out = append(out, &pendingConversion{event: ev})
	}
	return out
}

// page is one response passing through the edge: its page event ID, its conversions and the
// conversions carried to it by cookie.
type page struct {
	e       *edge
	visit   *visit
	eventID string
	convs   []*pendingConversion
	// carried are the conversions the browser fires on the next HTML page, starting with those
	// the request's _capi_evt cookie carried; hadCookie says whether it had one.
	carried   []carriedConversion
	hadCookie bool
}

// complete decides the request's conversions once the final status is known (before it is
// written): a 2xx or 3xx completes them. A conversion with an order ID fires only the first time
// that order is seen; the browser copy goes into the _capi_evt cookie, which snippet swaps for the
// page's own script when the response turns out to be an injected HTML page.
func (p *page) complete(ctx context.Context, h http.Header, status int) {
	if status < 200 || status >= 400 {
		return
	}
	added := false
	for _, c := range p.convs {
		first := true
		if c.event.OrderID != "" {
			var err error
			if first, err = p.e.markSeen(ctx, c.event); err != nil {
				// The queue's own dedup still refuses a second copy within 48 hours.
				p.e.logger.Error("capi: recording a counted order failed", zap.String("event", c.event.Name),
					zap.String("event_id", c.event.ID), zap.Error(err))
				first = true
			}
		}
		if !first {
			edgeStats().conversions.WithLabelValues("duplicate").Inc()
			continue
		}
		c.fired = true
		p.carried = append(p.carried, carriedConversion{
			Name: c.event.Name, EventID: c.event.ID, Value: c.event.Value, Currency: c.event.Currency,
			OrderID: c.event.OrderID, contentIDs: c.event.ContentIDs,
		})
		added = true
	}
	// Without tags to inject there is no browser copy to carry.
	if added && p.e.injects {
		if len(p.carried) > maxCarried {
			p.carried = p.carried[len(p.carried)-maxCarried:]
		}
		replaceCarriedCookie(h, carriedCookieLine(p.carried, p.visit.cookieDomain, p.visit.secure))
	}
}

// markSeen records the order of ev as counted and reports whether it was the first time.
func (e *edge) markSeen(ctx context.Context, ev event.Event) (bool, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), enqueueTimeout)
	defer cancel()
	visitors, err := e.storage.edgeVisitors(ctx)
	if err != nil {
		return true, err
	}
	return visitors.MarkSeen(ctx, "conversion/"+ev.Name+"/"+ev.ID, e.seenTTL)
}

// snippet is the inject.Writer callback: the page's script with its PageView and the conversions
// it fires, and the response's CSP adapted to it (pixel's call order: nonce, snippet, vendors,
// script). The conversions now ride in the page, so the _capi_evt cookie is cleared.
func (p *page) snippet(h http.Header) []byte {
	e := p.e
	pg := pixel.Page{
		EventID:        p.eventID,
		ExternalID:     signal.ExternalID(p.visit.id.VisitorID),
		LimitedDataUse: p.visit.consent.LimitedDataUse,
	}
	for _, c := range p.carried {
		pg.Conversions = append(pg.Conversions, c.browser())
	}
	nonce := pixel.CSPNonce(h)
	snip := e.snippets.Snippet(pg, nonce)
	if snip == nil {
		return nil
	}
	pixel.AllowVendors(h, e.pixels)
	pixel.AllowScript(h, snip)
	if len(p.carried) > 0 || p.hadCookie {
		replaceCarriedCookie(h, carriedCookieLine(nil, p.visit.cookieDomain, p.visit.secure))
	}
	return snip
}

// enqueueConversions sends the fired conversions to every platform that routes them. It runs after
// the upstream answered; the queue write is durable when it returns.
func (p *page) enqueueConversions(ctx context.Context) {
	for _, c := range p.convs {
		if !c.fired {
			continue
		}
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), enqueueTimeout)
		platforms := p.e.routes.Platforms(c.event)
		added, err := p.e.enqueue(qctx, platforms, c.event)
		cancel()
		if err != nil {
			edgeStats().conversions.WithLabelValues("failed").Inc()
			p.e.logger.Error("capi: enqueueing a conversion failed", zap.String("event", c.event.Name),
				zap.String("event_id", c.event.ID), zap.Error(err))
			continue
		}
		if added == 0 && len(platforms) > 0 {
			// A webhook or postback for the same order got there first, with the same event ID.
			edgeStats().conversions.WithLabelValues("duplicate").Inc()
			continue
		}
		edgeStats().conversions.WithLabelValues("fired").Inc()
		if ce := p.e.logger.Check(zap.DebugLevel, "capi conversion fired"); ce != nil {
			ce.Write(zap.String("event", c.event.Name), zap.String("event_id", c.event.ID))
		}
	}
}

// sendPageView sends the page's PageView server-side, with the page's event ID, to the platforms
// that take it (`page_view server`), in the background: the page has been sent already.
func (e *edge) sendPageView(v *visit, eventID string) {
	at := e.now()
	e.writer.submit(jobPageView, func(ctx context.Context) error {
		opt, err := e.eventOptions(ctx)
		if err != nil {
			return err
		}
		opt.Now = func() time.Time { return at }
		req := v.req
		req.HTML = true
		ev, drops, err := conversion.FromRequest(conversion.Conversion{Name: conversion.PageView, ID: eventID}, e.visitorRecord(ctx, v), req, opt)
		for _, d := range drops {
			countDrop(d)
		}
		if err != nil {
			return err
		}
		_, err = e.enqueue(ctx, e.routes.Platforms(ev), ev)
		return err
	})
}

// serve passes a request on to the upstream with its conversions decided and, for a navigation,
// the page's tags injected into the HTML answer.
func (e *edge) serve(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, repl *caddy.Replacer,
	v *visit, navigation bool, rules []*conversionRule) error {
	ctx := r.Context()
	p := &page{e: e, visit: v, convs: e.buildConversions(ctx, repl, v, rules)}
	if navigation {
		p.eventID = conversion.RandomEventID(e.rand)
	}
	switch {
	case len(p.convs) > 0:
		repl.Set("capi.event_id", p.convs[0].event.ID)
	case p.eventID != "":
		repl.Set("capi.event_id", p.eventID)
	}
	if c, err := r.Cookie(carriedCookie); err == nil {
		p.hadCookie = true
		p.carried = parseCarried(c.Value, func(name string) bool { return e.carriedNames[name] })
	}

	out := w
	var iw *inject.Writer
	if navigation && e.injects {
		iw = inject.NewWriter(w, r, p.snippet)
		defer iw.Close()
		out = iw
	}
	var cw *conversionWriter
	if len(p.convs) > 0 {
		hdr := w.Header()
		cw = newConversionWriter(out, func(status int) { p.complete(ctx, hdr, status) })
		out = cw
	}

	err := next.ServeHTTP(out, r)
	if cw != nil && err == nil {
		cw.finish()
	}
	if iw != nil && err == nil {
		err = iw.Finish()
	}
	p.enqueueConversions(ctx)
	html := iw != nil && iw.Injected()
	if !firstVisitWithoutSignals(v, len(p.convs) > 0) {
		e.remember(v, html)
	}
	if html && e.routes.PageViewServer {
		e.sendPageView(v, p.eventID)
	}
	return err
}

// serveCollect answers the collect endpoint: a browser event posted by window.capi.track, sent on
// server-side with the event ID the pixels fired it with.
func (e *edge) serveCollect(w http.ResponseWriter, r *http.Request, v *visit) error {
	ev, err := readCollect(w, r, func(name string) bool { return e.collectNames[name] })
	if err != nil {
		return err
	}
	// A request without a valid visitor cookie got a new ID just now; limit it by address, or a
	// script that drops cookies would have a fresh allowance on every post.
	key := "v:" + v.id.VisitorID
	if v.id.NewVisitor {
		key = "ip:" + v.req.IP
	}
	if !e.addressLimiter.allow(v.req.IP) {
		w.Header().Set("Retry-After", "60")
		return collectError(http.StatusTooManyRequests, "rate_limited", fmt.Sprintf("too many events from this address; at most %d a minute", collectPerAddressMinute))
	}
	if !e.limiter.allow(key) {
		w.Header().Set("Retry-After", "60")
		return collectError(http.StatusTooManyRequests, "rate_limited", fmt.Sprintf("too many events from this visitor; at most %d a minute", collectPerMinute))
	}

	req := v.req
	req.URL = sameHostURL(ev.URL, r.Host)
	if req.URL == "" {
		req.URL = r.Referer()
	}
	req.Referrer = ev.Referrer
	c := conversion.Conversion{
		Name:     ev.Name,
		ID:       ev.EventID,
		Value:    string(ev.Data.Value),
		Currency: ev.Data.Currency,
		OrderID:  string(ev.Data.OrderID),
	}
	for _, id := range ev.Data.ContentIDs {
		c.ContentIDs = append(c.ContentIDs, string(id))
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), enqueueTimeout)
	defer cancel()
	opt, err := e.eventOptions(ctx)
	if err != nil {
		edgeStats().collected.WithLabelValues("failed").Inc()
		e.logger.Error("capi: a collected event was not built; the storage is not open", zap.String("event", c.Name), zap.Error(err))
		return caddyhttp.Error(http.StatusServiceUnavailable, errors.New("capi collect: the event could not be queued; try again"))
	}
	event, drops, err := conversion.FromRequest(c, e.visitorRecord(ctx, v), req, opt)
	for _, d := range drops {
		countDrop(d)
	}
	if err != nil {
		return collectError(http.StatusUnprocessableEntity, "invalid", err.Error())
	}
	if _, err := e.enqueue(ctx, e.routes.Platforms(event), event); err != nil {
		edgeStats().collected.WithLabelValues("failed").Inc()
		e.logger.Error("capi: enqueueing a collected event failed", zap.String("event", event.Name),
			zap.String("event_id", event.ID), zap.Error(err))
		return caddyhttp.Error(http.StatusServiceUnavailable, errors.New("capi collect: the event could not be queued; try again"))
	}
	edgeStats().collected.WithLabelValues("accepted").Inc()
	e.remember(v, false)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// serveLink answers a tracking redirect: 302 to the target with the placeholders replaced, each
// value escaped for a URL query. The identity cookies are set on the redirect too.
func (e *edge) serveLink(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, v *visit, target string) error {
	loc, err := repl.ReplaceFunc(target, func(_ string, val any) (any, error) {
		return url.QueryEscape(caddy.ToString(val)), nil
	})
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("capi link %s: replacing placeholders: %v", r.URL.Path, err))
	}
	u, err := url.Parse(loc)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("capi link %s: the target is not an absolute http(s) URL after replacing placeholders", r.URL.Path))
	}
	if v != nil {
		// The link is a page of this site that the visitor's browser addressed: recorded as the
		// last page, so that a conversion joined to a visitor who arrived only through the link
		// (the affiliate bridge: ad click, link, vendor's checkout, postback) goes out as a website
		// event with it as the source URL (DESIGN §7) instead of system_generated.
		e.remember(v, true)
	}
	h := w.Header()
	h.Set("Location", u.String())
	// The location carries the visitor's ID: no cache may hand it to someone else.
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusFound)
	return nil
}
