package conversion

import (
	"bytes"
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
// without the personal data or secret access tokens a buyer's browser puts into URLs. A checkout
// form that submits by GET puts every field into the thank-you page's URL and the next page's
// Referer, and an order status, checkout or password reset URL carries the token that opens the
// buyer's order or account to whoever holds it; neither may reach the disk or a platform. PageURL
// removes:
//
//   - a query parameter whose name, or any segment of a bracketed or dotted name
//     ("checkout[shipping_address][zip]", "customer.email", "billing_first_name"), names a personal
//     field or a credential (see personalNames), or ends in one ("reset_password_token",
//     "client_secret", "new_password"); names are compared case-insensitively and without
//     separators, so "First-Name", "firstName" and "first_name" are one name;
//   - a query parameter whose name suggests a token without always holding one (code, hash, cart,
//     checkout, order, a session ID, a name ending in key: see tokenWords) and whose value looks
//     like a token by the path rule below: "?order=1001" and "?code=SUMMER20" stay,
//     "?cart=<32 hex>" goes;
//   - a query parameter whose name or value holds an '@' (an email address);
//   - a query parameter whose name or value looks like a phone number: an optional '+' and 7 to 15
//     digits grouped by spaces, dashes, dots or parentheses ("+1 555 010 0999", "(555) 010-0999");
//     a plain number ("1001", "39912345678901", "12345.67") is an ID or a price and stays;
//   - the path segments that hold an '@' or look like a secret token (see tokenLike): each becomes
//     "redacted", so the page stays recognizable: "/12345678/orders/<32 hex>/authenticate",
//     "/checkouts/cn/<token>/thank-you" and "/account/reset/<id>/<token>" keep their shape, IDs
//     and words. A UUID is redacted too: it is the dashed form of 32 hex digits, and a random one
//     is as good a key to a guest's order as any token.
//
// Names, values and path segments are judged in every form up to three percent-decodings deep, so
// "%2540" is an '@'; a parameter that carries several pieces separated by ';' goes if any piece
// would. Click IDs (fbclid, gclid, gbraid, wbraid, ttclid) and utm_ parameters are kept with their
// raw value, since attribution needs them: they are long random strings, which is why the token
// rule judges only parameters named for a token and never the query at large, and the phone rule
// does not apply to their values, which the ad platforms and marketers set
// ("utm_campaign=2024-11-29"); only an '@' removes them. The parameters kept keep their raw form and
// order. A URL longer than 2048 bytes loses its query; one that is still too long, or is not an
// absolute http(s) URL, is refused. PageURL is idempotent: its output, fed back, comes out
// unchanged.
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

// redactedSegment replaces a path segment that holds an email address or a secret token.
const redactedSegment = "redacted"

// maxDecodings is how many times a name, value or path segment is percent-decoded in search of
// personal data: a value escaped once more by a redirect or a tracking link ("%2540") is still read.
const maxDecodings = 3

// redactPath replaces each path segment that holds an '@' or a secret token with redactedSegment.
// It works on the escaped path, so "a%2Fb" stays one segment and the other segments keep their raw
// form. A path with nothing to replace is left as it is, without allocating.
func redactPath(u *url.URL) error {
	escaped := u.EscapedPath()
	var rawPath []byte // escaped with its replacements, once there is one
	copied := 0        // escaped[:copied] is in rawPath
	for start := 0; start < len(escaped); {
		end := strings.IndexByte(escaped[start:], '/')
		if end < 0 {
			end = len(escaped)
		} else {
			end += start
		}
		if seg := escaped[start:end]; holdsAt(seg) || secretToken(seg, false) {
			if rawPath == nil {
				rawPath = make([]byte, 0, len(escaped)+len(redactedSegment))
			}
			rawPath = append(rawPath, escaped[copied:start]...)
			rawPath = append(rawPath, redactedSegment...)
			copied = end
		}
		start = end + 1
	}
	if rawPath == nil {
		return nil
	}
	raw := string(append(rawPath, escaped[copied:]...))
	path, err := url.PathUnescape(raw)
	if err != nil {
		return err
	}
	u.Path, u.RawPath = path, raw
	return nil
}

// Lengths in the token rule (see tokenLike).
const (
	// minHexToken is the shortest run of hex digits taken for a token: 64 random bits. Shopify's
	// order status and checkout tokens have 32.
	minHexToken = 16
	// minToken is the shortest base62 or base64url string taken for a token: about 119 random bits,
	// and longer than the product codes, SKUs and short links that mix letters and digits.
	minToken = 20
	// maxIDDigits is the length of the largest unsigned 64-bit number; a longer number is no
	// record ID but a code.
	maxIDDigits = 20
	// uuidHexDigits is how many hex digits a UUID has.
	uuidHexDigits = 32
)

// secretToken reports whether a path segment or a query value, raw or in any of its first
// maxDecodings percent-decodings, looks like a secret token.
func secretToken(s string, plusIsSpace bool) bool {
	return anyDecoding(s, plusIsSpace, tokenLike)
}

// tokenLike is the rule for a secret access token in a path segment or a query value. Random
// tokens are told from the handles, slugs, IDs and codes around them by length and by mixing
// what words keep apart; the string is read as pieces, its runs of ASCII letters and digits
// ("blue-cotton-t-shirt-2024" has five). It is a token when
//
//   - a piece is at least 16 hex digits and not all decimal ("0f1e2d3c4b5a6978…", Shopify's order
//     status and checkout tokens, Laravel's reset tokens, an account activation's
//     "<32 hex>-<timestamp>");
//   - a piece is a number longer than 20 digits, longer than any 64-bit record ID;
//   - pieces of hex digits joined by dashes or underscores hold 32 hex digits with letters and digits
//     among them: a UUID, also inside a longer segment ("order-123e4567-e89b-12d3-a456-426614174000");
//   - a piece of 20 or more characters does not read as words (see readsAsWords): letters and
//     digits together ("hWN4tNK8MzT3t1aFGWwDWxAD", "Z2NwLXVzLWNlbnRyYWwx…", a JWT's parts), or mixed
//     case that is not words run together;
//   - the whole string is 20 or more characters of base64url's alphabet ('.', '~' and '=' too) and a
//     piece of it does not read as words, as a base64url token cut by its own '-' and '_' does.
//
// So "/products/blue-cotton-t-shirt-2024", "/collections/summer-sale", "/orders/1001", "/12345678/",
// "/2024/11/29/", "/p/AB12", "SKU-1001-XL", "/products/iphone-15-pro-max-256gb" and
// "/Account/ForgotPasswordConfirmation" stay. What it gets wrong, knowingly: a slug of 20 or more
// characters with letters and digits and no dashes ("tshirtsummer2024edition"), a long lower-case hex
// product code and a MongoDB ObjectID (24 hex) are redacted though no secret; a token shorter than
// these lengths, one in a single case without digits, or one cut by dashes into short one-case
// groups ("k3j4h5-g6f7d8-s9a0p1-o2i3u4") is kept.
func tokenLike(s string) bool {
	if len(s) < minHexToken {
		return false // shorter than every kind of token below; most segments end here
	}
	unreserved := true // s holds only base64url's alphabet, '.', '~' and '='
	wordy := true      // every piece so far reads as words
	// The current run of hex pieces joined by dashes or underscores: its hex digits, and whether it
	// has letters and digits among them.
	dashedHex, hexLetter, hexDigit := 0, false, false
	for i := 0; i < len(s); {
		if !isAlnum(s[i]) {
			switch s[i] {
			case '-', '_': // joins the groups of a UUID or of hex
			case '.', '~', '=':
				dashedHex, hexLetter, hexDigit = 0, false, false
			default:
				unreserved = false
				dashedHex, hexLetter, hexDigit = 0, false, false
			}
			i++
			continue
		}
		start := i
		var lower, upper, digit, nonHex bool
		for ; i < len(s) && isAlnum(s[i]); i++ {
			switch c := s[i]; {
			case 'a' <= c && c <= 'z':
				lower, nonHex = true, nonHex || c > 'f'
			case 'A' <= c && c <= 'Z':
				upper, nonHex = true, nonHex || c > 'F'
			default:
				digit = true
			}
		}
		piece := s[start:i]
		letters := lower || upper
		switch {
		case !nonHex && letters && len(piece) >= minHexToken:
			return true
		case !letters && len(piece) > maxIDDigits:
			return true
		}
		if nonHex {
			dashedHex, hexLetter, hexDigit = 0, false, false
		} else {
			dashedHex += len(piece)
			hexLetter, hexDigit = hexLetter || letters, hexDigit || digit
			if dashedHex >= uuidHexDigits && hexLetter && hexDigit {
				return true
			}
		}
		if !readsAsWords(piece, lower, upper, digit) {
			if len(piece) >= minToken {
				return true
			}
			wordy = false
		}
	}
	return len(s) >= minToken && unreserved && !wordy
}

// readsAsWords reports whether a piece of letters and digits (lower, upper and digit say which it
// has) reads as a word, a number, a code or words run together rather than as random characters.
// A piece in one case reads so unless it is long and mixes letters and digits: "summer", "2024",
// "256gb", "SKU1001XL" and "DONAUDAMPFSCHIFFFAHRT" do, a 20-character "k3j4h5g6f7d8s9a0p1o2" does
// not. A piece in mixed case must be words run together (see camelWords).
func readsAsWords(piece string, lower, upper, digit bool) bool {
	long := len(piece) >= minToken
	if !lower || !upper {
		return !(long && digit && (lower || upper))
	}
	return camelWords(piece, long)
}

// camelWords reports whether a mixed-case piece is words run together, each a capital followed by
// lower-case letters and holding a vowel (y counts), the first maybe without its capital ("iPhone",
// "ForgotPasswordConfirmation", "ContactUsThankYouPage"). A short piece may have digits after a word
// ("iPhone15ProMax", "AirMax90"); a long one (strict) must be letters alone. Random mixed case
// breaks the pattern within a few letters, with two capitals in a row or a word without a vowel;
// so does a name like "McDonalds", which a long segment then loses.
func camelWords(piece string, strict bool) bool {
	for i := 0; i < len(piece); {
		start := i
		if isUpper(piece[i]) {
			i++
		} else if i > 0 {
			return false // after digits, a word starts with its capital
		}
		lowers := i
		for i < len(piece) && 'a' <= piece[i] && piece[i] <= 'z' {
			i++
		}
		digits := i
		for !strict && i < len(piece) && '0' <= piece[i] && piece[i] <= '9' {
			i++
		}
		switch {
		case digits == lowers && (digits == i || start == lowers):
			return false // neither letters after the capital nor digits after a lone capital
		case digits > lowers && !strings.ContainsAny(piece[start:digits], "aeiouyAEIOUY"):
			return false
		}
	}
	return true
}

func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
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
	switch {
	case holdsAt(piece):
		return true
	case attributionParam(name):
		return false
	}
	return personalName(name) || phoneLike(name) || phoneLike(value) || tokenName(name) && secretToken(value, true)
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
	"signature", "sig", "nonce", "otp", "order_key", "reset_key", "activation_key",
	// the login name a WordPress password reset link carries next to its key
	"login",
)

