package conversion

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/identity"
	"github.com/caddy-capi/caddy-capi/capi/postback"
	"github.com/caddy-capi/caddy-capi/capi/signal"
	"github.com/caddy-capi/caddy-capi/capi/store"
)

// Event names this package treats specially.
const (
	// DefaultEventName is what a sale becomes when the postback's configuration names no event.
	DefaultEventName = "Purchase"
	// PageView is the page event every HTML page fires in the browser.
	PageView = "PageView"
)

// ErrNotConversion is returned for a notification that must be recorded but not sent: a refund, a
// chargeback, a cancellation or anything else that is not a sale or rebill.
var ErrNotConversion = errors.New("not a conversion")

// Errors of FromRequest for values it cannot make an event from.
var (
	ErrEventName = errors.New("event name empty, longer than 100 bytes or not printable UTF-8")
	ErrEventID   = errors.New("event ID not 8 to 64 characters of A-Z a-z 0-9 - _")
)

// ErrNoIDKey is returned by FromRequest and FromNotification when Options carries no IDKey:
// without the installation's key an order's event ID would either be public or differ between its
// sources, so no event is made.
var ErrNoIDKey = errors.New("no event ID key in the options")

// Bounds on what an event carries from outside.
const (
	maxEventNameLength = 100
	maxOrderIDLength   = 256
	maxUserAgentLength = 1024
	maxTitleLength     = 200
)

// Options configure FromNotification, FromRequest and ApplyCapture.
type Options struct {
	// IDKey is the installation's event ID key, under which EventID derives the IDs of events
	// with an order ID. FromRequest and FromNotification require it; ApplyCapture ignores it.
	IDKey IDKey
	// EventName is the event a sale, rebill or test notification becomes. Default: Purchase.
	EventName string
	// DefaultCountry is the ISO 3166 alpha-2 code (or a country name) for phone numbers and
	// addresses that lack a country (the global default_country). Default: none.
	DefaultCountry string
	// Now tells the time; default time.Now.
	Now func() time.Time
	// Rand is the randomness of event IDs for events without an order ID; default crypto/rand.
	Rand io.Reader
	// Dropped, when set, is told of every value FromNotification or ApplyCapture leaves out (a
	// malformed email, an invalid price), for metrics. It never sees the value.
	Dropped func(Drop)
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o Options) dropped(ds ...Drop) {
	if o.Dropped != nil {
		for _, d := range ds {
			o.Dropped(d)
		}
	}
}

func (o Options) normalize(c signal.Customer) signal.Profiles {
	p, drops := signal.Normalize(c, signal.Options{DefaultCountry: o.DefaultCountry, Now: o.Now})
	o.dropped(drops...)
	return p
}

