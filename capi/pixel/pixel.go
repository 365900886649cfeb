// Package pixel builds the browser tags the handler injects into HTML pages: the Meta Pixel, the
// TikTok pixel and the Google tag, each from its vendor's own base code and loaded from the vendor's
// host, firing the page's PageView and conversions with the same event IDs the server sends, plus
// `window.capi` (the page's event ID and track(name, data), which fires the pixels and posts the same
// event to the collect endpoint). It also adapts a response's Content-Security-Policy so the snippet
// may run.
//
// It owns the snippet's text and its escaping: every value reaches the page as a JSON literal with
// <, >, &, U+2028 and U+2029 escaped, so no value can end the script or a string. It must not decide
// whether or where to inject (the inject package does), read cookies, or see personal data: the
// only identity it writes is the hashed visitor ID.
package pixel

import (
	"encoding/json"
	"maps"
	"regexp"
	"strings"

	"github.com/caddy-capi/caddy-capi/capi/tiktok"
)

// Config says which tags to inject. A platform with an empty ID is left out entirely.
type Config struct {
	// MetaPixelID is the Meta Pixel (dataset) ID.
	MetaPixelID string
	// TikTokPixelCode is the TikTok pixel code (sdkid).
	TikTokPixelCode string
	// GoogleTagID is the Google tag ID, AW-XXXXXXXXX.
	GoogleTagID string
	// GoogleConversions maps our event name to the conversion label of its Google Ads conversion
	// action; an event without a label fires no Google conversion.
	GoogleConversions map[string]string
	// TikTokEventNames maps our event names to TikTok's where they differ (tiktok.EventName gives
	// the defaults), so the pixel and the Events API use one name and TikTok deduplicates them.
	TikTokEventNames map[string]string
	// CollectPath is the first-party endpoint window.capi.track posts to (e.g. /capi/collect);
	// empty means track fires the pixels only.
	CollectPath string
}

// Page is what one HTML response fires.
type Page struct {
	// EventID is the page's PageView event ID.
	EventID string
	// ExternalID is the lowercase hex SHA-256 of the visitor ID.
	ExternalID string
	// LimitedDataUse asks for Meta LDU, TikTok limited_data_use and Google's ad_user_data denied
	// (Global Privacy Control).
	LimitedDataUse bool
	// Conversions are the events this response completes (the thank-you page's Purchase), fired
	// with the event IDs the server sent them with.
	Conversions []Conversion
}

// Conversion is one conversion the page fires.
type Conversion struct {
	// Name is our event name (Meta's vocabulary).
	Name string
	// EventID is the ID the server copy carries.
	EventID string
	// Value is a decimal string ("49.90"); a value that is not a plain decimal is left out.
	Value string
	// Currency is the ISO 4217 code.
	Currency string
	// OrderID becomes Meta's order_id, TikTok's order_id and Google's transaction_id.
	OrderID string
	// ContentIDs are the SKUs concerned.
	ContentIDs []string
}

// The vendors' hosts, used by the base codes and by AllowVendors.
const (
	metaScriptURL   = "https://connect.facebook.net/en_US/fbevents.js"
	tiktokScriptURL = "https://analytics.tiktok.com/i18n/pixel/events.js"
	googleScriptURL = "https://www.googletagmanager.com/gtag/js"
)

// runtime is the one JSON literal the script reads all its values from.
type runtime struct {
	EventID     string           `json:"eventId"`
	ExternalID  string           `json:"externalId,omitempty"`
	LDU         bool             `json:"ldu,omitempty"`
	Collect     string           `json:"collect,omitempty"`
	Meta        *metaRuntime     `json:"meta,omitempty"`
	TikTok      *tiktokRuntime   `json:"tiktok,omitempty"`
	Google      *googleRuntime   `json:"google,omitempty"`
	Conversions []conversionJSON `json:"conversions,omitempty"`
}

type metaRuntime struct {
	Pixel string `json:"pixel"`
}

type tiktokRuntime struct {
	Code string `json:"code"`
	// Names maps our names to TikTok's where they differ, for window.capi.track.
	Names map[string]string `json:"names,omitempty"`
}

type googleRuntime struct {
	ID     string            `json:"id"`
	Labels map[string]string `json:"labels,omitempty"`
}

type conversionJSON struct {
	Name    string         `json:"name"`
	EventID string         `json:"eventId"`
	Data    conversionData `json:"data"`
}

