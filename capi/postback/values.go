package postback

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// object is a decoded JSON object read tolerantly: payloads grow fields and change types over
// versions, so a missing or differently typed field reads as empty instead of failing the whole
// notification.
type object map[string]any

// decodeObject decodes a JSON object with numbers kept as their literal text. The error names only
// the byte offset, never content.
func decodeObject(body []byte) (object, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("invalid JSON at byte %d", se.Offset)
		}
		return nil, errors.New("body is not a JSON object")
	}
	if m == nil {
		return nil, errors.New("body is not a JSON object")
	}
	return m, nil
}

// obj returns the object under key, or nil.
func (o object) obj(key string) object {
	m, _ := o[key].(map[string]any)
	return m
}

// arr returns the array under key, or nil.
func (o object) arr(key string) []any {
	a, _ := o[key].([]any)
	return a
}

// str returns the scalar under key as text: strings as they are, numbers as their JSON literal,
// booleans as true/false; "" for anything else.
func (o object) str(key string) string {
	return scalarText(o[key])
}

// first returns the first non-empty str among keys.
func (o object) first(keys ...string) string {
	for _, k := range keys {
		if s := strings.TrimSpace(o.str(k)); s != "" {
			return s
		}
	}
	return ""
}

func (o object) bool(key string) bool {
	switch v := o[key].(type) {
	case bool:
		return v
	case string:
		b, _ := strconv.ParseBool(v)
		return b
	case json.Number:
		return v.String() == "1"
	}
	return false
}

func scalarText(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	}
	return ""
}

// Decimal returns s as a canonical decimal string: no exponent, no leading zeros, at least two
// fraction digits and no trailing zeros beyond them ("19.9" → "19.90", "1e2" → "100.00",
// "0.125" → "0.125"). It accepts JSON number syntax with an optional leading "+" and surrounding
// spaces, and reports false for anything else, including exponents beyond ±30.
func Decimal(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 64 {
		return "", false
	}
	neg := false
	switch s[0] {
	case '-':
		neg, s = true, s[1:]
	case '+':
		s = s[1:]
	}
	mant, expText, hasExp := strings.Cut(strings.ToLower(s), "e")
	intPart, fracPart, _ := strings.Cut(mant, ".")
	if intPart == "" && fracPart == "" || !allDigits(intPart) || !allDigits(fracPart) {
		return "", false
	}
	exp := 0
	if hasExp {
		e, err := strconv.Atoi(expText)
		if err != nil || e < -30 || e > 30 {
			return "", false
		}
		exp = e
	}
	digits := intPart + fracPart
	point := len(intPart) + exp
	if point < 0 {
		digits = strings.Repeat("0", -point) + digits
		point = 0
	}
	if point > len(digits) {
		digits += strings.Repeat("0", point-len(digits))
	}
	whole := strings.TrimLeft(digits[:point], "0")
	if whole == "" {
		whole = "0"
	}
	frac := strings.TrimRight(digits[point:], "0")
	for len(frac) < 2 {
		frac += "0"
	}
	if neg && (whole != "0" || strings.Trim(frac, "0") != "") {
		whole = "-" + whole
	}
	return whole + "." + frac, true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// currencyCode returns an ISO 4217 code in upper case, or "" when s is not three letters.
func currencyCode(s string) string {
	s = strings.TrimSpace(s)
	if len(s) != 3 {
		return ""
	}
	for i := 0; i < 3; i++ {
		c := s[i] | 0x20
		if c < 'a' || c > 'z' {
			return ""
		}
	}
	return strings.ToUpper(s)
}

// timeLayouts are the forms sources send timestamps in: RFC 3339 (ClickBank, Shopify), basic ISO
// 8601 (a third-party parser claims ClickBank 7.0 switched to it, unconfirmed), and WooCommerce's
// zone-less *_gmt fields, read as UTC.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05-0700",
	"20060102T150405Z0700",
	"20060102T150405-0700",
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05",
}

// parseTime reads a timestamp tolerantly; zero when none of the layouts fits.
func parseTime(s string) time.Time {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 64 {
		return time.Time{}
	}
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

// unixTime reads integer epoch seconds; zero when s is not one.
func unixTime(s string) time.Time {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 || n > 1<<40 {
		return time.Time{}
	}
	return time.Unix(n, 0).UTC()
}

// clickID reports whether v may be kept as a click or tracking ID: at most 500 characters from the
// URL's unreserved set, as DESIGN §4 requires of every click ID we store.
func clickID(v string) bool {
	if v == "" || len(v) > 500 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '~' || c == '-') {
			return false
		}
	}
	return true
}