// FromNotification turns a verified postback or webhook into the event sent to the platforms.
//
// v is the visitor Join found, nil when none. The buyer's data in the notification is normalized
// and hashed here and laid over the visitor's profile (the notification's values are fresher). A
// joined event carries the visitor's identity — click IDs, fbc, fbp, ttp, IP, user agent, locale,
// external_id — and is sent as action_source website from the visitor's last page URL; the
// notification's own IP, user agent and click IDs fill what the visitor lacks, and its click IDs
// win over the visitor's older ones, being the click that led to this order. An event that joined
// no visitor, or whose visitor has no page URL or user agent (Meta refuses a website event without
// them), is sent as system_generated.
//
// The event ID is EventID(opt.IDKey, name, n.OrderID), the ID the thank-you page for the same
// order carried. Without opt.IDKey the error wraps ErrNoIDKey.
// Refunds, chargebacks, cancellations and other non-sales return an error wrapping
// ErrNotConversion: the caller records them and sends nothing. A test notification gives an event
// marked Test, which Routes sends only where a test event code is configured.
func FromNotification(n postback.Notification, v *store.Visitor, opt Options) (event.Event, error) {
	if !n.Kind.IsConversion() {
		return event.Event{}, fmt.Errorf("conversion: %s notification from %s: %w", n.Kind, n.Source, ErrNotConversion)
	}
	if opt.IDKey.IsZero() {
		return event.Event{}, fmt.Errorf("conversion: %s notification from %s: %w", n.Kind, n.Source, ErrNoIDKey)
	}
	now := opt.now()
	e := event.Event{
		Name: opt.EventName,
		Time: n.Occurred,
		Test: n.Test || n.Kind == postback.Test,
	}
	if e.Name == "" {
		e.Name = DefaultEventName
	}
	// A source's clock ahead of ours must not date the event in the future, which platforms refuse.
	if e.Time.IsZero() || e.Time.After(now) {
		e.Time = now
	}
	e.OrderID, e.ID = orderAndEventID(e.Name, n.OrderID, opt)
	e.Value, e.Currency = moneyFields(n.Value, n.Currency, opt)
	e.Contents, e.ContentIDs, e.NumItems = contentsOf(n.Products, opt)
	if len(e.ContentIDs) > 0 {
		e.ContentType = "product"
	}

	fresh := opt.normalize(signal.Customer(n.Customer))
	var known signal.Profiles
	if v != nil {
		e.User = visitorIdentity(v)
		known = signal.Profiles{Meta: v.User.Meta, TikTok: v.User.TikTok, Google: v.User.Google}
		// The restrictions the visitor's browser asked for (Global Privacy Control) follow their
		// order when it comes back by postback (DESIGN §9).
		e.Consent = v.Consent
	}
	merged := known.Merge(fresh)
	e.User.Meta, e.User.TikTok, e.User.Google = merged.Meta, merged.TikTok, merged.Google

	u := &e.User
	if u.IP == "" {
		u.IP = cleanIP(n.IP, opt)
	}
	if u.UserAgent == "" {
		u.UserAgent = cleanUserAgent(n.UserAgent, opt)
	}
	applyNotificationClicks(u, v, n.Join, e.Time)

	e.ActionSource = event.ActionSystemGenerated
	if v != nil && u.UserAgent != "" {
		if page, err := PageURL(v.LastPageURL); err == nil && page != "" {
			e.ActionSource, e.SourceURL = event.ActionWebsite, page
		}
	}
	return e, nil
}

// visitorIdentity returns the identity signals of a visitor record as an event's User, profiles
// included. The latest click of each kind (Clicks) wins over a value in User.
func visitorIdentity(v *store.Visitor) event.User {
	u := v.User
	u.Meta, u.TikTok, u.Google = event.Profile{}, event.Profile{}, event.Profile{}
	u.ExternalID = signal.ExternalID(v.ID)
	for kind, dst := range clickFields(&u) {
		if c, ok := v.Clicks[kind]; ok && c.Value != "" {
			*dst = c.Value
		}
	}
	if c, ok := v.Clicks[store.ClickFBCLID]; ok && identity.FBCLIDOf(u.FBC) != c.Value {
		// The stored _fbc belongs to an older click (or there is none): build one for the latest.
		if fbc := fbcFor(c.Value, c.FirstSeen); fbc != "" {
			u.FBC = fbc
		}
	}
	return u
}

// clickFields maps the click kinds other than fbclid (which travels inside fbc) to the User fields
// that carry them.
func clickFields(u *event.User) map[string]*string {
	return map[string]*string{
		store.ClickGCLID:  &u.GCLID,
		store.ClickGBRAID: &u.GBRAID,
		store.ClickWBRAID: &u.WBRAID,
		store.ClickTTCLID: &u.TTCLID,
	}
}

// applyNotificationClicks lays the click IDs a notification carries over the user's: they come
// with this very order. fbc and fbp from the notification fill only what the visitor lacks.
func applyNotificationClicks(u *event.User, v *store.Visitor, j postback.Join, at time.Time) {
	for _, c := range []struct {
		value string
		dst   *string
	}{{j.GCLID, &u.GCLID}, {j.GBRAID, &u.GBRAID}, {j.WBRAID, &u.WBRAID}, {j.TTCLID, &u.TTCLID}} {
		if identity.ValidClickID(c.value) {
			*c.dst = c.value
		}
	}
	fbclid := j.FBCLID
	if !identity.ValidClickID(fbclid) {
		fbclid = identity.FBCLIDOf(j.FBC)
	}
	switch {
	case fbclid == "" || identity.FBCLIDOf(u.FBC) == fbclid:
	case identity.FBCLIDOf(j.FBC) == fbclid:
		u.FBC = j.FBC
	default:
		created := at
		if v != nil {
			if c, ok := v.Clicks[store.ClickFBCLID]; ok && c.Value == fbclid && !c.FirstSeen.IsZero() {
				created = c.FirstSeen
			}
		}
		if fbc := fbcFor(fbclid, created); fbc != "" {
			u.FBC = fbc
		}
	}
	if u.FBP == "" && identity.ValidFBP(j.FBP) {
		u.FBP = j.FBP
	}
}

