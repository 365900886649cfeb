package caddymodule

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/net/publicsuffix"
	"golang.org/x/text/currency"
	"golang.org/x/text/language"

	"github.com/caddy-capi/caddy-capi/capi/capture"
	"github.com/caddy-capi/caddy-capi/capi/postback"
)

// The checks below are shared by the Caddyfile parser (which prefixes file and line) and by
// Provision (which prefixes the directive path, for JSON configs and resolved placeholders). Their
// messages say what was expected and never repeat a secret's value.

var (
	// secretPlaceholder is a whole-value placeholder that Caddy's global replacer resolves at
	// provision time: an environment variable or a file's content.
	secretPlaceholder = regexp.MustCompile(`^\{(env\.[A-Za-z_][A-Za-z0-9_]*|file\.[^{}\s]+)\}$`)
	eventName         = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,49}$`)
	tiktokPixelCode   = regexp.MustCompile(`^[A-Za-z0-9]{8,40}$`)
	googleTagID       = regexp.MustCompile(`^AW-[0-9]{6,15}$`)
	googleLabel       = regexp.MustCompile(`^[A-Za-z0-9_-]{1,100}$`)
	metaAPIVersion    = regexp.MustCompile(`^v[0-9]{1,3}\.0$`)
	googleAPIVersion  = regexp.MustCompile(`^v[0-9]{1,3}$`)
	testEventCode     = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	clickBankSecret   = regexp.MustCompile(`^[0-9A-Z]{1,16}$`)
	// clickBankVendor is an account nickname as ClickBank's notifications carry it. ClickBank's
	// own rules for nicknames were not found (spec/postbacks.md names none); letters and digits up
	// to 32 cover the published test vector's TestVendorNickname and refuse what cannot be one.
	clickBankVendor = regexp.MustCompile(`^[A-Za-z0-9]{1,32}$`)
)

// isSecretPlaceholder reports whether v is exactly one {env.NAME} or {file.PATH} placeholder.
func isSecretPlaceholder(v string) bool { return secretPlaceholder.MatchString(v) }

// hasPlaceholder reports whether v carries a placeholder that is resolved later (at provision time
// or per request), so that its literal form cannot be checked now.
func hasPlaceholder(v string) bool { return strings.ContainsAny(v, "{}") }

// checkSecret accepts a literal secret or a single well-formed {env.NAME} / {file.PATH}
// placeholder, and refuses what looks like a mistyped placeholder.
func checkSecret(v string) error {
	if v == "" {
		return errors.New("is empty; expected the secret or a placeholder such as {env.NAME} (an unset {$NAME} becomes empty)")
	}
	if isSecretPlaceholder(v) {
		return nil
	}
	if strings.ContainsAny(v, "{}") {
		return errors.New("has a malformed placeholder; expected the whole value to be {env.NAME} or {file.PATH}, with both braces")
	}
	if strings.HasPrefix(v, "$") || strings.HasPrefix(v, "env.") || strings.HasPrefix(v, "file.") {
		return errors.New("looks like a placeholder without its braces; expected {env.NAME} or {file.PATH}")
	}
	if strings.ContainsFunc(v, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
		return errors.New("contains spaces or control characters; expected the secret exactly as issued")
	}
	return nil
}

// digitsOnly removes the dashes people copy from the Google Ads UI ("123-456-7890") and checks
// that only digits remain.
func digitsOnly(v string, minLen, maxLen int) (string, error) {
	d := strings.ReplaceAll(v, "-", "")
	if d == "" || strings.ContainsFunc(d, func(r rune) bool { return r < '0' || r > '9' }) {
		return "", errors.New("expected digits only (dashes are allowed and removed)")
	}
	if len(d) < minLen || len(d) > maxLen {
		if minLen == maxLen {
			return "", fmt.Errorf("expected %d digits, got %d", minLen, len(d))
		}
		return "", fmt.Errorf("expected %d to %d digits, got %d", minLen, maxLen, len(d))
	}
	return d, nil
}

func checkMetaPixelID(v string) (string, error) {
	if strings.Contains(v, "-") {
		return "", errors.New("expected the numeric pixel ID, digits only")
	}
	if _, err := digitsOnly(v, 5, 20); err != nil {
		return "", errors.New("expected the numeric pixel ID, 5 to 20 digits")
	}
	return v, nil
}

func checkGoogleCustomerID(v string) (string, error) { return digitsOnly(v, 10, 10) }

func checkGoogleActionID(v string) (string, error) {
	if strings.Contains(v, "-") {
		return "", errors.New("expected the numeric conversion action ID, digits only")
	}
	if _, err := digitsOnly(v, 1, 20); err != nil {
		return "", errors.New("expected the numeric conversion action ID, 1 to 20 digits")
	}
	return v, nil
}

func checkTikTokPixelCode(v string) error {
	if !tiktokPixelCode.MatchString(v) {
		return errors.New("expected the pixel code, 8 to 40 letters and digits (such as C4ABCDEFGH1234567890)")
	}
	return nil
}

func checkGoogleTagID(v string) error {
	if !googleTagID.MatchString(v) {
		return errors.New("expected the Google Ads tag ID, AW- followed by digits (such as AW-123456789)")
	}
	return nil
}

func checkGoogleLabel(v string) error {
	if !googleLabel.MatchString(v) {
		return errors.New("expected the conversion label, letters, digits, '-' and '_'")
	}
	return nil
}

func checkMetaAPIVersion(v string) error {
	if !metaAPIVersion.MatchString(v) {
		return errors.New("expected a Graph API version such as v25.0")
	}
	return nil
}

func checkGoogleAPIVersion(v string) error {
	if !googleAPIVersion.MatchString(v) {
		return errors.New("expected a Google Ads API version such as v24")
	}
	return nil
}

func checkTestEventCode(v string) error {
	if !testEventCode.MatchString(v) {
		return errors.New("expected the code shown by the platform's test tool, letters and digits (such as TEST12345)")
	}
	return nil
}

// checkEndpoint accepts an absolute http or https URL without query or fragment.
func checkEndpoint(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("expected an absolute http:// or https:// URL without query, such as https://example.com")
	}
	return nil
}

func checkEventName(v string) error {
	if !eventName.MatchString(v) {
		return errors.New("expected an event name: a letter, then up to 49 letters, digits or '_' (such as Purchase)")
	}
	return nil
}

// checkCurrency accepts an ISO 4217 code in any case and returns it in upper case, the form every
// platform accepts.
func checkCurrency(v string) (string, error) {
	if len(v) != 3 {
		return "", errors.New("expected a 3-letter ISO 4217 currency code such as USD")
	}
	u, err := currency.ParseISO(v)
	if err != nil {
		return "", errors.New("expected a 3-letter ISO 4217 currency code such as USD")
	}
	return u.String(), nil
}

// checkCountry accepts an ISO 3166-1 alpha-2 country code in any case and returns it in upper case,
// the form ISO writes it; whoever hashes it lowercases it first.
func checkCountry(v string) (string, error) {
	const want = "expected an ISO 3166-1 alpha-2 country code such as US or DE"
	if len(v) != 2 {
		return "", errors.New(want)
	}
	r, err := language.ParseRegion(v)
	if err != nil || !r.IsCountry() {
		return "", errors.New(want)
	}
	// UK is only reserved in ISO 3166-1 (the United Kingdom's code is GB), but x/text accepts it as a
	// country; the platforms would not.
	if r.String() == "UK" {
		return "", errors.New("expected GB for the United Kingdom: UK is not an ISO 3166-1 alpha-2 code")
	}
	return r.String(), nil
}

// checkValue accepts a non-negative decimal amount.
func checkValue(v string) error {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || math.IsNaN(f) || f > 1e15 {
		return errors.New("expected a non-negative decimal amount such as 49.90, or a placeholder")
	}
	return nil
}

// checkPathPattern accepts a request path or a path glob as the path matcher takes it.
func checkPathPattern(v string) error {
	if !strings.HasPrefix(v, "/") && !strings.HasPrefix(v, "*") {
		return errors.New("expected a path pattern starting with / (such as /thank-you or /checkout/*)")
	}
	if _, err := path.Match(v, "/"); err != nil {
		return errors.New("expected a valid path pattern; check the brackets")
	}
	return nil
}

// checkExactPath accepts a request path with no wildcard, for endpoints the handler answers.
func checkExactPath(v string) error {
	if !strings.HasPrefix(v, "/") || strings.ContainsAny(v, "*?[]{} ") {
		return errors.New("expected an exact path starting with / (no wildcards), such as /capi/collect")
	}
	return nil
}

// checkLinkTarget accepts an absolute http(s) URL, placeholders allowed in the path and query.
func checkLinkTarget(v string) error {
	u, err := url.Parse(strings.NewReplacer("{", "", "}", "").Replace(v))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("expected an absolute http:// or https:// target URL")
	}
	return nil
}

func checkMethod(v string) error {
	switch v {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return nil
	}
	return errors.New("expected one of GET, POST, PUT, PATCH, DELETE (in upper case)")
}

// checkCookieDomain accepts a registrable domain or a subdomain of one; a public suffix such as
// co.uk would be refused by every browser.
func checkCookieDomain(v string) (string, error) {
	d := strings.TrimPrefix(strings.ToLower(v), ".")
	if d == "" || strings.ContainsAny(d, ":/ ") || !strings.Contains(d, ".") {
		return "", errors.New("expected a domain such as example.com (no scheme, port or path)")
	}
	if _, err := publicsuffix.EffectiveTLDPlusOne(d); err != nil {
		return "", errors.New("expected a registrable domain such as example.com, not a public suffix")
	}
	return d, nil
}

func checkCookieName(v string) error {
	if v == "" || strings.ContainsFunc(v, func(r rune) bool {
		return r <= 0x20 || r >= 0x7f || strings.ContainsRune(`()<>@,;:\"/[]?={}`, r)
	}) {
		return errors.New("expected a cookie name (letters, digits and - _ . ! # $ % & ' * + ^ ` | ~)")
	}
	return nil
}