// trackingKeys are parameter names whose value may be our visitor ID: ours, the common tracker
// click-ID names, and ClickBank's tid.
var trackingKeys = map[string]bool{
	"capi_vid": true, "_capi_vid": true, "visitor_id": true, "vid": true,
	"clickid": true, "click_id": true, "cid": true, "subid": true, "sub_id": true, "aff_sub": true,
	"tid": true, "extclid": true,
}

// add records one named value found in a notification (a query parameter of landing_site, a note
// attribute, a metadata key, a vendor variable) if the name is a join key, dropping values that are
// not plausible IDs.
func (j *Join) add(name, value string) {
	value = strings.TrimSpace(value)
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "_fbc" || name == "fbc" || name == "_fbp" || name == "fbp" {
		// fb.1.<ms>.<id>: the unreserved set covers it.
		if !clickID(value) {
			return
		}
		if strings.HasSuffix(name, "fbc") {
			setOnce(&j.FBC, value)
		} else {
			setOnce(&j.FBP, value)
		}
		return
	}
	if !clickID(value) {
		return
	}
	switch name {
	case "fbclid":
		setOnce(&j.FBCLID, value)
	case "gclid":
		setOnce(&j.GCLID, value)
	case "gbraid":
		setOnce(&j.GBRAID, value)
	case "wbraid":
		setOnce(&j.WBRAID, value)
	case "ttclid":
		setOnce(&j.TTCLID, value)
	default:
		if trackingKeys[name] {
			j.addTracking(value)
		}
	}
}

// addTracking adds a visitor ID candidate, lower-cased, once.
func (j *Join) addTracking(v string) {
	v = strings.ToLower(strings.TrimSpace(v))
	if !clickID(v) || len(v) > 100 {
		return
	}
	for _, have := range j.TrackingIDs {
		if have == v {
			return
		}
	}
	j.TrackingIDs = append(j.TrackingIDs, v)
}

// addObject adds the join keys among an object's scalar members (Stripe metadata, ClickBank vendor
// variables), in key order so that the result does not depend on map iteration.
func (j *Join) addObject(o object) {
	for _, k := range slices.Sorted(maps.Keys(o)) {
		j.add(k, scalarText(o[k]))
	}
}

// addValues adds the join keys among query-style values, in key order, skipping one name (a token).
func (j *Join) addValues(q url.Values, skip string) {
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if k == skip {
			continue
		}
		for _, v := range q[k] {
			j.add(k, v)
		}
	}
}

// addQuery adds the join keys in a query string or a URL with one ("/products/x?fbclid=…").
func (j *Join) addQuery(raw string) {
	if _, q, ok := strings.Cut(raw, "?"); ok {
		raw = q
	}
	raw, _, _ = strings.Cut(raw, "#")
	q, _ := url.ParseQuery(raw) // keeps the good pairs past a bad one
	j.addValues(q, "")
}

func setOnce(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}

// addEmail and addPhone add a value once; the signal package normalizes them.
func addEmail(c *Customer, v string) {
	v = strings.TrimSpace(v)
	if v == "" || !strings.Contains(v, "@") {
		return
	}
	for _, have := range c.Emails {
		if strings.EqualFold(have, v) {
			return
		}
	}
	c.Emails = append(c.Emails, v)
}

func addPhone(c *Customer, v string) {
	v = strings.TrimSpace(v)
	if v == "" {
		return
	}
	for _, have := range c.Phones {
		if have == v {
			return
		}
	}
	c.Phones = append(c.Phones, v)
}

// fillAddress copies an address's fields into c where c has none yet, so that a billing address
// read first wins over a shipping address read after it.
func fillAddress(c *Customer, first, last, street, city, state, zip, country string) {
	setOnce(&c.FirstName, strings.TrimSpace(first))
	setOnce(&c.LastName, strings.TrimSpace(last))
	setOnce(&c.Street, strings.TrimSpace(street))
	setOnce(&c.City, strings.TrimSpace(city))
	setOnce(&c.State, strings.TrimSpace(state))
	setOnce(&c.Zip, strings.TrimSpace(zip))
	setOnce(&c.Country, strings.TrimSpace(country))
}

// quantity reads a positive item count; 0 when unknown.
func quantity(s string) int {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 || n > 1_000_000 {
		return 0
	}
	return n
}

// price reads a unit price as a canonical decimal; "" when it is not one.
func price(s string) string {
	d, _ := Decimal(s)
	return d
}

// malformed wraps ErrMalformed with the source's name and a reason that holds no body content.
func malformed(source, reason string) error {
	return fmt.Errorf("postback: %s: %w: %s", source, ErrMalformed, reason)
}

// unauthorized wraps ErrUnauthorized with the source's name and a reason that holds no secret.
func unauthorized(source, reason string) error {
	return fmt.Errorf("postback: %s: %w: %s", source, ErrUnauthorized, reason)
}