// fbcFor builds the fbc of a click no cookie recorded: fb.1.<ms>.<fbclid>, with subdomain index 1
// and the time the click was first seen, as Meta says for values made on a server
// (spec/meta-capi.md §4). A click ID with a '.' cannot be framed unambiguously and gets none.
func fbcFor(fbclid string, firstSeen time.Time) string {
	if !identity.ValidClickID(fbclid) || strings.Contains(fbclid, ".") || firstSeen.IsZero() {
		return ""
	}
	return "fb.1." + strconv.FormatInt(firstSeen.UnixMilli(), 10) + "." + fbclid
}

// orderAndEventID returns the trimmed order ID an event carries and its event ID. An order ID that
// is too long or holds control characters is dropped and the event gets a random ID.
func orderAndEventID(name, rawOrderID string, opt Options) (orderID, eventID string) {
	orderID = strings.TrimSpace(rawOrderID)
	if orderID != "" && (len(orderID) > maxOrderIDLength || !printable(orderID)) {
		opt.dropped(Drop{Field: "order_id", Reason: "longer than 256 bytes or not printable UTF-8"})
		orderID = ""
	}
	if orderID == "" {
		return "", RandomEventID(opt.Rand)
	}
	return orderID, EventID(opt.IDKey, name, orderID)
}

// moneyFields validates a value and currency, dropping what is invalid.
func moneyFields(rawValue, rawCurrency string, opt Options) (value, currency string) {
	var err error
	if strings.TrimSpace(rawValue) != "" {
		if value, err = ParseValue(rawValue); err != nil {
			opt.dropped(Drop{Field: "value", Reason: err.Error()})
		}
	}
	if strings.TrimSpace(rawCurrency) != "" {
		if currency, err = ParseCurrency(rawCurrency); err != nil {
			opt.dropped(Drop{Field: "currency", Reason: err.Error()})
		}
	}
	return value, currency
}

// contentsOf turns the items of an order into an event's contents, content IDs and item count.
// Lines of the same item are summed into one content; the item count covers every line of the order,
// also those whose item could not be listed.
func contentsOf(products []postback.Product, opt Options) ([]event.Content, []string, int) {
	var (
		contents []event.Content
		ids      []string
		items    int
		at       = make(map[string]int, len(products))
	)
	for _, p := range products {
		items += max(p.Quantity, 0)
	}
	for _, p := range products {
		id, err := cleanContentID(p.ID)
		if err != nil {
			opt.dropped(Drop{Field: "contents", Reason: err.Error()})
		}
		if id == "" {
			continue
		}
		qty := max(p.Quantity, 0)
		if i, ok := at[id]; ok {
			contents[i].Quantity += qty
			continue
		}
		if len(contents) == MaxContentIDs {
			opt.dropped(Drop{Field: "contents", Reason: ErrContentIDs.Error()})
			break
		}
		c := event.Content{ID: id, Quantity: qty}
		if strings.TrimSpace(p.Price) != "" {
			price, err := ParseValue(p.Price)
			if err != nil {
				opt.dropped(Drop{Field: "item_price", Reason: err.Error()})
			}
			c.ItemPrice = price
		}
		if t := strings.TrimSpace(p.Title); len(t) <= maxTitleLength && printable(t) {
			c.Title = t
		}
		at[id] = len(contents)
		contents = append(contents, c)
		ids = append(ids, id)
	}
	return contents, ids, items
}

// Conversion is what a conversion rule's placeholders or a browser event posted to collect
// resolved to, as text.
type Conversion struct {
	// Name is our event name (Purchase, Lead, …).
	Name string
	// ID is the event ID the browser already fired the event with (collect, or the cookie that
	// carries a conversion's ID across a redirect); empty to derive one.
	ID string
	// Value, Currency and OrderID are as the placeholders gave them; empty when unknown.
	Value, Currency, OrderID string
	// ContentIDs are SKUs; a value may hold several separated by commas.
	ContentIDs []string
}

// Request is what the handler knows of the request an event happened on.
type Request struct {
	// URL is the page's absolute URL, scheme and host included (a server request's r.URL has
	// neither: build it from the host and the request URI). Referrer is the Referer header.
	URL, Referrer string
	// IP is the client IP as Caddy determined it (trusted_proxies honoured); UserAgent the
	// User-Agent header; AcceptLanguage the Accept-Language header, read for the locale.
	IP, UserAgent, AcceptLanguage string
	// VisitorID is the _capi_vid in force, for external_id when there is no visitor record.
	VisitorID string
	// Consent is what the consent rules decided for this request.
	Consent event.Consent
	// HTML reports that the response is an HTML page: ApplyIdentity makes its URL the visitor's last
	// page URL, the source URL of conversions that later arrive by postback.
	HTML bool
}