// conversionData uses Meta's custom_data names; the script derives TikTok's and Google's from it,
// as it does for window.capi.track's data.
type conversionData struct {
	Value      json.Number `json:"value,omitempty"`
	Currency   string      `json:"currency,omitempty"`
	ContentIDs []string    `json:"content_ids,omitempty"`
	OrderID    string      `json:"order_id,omitempty"`
}

// decimal is a JSON number without exponent: what a canonical money value looks like.
var decimal = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?$`)

// Snippet returns the `<script>` element to insert into the page's head, or nil when cfg configures
// no platform and no collect path. nonce, when it is a valid CSP nonce, becomes the element's nonce
// attribute; an invalid one is dropped (AllowScript then allows the script by its hash).
//
// Run more than once in a page (or after the page's own tags), the script stays idempotent: a second
// copy does nothing; the vendors' stubs are created only when absent, so no vendor script loads
// twice; a pixel that the page itself initialized earlier with the same ID is not initialized again
// and its PageView is not repeated (the page's own base code fired one). The page's own code that
// runs after ours cannot be stopped from initializing the pixel again: the vendors' libraries warn
// about a duplicate ID and carry on.
//
// Snippet compiles cfg on every call; a handler that serves many pages with one Config keeps the
// Template of Compile and calls its Snippet instead, which writes the same bytes.
func Snippet(cfg Config, page Page, nonce string) []byte {
	return Compile(cfg).Snippet(page, nonce)
}

// Template is a Config's snippet with everything that is the same on every page rendered once: the
// base codes of the configured platforms and the configuration part of the JSON literal (pixel IDs,
// TikTok's event names, Google's conversion labels, the collect path). Its Snippet splices in only
// what belongs to the page. A Template is immutable and safe for concurrent use.
type Template struct {
	cfg Config
	// script is the script's text up to the JSON literal it is called with.
	script string
	// fixed is the literal's configuration members, each preceded by a comma, as encoding/json
	// writes them after the page's members; valid for a page without conversions, which cannot add
	// TikTok names.
	fixed []byte
}

// Compile renders the parts of cfg's snippet that do not change between pages. It returns nil when
// cfg configures no platform and no collect path; a nil Template's Snippet returns nil.
func Compile(cfg Config) *Template {
	if cfg.MetaPixelID == "" && cfg.TikTokPixelCode == "" && cfg.GoogleTagID == "" && cfg.CollectPath == "" {
		return nil
	}
	cfg.GoogleConversions = maps.Clone(cfg.GoogleConversions)
	cfg.TikTokEventNames = maps.Clone(cfg.TikTokEventNames)
	t := &Template{cfg: cfg}

	var s strings.Builder
	s.WriteString(jsHead)
	if cfg.MetaPixelID != "" {
		s.WriteString(jsMeta)
	}
	if cfg.TikTokPixelCode != "" {
		s.WriteString(jsTikTok)
	}
	if cfg.GoogleTagID != "" {
		s.WriteString(jsGoogle)
	}
	s.WriteString(jsFire)
	if cfg.MetaPixelID != "" {
		s.WriteString(jsFireMeta)
	}
	if cfg.TikTokPixelCode != "" {
		s.WriteString(jsFireTikTok)
	}
	if cfg.GoogleTagID != "" {
		s.WriteString(jsFireGoogle)
	}
	s.WriteString(jsTail)
	t.script = s.String()

	// The configuration members of runtime, in its field order, without the page's.
	rt := configRuntime(cfg, nil)
	members, err := json.Marshal(struct {
		Collect string         `json:"collect,omitempty"`
		Meta    *metaRuntime   `json:"meta,omitempty"`
		TikTok  *tiktokRuntime `json:"tiktok,omitempty"`
		Google  *googleRuntime `json:"google,omitempty"`
	}{rt.Collect, rt.Meta, rt.TikTok, rt.Google})
	if err != nil {
		panic("pixel: encode snippet configuration: " + err.Error()) // strings and maps of strings only
	}
	if inner := members[1 : len(members)-1]; len(inner) > 0 {
		t.fixed = append([]byte{','}, inner...)
	}
	return t
}

// configRuntime is the runtime literal's configuration part for a page firing convs.
func configRuntime(cfg Config, convs []Conversion) runtime {
	rt := runtime{Collect: cfg.CollectPath}
	if cfg.MetaPixelID != "" {
		rt.Meta = &metaRuntime{Pixel: cfg.MetaPixelID}
	}
	if cfg.TikTokPixelCode != "" {
		rt.TikTok = &tiktokRuntime{Code: cfg.TikTokPixelCode, Names: tiktokNames(cfg.TikTokEventNames, convs)}
	}
	if cfg.GoogleTagID != "" {
		rt.Google = &googleRuntime{ID: cfg.GoogleTagID, Labels: nonEmpty(cfg.GoogleConversions)}
	}
	return rt
}

// Snippet returns the page's `<script>` element, as the package's Snippet does for the Template's
// Config.
func (t *Template) Snippet(page Page, nonce string) []byte {
	if t == nil {
		return nil
	}
	const open, close = "<script", ");\n</script>"
	withNonce := ValidNonce(nonce) // a valid nonce is base64: it needs no escaping in the attribute
	n := len(open) + len(` nonce=""`) + len(nonce) + 2 + len(t.script) + len(close) +
		len(`{"eventId":"","externalId":"","ldu":true}`) + len(page.EventID) + len(page.ExternalID) + len(t.fixed)
	if len(page.Conversions) > 0 {
		n += 256 * len(page.Conversions)
	}
	b := make([]byte, 0, n)
	b = append(b, open...)
	if withNonce {
		b = append(b, ` nonce="`...)
		b = append(b, nonce...)
		b = append(b, '"')
	}
	b = append(b, ">\n"...)
	b = append(b, t.script...)
	if len(page.Conversions) > 0 {
		b = append(b, t.pageLiteral(page)...)
	} else {
		// The literal runtime's encoding would give, spliced: the page's members, then the fixed ones.
		b = append(b, `{"eventId":`...)
		b = appendJSONString(b, page.EventID)
		if page.ExternalID != "" {
			b = append(b, `,"externalId":`...)
			b = appendJSONString(b, page.ExternalID)
		}
		if page.LimitedDataUse {
			b = append(b, `,"ldu":true`...)
		}
		b = append(b, t.fixed...)
		b = append(b, '}')
	}
	b = append(b, close...)
	return b
}

