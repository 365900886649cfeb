package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-capi/caddy-capi/capi/conversion"
	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/postback"
	"github.com/caddy-capi/caddy-capi/capi/store"
)

// The postback endpoints (DESIGN §7) answer affiliate networks and shops, not browsers: every
// answer is a short plain-text status the sender's retry logic acts on.
//
//   - 401: the request is not proven to come from the source; nothing is stored.
//   - 400: authentic (or uncheckable) but unreadable; the sender should not retry it.
//   - 413: the body is over maxPostbackBody.
//   - 405: a method the source never uses.
//   - 503: the notification could not be recorded durably; ClickBank, JVZoo, Shopify, WooCommerce
//     and Stripe all retry a non-2xx, and the retry is processed as if it were the first.
//   - 200: recorded (or a duplicate of something recorded, or a set-up ping).
//
// A 2xx is never sent before the notification is durable: the events are in the queue (Enqueue
// returns only after the fsync) and its idempotency key is marked seen.
//
// The generic source's token is best sent as "Authorization: Bearer <token>": Caddy's access log
// redacts that header. A token in the query string (?token=…) appears in the access log's uri
// unless the site's log filters it, for example
//
//	log {
//		format filter {
//			request>uri query {
//				delete token
//			}
//		}
//	}

const (
	// maxPostbackBody caps the raw body read from a postback. The largest notifications (a
	// Shopify order with hundreds of line items) stay well under it.
	maxPostbackBody = 1 << 20

	// postbackSeenTTL is how long a notification's idempotency key is remembered. The sources
	// retry for at most three days (JVZoo hourly for 72 hours, Shopify 8 times over 4 hours,
	// WooCommerce and Stripe for up to 3 days); 30 days also covers a notification re-sent by hand
	// from the network's dashboard, and stays within Meta's 7-day and Google's 90-day windows
	// where a second copy would count twice.
	postbackSeenTTL = 30 * 24 * time.Hour

	// postbackWriteTimeout bounds the durable write of one notification. The write runs on a
	// context detached from the request's, so a sender that hangs up (Shopify waits 5 seconds)
	// does not leave it half done.
	postbackWriteTimeout = 10 * time.Second
)

// postbackRoute is one configured postback endpoint, with its secrets resolved.
type postbackRoute struct {
	path   string
	source postback.Source
	// event is the event name a sale becomes.
	event string
	// platforms says where its events go under the handler's config.
	platforms conversion.Routes
}

// provisionPostbacks builds one postback.Source per configured endpoint, resolving {env.*} and
// {file.*} placeholders in secrets and tokens the way the app resolves its own secrets. Errors name
// the directive path and the placeholder, never a value.
func (h *Handler) provisionPostbacks(ctx caddy.Context) error {
	if len(h.Postbacks) == 0 {
		return nil
	}
	registerPostbackMetrics(ctx.GetMetricsRegistry(), h.logger)
	repl := caddy.NewReplacer()
	platforms := postbackRoutes(h.app.resolved)
	site := &postbackSite{routes: make(map[string]*postbackRoute, len(h.Postbacks)), enqueue: h.app.storage.enqueueEdge}
	for i, p := range h.Postbacks {
		path := fmt.Sprintf("capi.postbacks[%d]", i)
		src, err := newPostbackSource(repl, path, p)
		if err != nil {
			return err
		}
		name := p.Event
		if name == "" {
			name = conversion.DefaultEventName
		}
		site.routes[p.Path] = &postbackRoute{path: p.Path, source: src, event: name, platforms: platforms}
	}
	postbackEndpoints.Store(h, site)
	ctx.OnCancel(func() { postbackEndpoints.Delete(h) })
	return nil
}

// postbackSite is the postback endpoints of one handler.
type postbackSite struct {
	// routes are the endpoints by path.
	routes map[string]*postbackRoute
	// enqueue appends an event durably for each platform and returns how many copies were new
	// (the storage's enqueueEdge; tests wrap it to watch what is enqueued while the delivery
	// engine drains the queue).
	enqueue func(ctx context.Context, platforms []string, e event.Event) (int, error)
}