func checkRegexp(v string) error {
	if _, err := regexp.Compile(v); err != nil {
		return fmt.Errorf("expected a regular expression in RE2 syntax: %v", err)
	}
	return nil
}

// checkPostbackSecret checks what can be known of a literal secret for its source.
func checkPostbackSecret(source, v string) error {
	if err := checkSecret(v); err != nil {
		return err
	}
	if isSecretPlaceholder(v) {
		return nil
	}
	switch source {
	case "clickbank":
		if !clickBankSecret.MatchString(v) {
			return errors.New("expected the ClickBank secret key: up to 16 capital letters and digits")
		}
	case "stripe":
		if !strings.HasPrefix(v, "whsec_") {
			return errors.New("expected the Stripe endpoint signing secret, which starts with whsec_")
		}
	}
	return nil
}

// checkCaptureFields checks a site's extra capture field names: our field names as keys, form
// field names that can match a posted name as values.
func checkCaptureFields(fields map[string][]string) error {
	if err := capture.Fields(fields).Validate(); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "capture: "))
	}
	return nil
}

// checkPostbackSettings refuses a setting the source does not take and a value of the wrong form,
// and returns the settings as the source compares them (currency and topics normalized). field
// names the setting at fault.
func checkPostbackSettings(source string, s PostbackSettings) (out PostbackSettings, field string, err error) {
	if s.Vendor != "" {
		if source != "clickbank" {
			return s, "vendor", fmt.Errorf("only the clickbank source takes a vendor; %s notifications carry no ClickBank account nickname", source)
		}
		if !clickBankVendor.MatchString(s.Vendor) {
			return s, "vendor", errors.New("expected the ClickBank account nickname, letters and digits (such as mystore)")
		}
	}
	if s.Currency != "" {
		if source != "jvzoo" && source != "generic" {
			return s, "currency", fmt.Errorf("only the jvzoo and generic sources take a currency; %s notifications carry their own", source)
		}
		if s.Currency, err = checkCurrency(s.Currency); err != nil {
			return s, "currency", err
		}
	}
	if len(s.Topics) > 0 {
		if source != "shopify" {
			return s, "topics", fmt.Errorf("only the shopify source takes topics; %s does not send Shopify webhook topics", source)
		}
		if s.Topics, err = postback.CheckShopifyTopics(s.Topics); err != nil {
			return s, "topics", errors.New(strings.TrimPrefix(err.Error(), "postback: shopify: "))
		}
	}
	return s, "", nil
}

// postbackSources are the sources the postback directive knows, in the order the docs list them.
var postbackSources = []string{"clickbank", "jvzoo", "shopify", "woocommerce", "stripe", "generic"}

// checkRedisURL accepts a URL that go-redis can dial.
func checkRedisURL(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") {
		return errors.New("expected a redis://, rediss:// or unix:// URL")
	}
	return nil
}
