package conversion

import (
	"errors"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/currency"
	"golang.org/x/text/language"

	"github.com/caddy-capi/caddy-capi/capi/identity"
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
// event's source URL or referrer: an absolute http or https URL without user info or fragment, and
// without the personal data a buyer's browser puts into URLs. A checkout form that submits by GET
// puts every field into the thank-you page's URL and the next page's Referer, and plaintext personal
// data must reach neither the disk nor a platform. PageURL removes:
//
//   - a query parameter whose name, or any segment of a bracketed or dotted name
//     ("checkout[shipping_address][zip]", "customer.email", "billing_first_name"), names a personal
//     field or a credential (see personalNames); names are compared case-insensitively and without
//     separators, so "First-Name", "firstName" and "first_name" are one name;
//   - a query parameter whose name or value holds an '@' (an email address);
//   - a query parameter whose name or value looks like a phone number: an optional '+' and 7 to 15
//     digits grouped by spaces, dashes, dots or parentheses ("+1 555 010 0999", "(555) 010-0999");
//     a plain number ("1001", "39912345678901", "12345.67") is an ID or a price and stays;
//   - the path segments that hold an '@': each becomes "redacted", so the page stays recognizable.
//
// Names and values are judged in every form up to three percent-decodings deep, so "%2540" is an
// '@'; a parameter that carries several pieces separated by ';' goes if any piece would. Click IDs
// (fbclid, gclid, gbraid, wbraid, ttclid) and utm_ parameters are kept, since attribution needs
// them: no name in the table matches them, and the phone rule does not apply to their values, which
// the ad platforms and marketers set ("utm_campaign=2024-11-29"); only an '@' removes them. The
// parameters kept keep their raw form and order. A URL longer than 2048 bytes loses its query; one
// that is still too long, or is not an absolute http(s) URL, is refused. PageURL is idempotent: its
// output, fed back, comes out unchanged.
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
	if holdsAt(u.Host) {
		// url.Parse lets a host carry %25 and non-ASCII escapes; no real shop hides an '@' behind them.
		return "", ErrSourceURL
	}
	u.User = nil
	u.Fragment, u.RawFragment = "", ""
	if err := redactPath(u); err != nil {
		return "", ErrSourceURL
	}
	if u.RawQuery != "" {
		u.RawQuery = withoutPersonalData(u.RawQuery)
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

// redactedSegment replaces a path segment that holds an email address.
const redactedSegment = "redacted"

// maxDecodings is how many times a name, value or path segment is percent-decoded in search of
// personal data: a value escaped once more by a redirect or a tracking link ("%2540") is still read.
const maxDecodings = 3

// redactPath replaces each path segment that holds an '@' with redactedSegment. It works on the
// escaped path, so "a%2Fb" stays one segment and the other segments keep their raw form.
func redactPath(u *url.URL) error {
	escaped := u.EscapedPath()
	if !strings.ContainsAny(escaped, "@%") {
		return nil // an '@' is there raw or behind an escape
	}
	segs := strings.Split(escaped, "/")
	changed := false
	for i, seg := range segs {
		if holdsAt(seg) {
			segs[i] = redactedSegment
			changed = true
		}
	}
	if !changed {
		return nil
	}
	rawPath := strings.Join(segs, "/")
	path, err := url.PathUnescape(rawPath)
	if err != nil {
		return err
	}
	u.Path, u.RawPath = path, rawPath
	return nil
}

// withoutPersonalData removes from a raw query the parameters personalParam finds. The others keep
// their raw form and order (url.Values.Encode would reorder and re-escape them). A query with
// nothing to remove is returned as it is, without allocating.
func withoutPersonalData(rawQuery string) string {
	var b strings.Builder
	dropped := false
	kept := 0 // parameters kept so far
	offset := 0
	for part := range strings.SplitSeq(rawQuery, "&") {
		start := offset
		offset += len(part) + 1
		if personalParam(part) {
			if !dropped {
				dropped = true
				if start > 0 {
					b.WriteString(rawQuery[:start-1])
				}
			}
			continue
		}
		if dropped {
			if kept > 0 {
				b.WriteByte('&')
			}
			b.WriteString(part)
		}
		kept++
	}
	if !dropped {
		return rawQuery
	}
	return b.String()
}

// personalParam reports whether one raw query parameter ("name=value") carries personal data. Some
// servers also split parameters at ';', so each ';'-separated piece is judged too.
func personalParam(part string) bool {
	if personalPiece(part) {
		return true
	}
	if strings.IndexByte(part, ';') < 0 {
		return false
	}
	for piece := range strings.SplitSeq(part, ";") {
		if personalPiece(piece) {
			return true
		}
	}
	return false
}

func personalPiece(piece string) bool {
	name, value, _ := strings.Cut(piece, "=")
	if holdsAt(piece) || personalName(name) {
		return true
	}
	return !attributionParam(name) && (phoneLike(name) || phoneLike(value))
}

// attributionParam reports whether a parameter is a click ID or a utm_ parameter, whose values the
// ad platforms and marketers set: a campaign named "2024-11-29" is not a phone number.
func attributionParam(name string) bool {
	switch {
	case strings.EqualFold(name, identity.ParamFBCLID), strings.EqualFold(name, identity.ParamGCLID),
		strings.EqualFold(name, identity.ParamGBRAID), strings.EqualFold(name, identity.ParamWBRAID),
		strings.EqualFold(name, identity.ParamTTCLID):
		return true
	}
	return len(name) > 4 && strings.EqualFold(name[:4], "utm_")
}

// holdsAt reports whether s holds an '@' raw or behind up to maxDecodings percent-encodings.
func holdsAt(s string) bool {
	return anyDecoding(s, false, func(s string) bool { return strings.IndexByte(s, '@') >= 0 })
}

// anyDecoding reports whether found holds for s or for any of its first maxDecodings
// percent-decodings; it stops early once decoding changes nothing.
func anyDecoding(s string, plusIsSpace bool, found func(string) bool) bool {
	for depth := 0; ; depth++ {
		if found(s) {
			return true
		}
		if depth == maxDecodings {
			return false
		}
		next := percentDecode(s, plusIsSpace)
		if next == s {
			return false
		}
		s = next
	}
}

// personalNames are the query parameter names that carry personal data or credentials, in compact
// form: lower case, letters and digits only, so "e-mail", "E_Mail" and "eMail" are all "email".
// The table covers the form field names package capture recognizes (its names.go, held in step by
// TestPageURLDropsEveryNameCaptureRecognizes) and adds what a page URL must not carry although
// capture has no use for it: second address lines, free-text notes, passwords, payment cards,
// government IDs, tokens and keys (a WooCommerce order-received URL's key opens the order, address
// included).
var personalNames = compactSet(
	// email
	"email", "e_mail", "mail", "email_address", "emails", "user_email",
	// phone
	"phone", "tel", "telephone", "phone_number", "mobile", "mobile_phone", "mobile_number",
	"mobile_phone_number", "cell", "cellphone", "cell_phone", "contact_number", "phones",
	"phone_numbers", "fax", "whatsapp",
	// names
	"first_name", "fname", "f_name", "given_name", "forename",
	"last_name", "lname", "l_name", "family_name", "surname",
	"name", "full_name", "your_name", "display_name", "nickname", "username", "company",
	// birth date and gender
	"dob", "birthday", "birthdate", "birth_date", "date_of_birth", "bday", "gender", "sex",
	// address
	"address", "street", "street_address", "address_line", "line1", "line2", "street1", "street2",
	"house_number", "apartment", "apt", "city", "town", "locality",
	"state", "province", "province_code", "region", "state_code", "county",
	"zip", "zipcode", "zip_code", "postcode", "post_code", "postal_code", "postal",
	"country", "country_code", "country_id", "ip", "ip_address",
	// free text the buyer types at checkout
	"order_comments", "comments", "comment", "note", "notes", "message",
	// government IDs, payment cards and credentials
	"ssn", "password", "pass", "passwd", "pwd",
	"card", "card_number", "cc", "cc_number", "ccnum", "cvv", "cvc", "card_cvc",
	"token", "cart_token", "access_token", "id_token", "refresh_token", "auth", "secret",
	"client_secret", "api_key", "key", "session", "session_id", "sid",
)

// contextPrefixes are stripped once from a name segment before the lookup, as package capture does:
// "billing_first_name", "shippingCity" and "customerEmail" are first_name, city and email.
var contextPrefixes = []string{"billing", "shipping", "delivery", "customer", "contact", "user",
	"buyer", "payer", "account", "checkout", "your", "bill", "ship"}

func compactSet(names ...string) map[string]bool {
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[strings.ReplaceAll(n, "_", "")] = true
	}
	return set
}

// personalName reports whether a raw parameter name, in any of its decodings, has a segment that
// names personal data. Segments are split at '[', ']' and '.'; a segment of digits alone (an array
// index) names nothing.
func personalName(raw string) bool {
	return anyDecoding(raw, true, namesPersonalData)
}

func namesPersonalData(name string) bool {
	var buf [64]byte
	seg := buf[:0]
	letters, long := false, false
	check := func() bool {
		found := letters && !long && personalSegment(seg)
		seg, letters, long = buf[:0], false, false
		return found
	}
	for _, r := range name {
		switch {
		case r == '[' || r == ']' || r == '.':
			if check() {
				return true
			}
		case 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || 'A' <= r && r <= 'Z',
			r >= utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			if 'A' <= r && r <= 'Z' {
				r += 'a' - 'A'
			} else if r >= utf8.RuneSelf {
				// Some letters lower to ASCII (the Kelvin sign, a dotted capital I), as they do in
				// package capture's matching.
				r = unicode.ToLower(r)
			}
			letters = letters || !('0' <= r && r <= '9')
			if len(seg)+utf8.RuneLen(r) > len(buf) {
				long = true // longer than any name in the table
				continue
			}
			seg = utf8.AppendRune(seg, r)
		}
	}
	return check()
}

// personalSegment looks up one compact segment, as it is and without one context prefix, and each
// of those again without trailing digits ("email2", "address1", "billing_phone2").
func personalSegment(seg []byte) bool {
	lookup := func(s []byte) bool {
		if personalNames[string(s)] {
			return true
		}
		for _, p := range contextPrefixes {
			if len(s) > len(p) && string(s[:len(p)]) == p && personalNames[string(s[len(p):])] {
				return true
			}
		}
		return false
	}
	if lookup(seg) {
		return true
	}
	n := len(seg)
	for n > 0 && '0' <= seg[n-1] && seg[n-1] <= '9' {
		n--
	}
	return n < len(seg) && n > 0 && lookup(seg[:n])
}

// phoneLike reports whether a raw name or value, in any of its decodings, looks like a phone
// number. Both readings of '+' count: a space, as forms encode it, and a plus, as people type it.
func phoneLike(raw string) bool {
	return anyDecoding(raw, true, phoneNumber) || anyDecoding(raw, false, phoneNumber)
}

// phoneNumber is the rule for a value that looks like a phone number: after surrounding spaces are
// trimmed, an optional '+' and then 7 to 15 digits (E.164 has at most 15) among spaces, dashes,
// dots and parentheses, and nothing else. A plain number — digits alone, or with one decimal point
// — is taken for what URLs mostly carry: an order, product or variant ID, a timestamp, a price. So
// "?order=1001", "?variant=39912345678901" and "?total=12345.67" stay, while "+15550100999",
// "+1 555 010 0999", "(555) 010-0999" and "555.010.0999" go, and so do dates like "1990-01-02",
// which may be a birth date. A phone number written as bare digits in a parameter whose name says
// nothing ("?p=5550100999") is kept: it cannot be told from an ID.
func phoneNumber(s string) bool {
	s = strings.TrimSpace(s)
	digits, separators, dots := 0, 0, 0
	plus := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case '0' <= c && c <= '9':
			digits++
		case c == '+' && !plus && digits == 0:
			plus = true
		case c == ' ' || c == '-' || c == '(' || c == ')':
			separators++
		case c == '.':
			dots++
		default:
			return false
		}
	}
	if digits < 7 || digits > 15 {
		return false
	}
	return plus || separators > 0 || dots > 1
}

// percentDecode decodes the valid %XX escapes of s and, when plusIsSpace, '+' as a space. Unlike
// url.QueryUnescape it leaves a stray '%' as it is rather than failing, so "%40%zz" still shows
// its '@'. It returns s itself when there is nothing to decode.
func percentDecode(s string, plusIsSpace bool) string {
	i := strings.IndexByte(s, '%')
	if plusIsSpace {
		if j := strings.IndexByte(s, '+'); j >= 0 && (i < 0 || j < i) {
			i = j
		}
	}
	if i < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c == '%' && i+2 < len(s) && ishex(s[i+1]) && ishex(s[i+2]):
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		case c == '+' && plusIsSpace:
			b = append(b, ' ')
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