// postbackEndpoints maps each provisioned *Handler to its *postbackSite. The endpoints live beside
// the handler rather than in it because Handler's fields belong to the handler's own file; an
// entry goes when its config is unloaded (the provisioning context is cancelled).
var postbackEndpoints sync.Map

// newPostbackSource builds the Source of one endpoint, with the settings its source takes.
func newPostbackSource(repl *caddy.Replacer, path string, p Postback) (postback.Source, error) {
	settings, field, err := checkPostbackSettings(p.Source, p.PostbackSettings)
	if err != nil {
		return nil, fieldErr(path+"."+field, err)
	}
	if p.Source == "generic" {
		token, err := resolveSecret(repl, path+".token", p.Token)
		if err != nil {
			return nil, err
		}
		return postback.Generic{Token: token, Currency: settings.Currency}, nil
	}
	secrets := make([]string, len(p.Secrets))
	for i, s := range p.Secrets {
		check := keep(func(v string) error { return checkPostbackSecret(p.Source, v) })
		v, err := resolveID(repl, fmt.Sprintf("%s.secrets[%d]", path, i), s, check)
		if err != nil {
			return nil, err
		}
		secrets[i] = v
	}
	switch p.Source {
	case "clickbank":
		return postback.ClickBank{Secrets: secrets, Vendor: settings.Vendor}, nil
	case "jvzoo":
		return postback.JVZoo{Secrets: secrets, Currency: settings.Currency}, nil
	case "shopify":
		return postback.Shopify{Secrets: secrets, Topics: settings.Topics}, nil
	case "woocommerce":
		return postback.WooCommerce{Secrets: secrets}, nil
	case "stripe":
		return postback.Stripe{Secrets: secrets}, nil
	}
	return nil, fieldErr(path+".source", fmt.Errorf("unknown source %q", p.Source))
}

// servePostback answers r if its path is a postback endpoint, and reports whether it did. A
// postback is never passed on to the next handler: the upstream must not see the notification,
// and the sender must get our answer. The error is always nil: every outcome, failures included,
// is answered here with the status the sender's retries rely on, and returning an error would make
// Caddy log the request's URI, where a generic token may be.
func (h *Handler) servePostback(w http.ResponseWriter, r *http.Request) (handled bool, err error) {
	if len(h.Postbacks) == 0 {
		return false, nil
	}
	v, ok := postbackEndpoints.Load(h)
	if !ok {
		return false, nil
	}
	site := v.(*postbackSite)
	route := site.routes[r.URL.Path]
	if route == nil {
		return false, nil
	}
	status, msg := h.handlePostback(w, r, site, route)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	io.WriteString(w, msg+"\n")
	return true, nil
}

// handlePostback verifies, deduplicates, records and routes one notification, and returns the
// status and message to answer with. Messages never hold a secret or a value from the body.
func (h *Handler) handlePostback(w http.ResponseWriter, r *http.Request, site *postbackSite, route *postbackRoute) (int, string) {
	name := route.source.Name()
	count := func(outcome string) { postbackStats().WithLabelValues(name, outcome).Inc() }

	if r.Method != http.MethodPost && (name != "generic" || r.Method != http.MethodGet) {
		count("method_not_allowed")
		if name == "generic" {
			w.Header().Set("Allow", "GET, POST")
		} else {
			w.Header().Set("Allow", "POST")
		}
		return http.StatusMethodNotAllowed, "method not allowed"
	}
	body, err := readPostbackBody(w, r)
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			count("too_large")
			return http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", maxPostbackBody)
		}
		count("unreadable")
		return http.StatusBadRequest, "body could not be read"
	}

	n, err := route.source.Parse(postback.Request{Method: r.Method, Header: r.Header, Query: r.URL.Query(), Body: body})
	switch {
	case errors.Is(err, postback.ErrUnauthorized):
		count("unauthorized")
		h.logger.Warn("postback refused: not authentic", zap.String("source", name), zap.String("path", route.path), zap.Error(err))
		return http.StatusUnauthorized, err.Error()
	case errors.Is(err, postback.ErrPing):
		count("ping")
		h.logger.Info("postback set-up ping answered", zap.String("source", name), zap.String("path", route.path))
		return http.StatusOK, "OK"
	case err != nil:
		count("malformed")
		h.logger.Warn("postback refused: malformed", zap.String("source", name), zap.String("path", route.path), zap.Error(err))
		return http.StatusBadRequest, err.Error()
	}

	// The durable write goes on if the sender hangs up: it will retry, and the retry must find
	// the notification recorded, not half of it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), postbackWriteTimeout)
	defer cancel()
	outcome, err := h.recordPostback(ctx, site, route, n)
	if err != nil {
		count("unavailable")
		h.logger.Error("postback not recorded; answering 503 so that the source retries",
			zap.String("source", name), zap.String("idempotency_key", loggedKey(n.IdempotencyKey)), zap.Error(err))
		return http.StatusServiceUnavailable, "not recorded; retry later"
	}
	count(outcome)
	return http.StatusOK, "OK"
}