// credentialSuffixes end the names of parameters that hold nothing but a credential, whatever
// comes before: "reset_password_token", "checkout_token", "client_secret", "new_password".
var credentialSuffixes = []string{"token", "secret", "password", "passwd", "signature", "nonce"}

// tokenWords end the names of parameters that may hold a token or something harmless: an order's
// key or its number, a cart's token or its ID, an OAuth code or a discount code, a session or a
// content hash. Their values are judged by the token rule (tokenLike) rather than dropped by name:
// "?order=1001" and "?code=SUMMER20" stay, "?cart=<32 hex>" goes. A trailing "id" is ignored, so
// "cart_id", "checkout_id" and "PHPSESSID" are judged too.
var tokenWords = []string{"key", "hash", "sig", "code", "auth", "session", "sess", "checkout", "cart",
	"order"}

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
// names personal data or a credential. Segments are split at '[', ']' and '.'; a segment of digits
// alone (an array index) names nothing.
func personalName(raw string) bool {
	return anyDecoding(raw, true, func(name string) bool { return anySegment(name, personalSegment) })
}

// tokenName reports whether a raw parameter name, in any of its decodings, has a segment that ends
// in one of tokenWords.
func tokenName(raw string) bool {
	return anyDecoding(raw, true, func(name string) bool { return anySegment(name, tokenSegment) })
}