// FromRequest makes the event of a conversion rule or a browser event on a request of the site.
//
// The event ID is c.ID when the browser already fired the event with one, else EventID(opt.IDKey,
// name, order ID) when there is an order ID, else random. Without opt.IDKey the error wraps
// ErrNoIDKey. The value must be a non-negative decimal, the
// currency an ISO 4217 code, content IDs bounded (see CleanContentIDs); what fails is left out and
// returned as drops, and the event is still made. An invalid name or browser event ID is an error:
// there is no event to speak of. The drops are returned, not told to opt.Dropped. v is the visitor record after this request's ApplyIdentity, nil
// when there is none; its identity and profiles are the event's, with this request's IP, user agent
// and locale, which are the freshest.
func FromRequest(c Conversion, v *store.Visitor, req Request, opt Options) (event.Event, []Drop, error) {
	name := strings.TrimSpace(c.Name)
	if name == "" || len(name) > maxEventNameLength || !printable(name) {
		return event.Event{}, nil, fmt.Errorf("conversion: %w", ErrEventName)
	}
	if opt.IDKey.IsZero() {
		return event.Event{}, nil, fmt.Errorf("conversion: %s: %w", name, ErrNoIDKey)
	}
	var drops []Drop
	opt.Dropped = func(d Drop) { drops = append(drops, d) }
	e := event.Event{Name: name, Time: opt.now(), ActionSource: event.ActionWebsite, Consent: req.Consent}
	e.OrderID, e.ID = orderAndEventID(name, c.OrderID, opt)
	if c.ID != "" {
		if !ValidEventID(c.ID) {
			return event.Event{}, nil, fmt.Errorf("conversion: %s: %w", name, ErrEventID)
		}
		e.ID = c.ID
	}
	e.Value, e.Currency = moneyFields(c.Value, c.Currency, opt)
	var idDrops []Drop
	e.ContentIDs, idDrops = CleanContentIDs(c.ContentIDs)
	opt.dropped(idDrops...)
	if len(e.ContentIDs) > 0 {
		e.ContentType = "product"
	}
	e.SourceURL = pageURLOrDrop("source_url", req.URL, opt)
	e.Referrer = pageURLOrDrop("referrer", req.Referrer, opt)

	if v != nil {
		e.User = visitorIdentity(v)
		e.User.Meta, e.User.TikTok, e.User.Google = v.User.Meta, v.User.TikTok, v.User.Google
	} else {
		e.User.ExternalID = signal.ExternalID(validVisitorID(req.VisitorID))
	}
	if ip := cleanIP(req.IP, opt); ip != "" {
		e.User.IP = ip
	}
	if ua := cleanUserAgent(req.UserAgent, opt); ua != "" {
		e.User.UserAgent = ua
	}
	if loc := ParseLocale(req.AcceptLanguage); loc != "" {
		e.User.Locale = loc
	}
	return e, drops, nil
}

func validVisitorID(id string) string {
	if identity.ValidVisitorID(id) {
		return id
	}
	return ""
}

func pageURLOrDrop(field, raw string, opt Options) string {
	u, err := PageURL(raw)
	if err != nil {
		opt.dropped(Drop{Field: field, Reason: err.Error()})
	}
	return u
}

// cleanIP returns an IP address in canonical form, or "" (with a drop) for anything else.
func cleanIP(raw string, opt Options) string {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return ""
	}
	a, err := netip.ParseAddr(raw)
	if err != nil || a.Zone() != "" {
		opt.dropped(Drop{Field: "ip", Reason: "not an IP address"})
		return ""
	}
	return a.Unmap().String()
}

// cleanUserAgent returns a user agent fit to send, or "" (with a drop) for one too long or with
// control characters.
func cleanUserAgent(raw string, opt Options) string {
	ua := strings.TrimSpace(raw)
	if ua != "" && (len(ua) > maxUserAgentLength || !printable(ua)) {
		opt.dropped(Drop{Field: "user_agent", Reason: "longer than 1024 bytes or not printable UTF-8"})
		return ""
	}
	return ua
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl)
}