// readPostbackBody reads the whole body, refusing one over maxPostbackBody with a
// *http.MaxBytesError before reading it when the request declares its length.
func readPostbackBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > maxPostbackBody {
		return nil, &http.MaxBytesError{Limit: maxPostbackBody}
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, maxPostbackBody))
}

// recordPostback deduplicates a verified notification, joins it to the visitor, builds its event
// and enqueues it to every routed platform. It returns the outcome for the metrics: recorded,
// duplicate, not_conversion or unrouted. An error means nothing durable can be assumed and the
// source must retry.
//
// The order makes a retry after any failure safe. The idempotency key is checked first without
// being claimed, and marked seen for postbackSeenTTL only once the events are durable in the
// queue; so a failure in between leaves the key unmarked and the retry runs again. The retry then
// enqueues the same event ID (deterministic, see postbackEvent), which the queue refuses as a
// duplicate of the copy already there, and two copies of one notification racing through here
// meet the same refusal.
func (h *Handler) recordPostback(ctx context.Context, site *postbackSite, route *postbackRoute, n postback.Notification) (string, error) {
	name := route.source.Name()
	if h.app == nil || h.app.storage == nil {
		return "", errors.New("capi: the capi app is not provisioned")
	}
	_, visitors, err := h.app.storage.edgeHandles(ctx, storageWait)
	if err != nil {
		return "", err
	}
	idKey, err := h.app.storage.eventIDKey(ctx)
	if err != nil {
		return "", err
	}
	key := "postback/" + name + "/" + n.IdempotencyKey
	if seen, err := visitors.Seen(ctx, key); err != nil {
		return "", err
	} else if seen {
		h.logger.Info("postback is a duplicate of one already recorded", zap.String("source", name),
			zap.String("idempotency_key", loggedKey(n.IdempotencyKey)))
		return "duplicate", nil
	}

	e, joinedBy, err := h.postbackEvent(ctx, visitors, idKey, route, n)
	if errors.Is(err, conversion.ErrNotConversion) {
		if _, err := visitors.MarkSeen(ctx, key, postbackSeenTTL); err != nil {
			return "", err
		}
		h.logger.Info("postback recorded; not a conversion, nothing sent", zap.String("source", name),
			zap.String("idempotency_key", loggedKey(n.IdempotencyKey)), zap.Stringer("kind", n.Kind))
		return "not_conversion", nil
	}
	if err != nil {
		return "", err
	}

	platforms := route.platforms.Platforms(e)
	added, err := site.enqueue(ctx, platforms, e)
	if err != nil {
		return "", err
	}
	if _, err := visitors.MarkSeen(ctx, key, postbackSeenTTL); err != nil {
		return "", err
	}
	outcome := "recorded"
	switch {
	case len(platforms) == 0 && e.Test:
		outcome = "unrouted"
		h.logger.Info("test postback recorded; no platform has a test event code, nothing sent",
			zap.String("source", name), zap.String("idempotency_key", loggedKey(n.IdempotencyKey)), zap.String("event_id", e.ID))
		return outcome, nil
	case len(platforms) == 0:
		outcome = "unrouted"
	}
	h.logger.Info("postback recorded",
		zap.String("source", name),
		zap.String("idempotency_key", loggedKey(n.IdempotencyKey)),
		zap.Stringer("kind", n.Kind),
		zap.Bool("test", e.Test),
		zap.String("event", e.Name),
		zap.String("event_id", e.ID),
		zap.String("joined_by", joinedBy),
		zap.String("action_source", e.ActionSource),
		zap.Strings("platforms", platforms),
		zap.Int("enqueued", added))
	return outcome, nil
}