// segmentTest says which test anySegment applies to a name's segments. It is a constant rather than
// a func value so that the compiler sees the segment buffer stay on the stack: a func value it
// cannot see into makes the buffer escape, one allocation per parameter name.
type segmentTest int

const (
	personalSegment segmentTest = iota
	tokenSegment
)

// anySegment reports whether test holds for a segment of a parameter name, in compact form.
func anySegment(name string, test segmentTest) bool {
	var buf [64]byte
	seg := buf[:0]
	letters, long := false, false
	check := func() bool {
		ok := letters && !long && test.holds(seg)
		seg, letters, long = buf[:0], false, false
		return ok
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

func (test segmentTest) holds(seg []byte) bool {
	if test == tokenSegment {
		return namesToken(seg)
	}
	return namesPersonalData(seg)
}

// namesPersonalData looks up one compact segment, as it is and without one context prefix, and each
// of those again without trailing digits ("email2", "address1", "billing_phone2"); a segment that
// ends in a credential suffix names a credential.
func namesPersonalData(seg []byte) bool {
	lookup := func(s []byte) bool {
		if personalNames[string(s)] {
			return true
		}
		for _, suffix := range credentialSuffixes {
			if len(s) >= len(suffix) && string(s[len(s)-len(suffix):]) == suffix {
				return true
			}
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

// namesToken reports whether one compact segment, without trailing digits and a trailing "id",
// ends in one of tokenWords.
func namesToken(seg []byte) bool {
	seg = bytes.TrimRight(seg, "0123456789")
	if len(seg) > len("id") {
		seg = bytes.TrimSuffix(seg, []byte("id"))
	}
	for _, w := range tokenWords {
		if len(seg) >= len(w) && string(seg[len(seg)-len(w):]) == w {
			return true
		}
	}
	return false
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
