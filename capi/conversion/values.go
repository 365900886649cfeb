package conversion

import (
	"errors"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/currency"
	"golang.org/x/text/language"

	"github.com/caddy-capi/caddy-capi/capi/platform"
	"github.com/caddy-capi/caddy-capi/capi/signal"
)

// Drop records a value left out of an event or a visitor record: the field (value, currency,
// content_ids, email, …) and why, never the value itself. It is signal's Drop, so the drops of
// customer data and of event fields read alike.
type Drop = signal.Drop

// Errors that say why an outside value was refused; they never carry the value.
var (
	ErrValue      = errors.New("not a non-negative decimal number such as 49.90")
	ErrCurrency   = errors.New("not an ISO 4217 currency code such as USD")
	ErrContentID  = errors.New("content ID too long, not UTF-8 or with control characters")
	ErrContentIDs = errors.New("more content IDs than an event carries")
	ErrSourceURL  = errors.New("not an absolute http or https URL of at most 2048 bytes")
)

// Bounds on values from outside.
const (
	// maxValueLength bounds a monetary value: 15 integer digits (a quadrillion) and cents fit.
	maxValueLength = 24
	// MaxContentIDs is how many content IDs an event keeps; a cart with more lists its first ones.
	MaxContentIDs = 50
	// MaxContentIDLength bounds one content ID (a SKU, a product or variant ID).
	MaxContentIDLength = 100
	// maxURLLength bounds a page URL kept in a visitor record and sent as event_source_url.
	maxURLLength = 2048
	// maxAcceptLanguage bounds the header read for the locale; real ones are under 100 bytes.
	maxAcceptLanguage = 256
)

// ParseValue reads a monetary value as a conversion rule's placeholder or a browser gives it and
// returns it in canonical form: surrounding whitespace and a leading '+' removed, leading zeros of
// the integer part removed ("007.50" → "7.50", ".5" → "0.5", "5." → "5"), the fraction kept digit
// for digit so cents stay exact. Negative values, thousands separators and decimal commas are
// refused: "1,234" means 1234 in one locale and 1.234 in another, and a guess would misreport
// revenue.
func ParseValue(s string) (string, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "+")
	// Leading zeros may make the input longer than its canonical form; bound both.
	if s == "" || len(s) > 2*maxValueLength {
		return "", ErrValue
	}
	intPart, frac, hasFrac := strings.Cut(s, ".")
	if !allDigits(intPart) || !allDigits(frac) || intPart == "" && frac == "" {
		return "", ErrValue
	}
	intPart = strings.TrimLeft(intPart, "0")
	if intPart == "" {
		intPart = "0"
	}
	out := intPart
	if hasFrac && frac != "" {
		out += "." + frac
	}
	if len(out) > maxValueLength {
		return "", ErrValue
	}
	// The platform senders read values with DecimalNumber; never hand them one it refuses.
	if _, err := platform.DecimalNumber(out); err != nil {
		return "", ErrValue
	}
	return out, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ParseCurrency reads an ISO 4217 currency code in any case and returns it upper-cased. Only codes
// ISO lists are accepted (golang.org/x/text/currency's table); XXX, "no currency", is refused.
func ParseCurrency(s string) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) != 3 {
		return "", ErrCurrency
	}
	u, err := currency.ParseISO(s)
	if err != nil || u == (currency.Unit{}) {
		return "", ErrCurrency
	}
	return u.String(), nil
}

// CleanContentIDs reads content IDs (SKUs) from a conversion rule or a browser event. A value may
// hold several IDs separated by commas, as a single placeholder like {http.request.uri.query.sku}
// gives them. Each ID is trimmed; empty ones are skipped silently; IDs longer than
// MaxContentIDLength, with control characters or invalid UTF-8 are dropped; repeats are kept once;
// past MaxContentIDs the rest are dropped. Each kind of drop is reported once.
func CleanContentIDs(values []string) ([]string, []Drop) {
	var (
		ids   []string
		drops []Drop
		seen  = make(map[string]bool)
	)
	drop := func(err error) {
		d := Drop{Field: "content_ids", Reason: err.Error()}
		for _, x := range drops {
			if x == d {
				return
			}
		}
		drops = append(drops, d)
	}
	for _, v := range values {
		for raw := range strings.SplitSeq(v, ",") {
			id, err := cleanContentID(raw)
			switch {
			case err != nil:
				drop(err)
				continue
			case id == "" || seen[id]:
				continue
			case len(ids) == MaxContentIDs:
				drop(ErrContentIDs)
				return ids, drops
			}
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids, drops
}

// cleanContentID trims one content ID; "" when it is empty, an error when it is too long or holds
// invalid UTF-8 or control characters.
func cleanContentID(raw string) (string, error) {
	id := strings.TrimSpace(raw)
	if len(id) > MaxContentIDLength || !utf8.ValidString(id) || strings.ContainsFunc(id, unicode.IsControl) {
		return "", ErrContentID
	}
	return id, nil
}

// ParseLocale returns the visitor's preferred language from an Accept-Language header as a BCP 47
// tag ("en-US"), the form TikTok's locale takes; "" when the header names none.
func ParseLocale(acceptLanguage string) string {
	if acceptLanguage == "" || len(acceptLanguage) > maxAcceptLanguage {
		return ""
	}
	tags, _, err := language.ParseAcceptLanguage(acceptLanguage)
	if err != nil {
		return ""
	}
	for _, t := range tags {
		// "*" parses as "mul" (multiple languages): no preference, like "und".
		if s := t.String(); s != "und" && s != "mul" {
			return s
		}
	}
	return ""
}

// PageURL returns the form of a page URL that may be kept in a visitor record and sent as an
// event's source URL: an absolute http or https URL without user info or fragment, and without the
// query parameters whose value holds an '@' — a form that submits by GET puts the buyer's email in
// the thank-you page's URL, and plaintext personal data must reach neither the disk nor a platform.
// A URL longer than 2048 bytes loses its query; one that is still too long, or is not an absolute
// http(s) URL, is refused.
func PageURL(raw string) (string, error) {
	if raw == "" {
		return "", nil
	}
	if !utf8.ValidString(raw) {
		return "", ErrSourceURL
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return "", ErrSourceURL
	}
	u.User = nil
	u.Fragment, u.RawFragment = "", ""
	if strings.Contains(u.RawQuery, "@") || strings.Contains(u.RawQuery, "%40") {
		u.RawQuery = withoutEmails(u.RawQuery)
	}
	out := u.String()
	if len(out) > maxURLLength {
		u.RawQuery, u.ForceQuery = "", false
		out = u.String()
	}
	if len(out) > maxURLLength {
		return "", ErrSourceURL
	}
	return out, nil
}

// withoutEmails removes from a raw query the parameters whose decoded value contains an '@'. The
// other parameters keep their raw form and order (url.Values.Encode would reorder them).
func withoutEmails(rawQuery string) string {
	var kept []string
	for part := range strings.SplitSeq(rawQuery, "&") {
		_, value, _ := strings.Cut(part, "=")
		decoded, err := url.QueryUnescape(value)
		if err != nil || strings.Contains(decoded, "@") {
			continue
		}
		kept = append(kept, part)
	}
	return strings.Join(kept, "&")
}