// postbackEvent joins a notification to its visitor (conversion.Join, in DESIGN §7's order) and
// builds its event, whose ID is derived under the installation's key idKey, the key the
// thank-you page of the same order used; joinedBy is empty when no visitor was found. A
// notification that is not a conversion returns an error wrapping conversion.ErrNotConversion.
func (h *Handler) postbackEvent(ctx context.Context, visitors store.Store, idKey conversion.IDKey, route *postbackRoute, n postback.Notification) (e event.Event, joinedBy string, err error) {
	if !n.Kind.IsConversion() {
		// Skip the join: a refund is recorded, not sent, and needs no visitor.
		_, err := conversion.FromNotification(n, nil, conversion.Options{EventName: route.event})
		return event.Event{}, "", err
	}
	v, joinedBy, found, err := conversion.Join(ctx, visitors, n.Join, conversion.EmailHashes(n.Customer.Emails))
	if err != nil {
		return event.Event{}, "", err
	}
	var visitor *store.Visitor
	if found {
		visitor = &v
	}
	e, err = conversion.FromNotification(n, visitor, conversion.Options{
		IDKey:          idKey,
		EventName:      route.event,
		DefaultCountry: h.app.resolved.defaultCountry,
		Dropped:        func(d conversion.Drop) { edgeStats().valuesDropped.WithLabelValues(d.Field).Inc() },
	})
	if err != nil {
		return event.Event{}, "", err
	}
	if e.OrderID == "" {
		// Without an order ID FromNotification draws a random event ID, which would let a retry
		// after a failed write enqueue a second copy. The idempotency key identifies the
		// notification as well; the NUL keeps this pseudo order apart from every real one, which
		// holds no control character.
		e.ID = conversion.EventID(idKey, e.Name, "postback\x00"+n.Source+"\x00"+n.IdempotencyKey)
	}
	return e, joinedBy, nil
}

// postbackRoutes says where events go under a config's settings: Meta and TikTok when configured
// (test events only with a test event code), Google only for the events that have a conversion
// action and only when uploads are configured (customer_id).
func postbackRoutes(r *resolvedConfig) conversion.Routes {
	var routes conversion.Routes
	if r == nil {
		return routes
	}
	if r.meta != nil {
		routes.Meta, routes.MetaTest = true, r.meta.TestEventCode != ""
	}
	if r.tiktok != nil {
		routes.TikTok, routes.TikTokTest = true, r.tiktok.TestEventCode != ""
	}
	if r.google != nil && r.google.CustomerID != "" {
		routes.GoogleConversions = make(map[string]bool, len(r.google.Conversions))
		for _, c := range r.google.Conversions {
			routes.GoogleConversions[c.Event] = true
		}
	}
	return routes
}

// loggedKey is an idempotency key as logs show it. A generic postback keyed by its click ID
// ("click/<id>/<status>") carries a visitor's identifier, often our own _capi_vid, which replayed
// as a cookie would impersonate the visitor: logs keep its first 6 characters, as the store does
// for visitor IDs. Keys made of order or transaction IDs are logged whole, so that an operator can
// find the order.
func loggedKey(key string) string {
	rest, ok := strings.CutPrefix(key, "click/")
	if !ok {
		return key
	}
	id, status, _ := strings.Cut(rest, "/")
	if len(id) > 6 {
		id = id[:6] + "…"
	}
	return "click/" + id + "/" + status
}