// pageLiteral encodes the whole runtime literal for a page, the way every page was once rendered;
// a page with conversions goes this way because their names can add TikTok names to the
// configuration part.
func (t *Template) pageLiteral(page Page) []byte {
	rt := configRuntime(t.cfg, page.Conversions)
	rt.EventID, rt.ExternalID, rt.LDU = page.EventID, page.ExternalID, page.LimitedDataUse
	for _, c := range page.Conversions {
		d := conversionData{Currency: c.Currency, ContentIDs: c.ContentIDs, OrderID: c.OrderID}
		if decimal.MatchString(c.Value) {
			d.Value = json.Number(c.Value)
		}
		rt.Conversions = append(rt.Conversions, conversionJSON{Name: c.Name, EventID: c.EventID, Data: d})
	}
	// encoding/json escapes <, >, & and U+2028/U+2029 and replaces invalid UTF-8, so the literal can
	// neither close the script element nor end a JavaScript line or string early.
	literal, err := json.Marshal(rt)
	if err != nil {
		// Only strings, booleans, maps of strings and validated numbers go in: unreachable.
		panic("pixel: encode snippet values: " + err.Error())
	}
	return literal
}

// appendJSONString appends s as encoding/json encodes it (HTML-safe: <, >, & escaped; U+2028,
// U+2029 escaped; invalid UTF-8 replaced). The event and external IDs are plain ASCII and are
// copied as they are; anything else goes through encoding/json, so the escaping is exactly its.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, err := json.Marshal(s)
			if err != nil {
				panic("pixel: encode a string: " + err.Error()) // a string always encodes
			}
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// tiktokNames resolves TikTok's name for every name the page can fire by configuration or by
// default, keeping only those that differ from ours; the script uses ours otherwise.
func tiktokNames(mapping map[string]string, convs []Conversion) map[string]string {
	names := map[string]string{}
	add := func(ours string) {
		if theirs := tiktok.EventName(ours, mapping); theirs != ours {
			names[ours] = theirs
		}
	}
	for ours := range mapping {
		add(ours)
	}
	for _, c := range convs {
		add(c.Name)
	}
	add("PageView")
	if len(names) == 0 {
		return nil
	}
	return names
}

func nonEmpty(m map[string]string) map[string]string {
	var out map[string]string
	for k, v := range m {
		if v == "" {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}

// ValidNonce reports whether s can be a CSP nonce we echo into the page: 1 to 256 characters of
// base64 or base64url (CSP's base64-value grammar), so it needs no escaping in any context.
func ValidNonce(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' ||
			r == '+' || r == '/' || r == '=' || r == '_' || r == '-')
	}) < 0
}
