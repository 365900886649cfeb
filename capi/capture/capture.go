// Package capture recognizes customer fields (email, phone, name, birthday, gender, address) in the
// bodies of form and JSON posts that pass through the proxy on the configured capture paths.
//
// It owns the table of common field names and the decoding of urlencoded, multipart and JSON bodies.
// It reads a copy of the body and never alters it: the handler forwards the original bytes to the
// upstream unchanged. It must not normalize, hash, store or log anything: its output is plaintext as
// received, handed straight to the signal package, which normalizes and hashes it on arrival.
package capture

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net/url"
	"slices"
	"strings"
	"unicode"
)

// Customer is the customer data found in one submission, plaintext as received.
//
// It mirrors the signal package's Customer field for field and in the same order (that package
// normalizes and hashes), so the glue converts with signal.Customer(c); it is defined here because
// signal was not yet committed when this package was written.
type Customer struct {
	Emails      []string
	Phones      []string
	FirstName   string
	LastName    string
	DateOfBirth string
	Gender      string
	Street      string
	City        string
	State       string
	Zip         string
	Country     string
}

// IsZero reports whether no customer field was found.
func (c Customer) IsZero() bool {
	return len(c.Emails) == 0 && len(c.Phones) == 0 && c.FirstName == "" && c.LastName == "" &&
		c.DateOfBirth == "" && c.Gender == "" && c.Street == "" && c.City == "" && c.State == "" &&
		c.Zip == "" && c.Country == ""
}

// Submission is what Extract recognized in one body.
type Submission struct {
	Customer Customer
	// CartToken is a shop cart token posted with the form (Shopify's cart token), which joins a later
	// order webhook to this visitor.
	CartToken string
}

// Our field names, the keys of Fields.
const (
	Email       = "email"
	Phone       = "phone"
	FirstName   = "first_name"
	LastName    = "last_name"
	FullName    = "full_name" // split into first and last name when those are not posted separately
	DateOfBirth = "date_of_birth"
	Gender      = "gender"
	Street      = "street"
	City        = "city"
	State       = "state"
	Zip         = "zip"
	Country     = "country"
	CartToken   = "cart_token"
)

// fieldNames are our field names in the order people read a form, which is also the order extra
// names are resolved in.
var fieldNames = []string{Email, Phone, FirstName, LastName, FullName, DateOfBirth, Gender, Street, City, State, Zip, Country, CartToken}

// FieldNames returns our field names, the valid keys of Fields.
func FieldNames() []string { return slices.Clone(fieldNames) }

// maxNameLen is the longest posted name considered; add ignores longer ones.
const maxNameLen = 256

// Fields maps one of our field names (Email, Phone, …) to extra form field names that carry it on a
// particular site, in addition to the built-in names, which they take precedence over. An extra
// name matches a posted name exactly (case-insensitively: "contact[mail]", "customer.mail") or its
// last segment ("mail").
type Fields map[string][]string

// Validate reports a key that is not one of our field names, and an extra name that could never
// match (empty, too long, no letter or digit) or that is given for two fields. Its errors name the
// field and the name, which come from the site's configuration, never from a request.
func (f Fields) Validate() error {
	owner := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(f)) {
		if !slices.Contains(fieldNames, k) {
			return fmt.Errorf("capture: unknown field %q; expected one of %s", k, strings.Join(fieldNames, ", "))
		}
		for _, n := range f[k] {
			name := strings.ToLower(strings.TrimSpace(n))
			switch {
			case name == "":
				return fmt.Errorf("capture: field %s: empty extra name", k)
			case len(name) > maxNameLen:
				return fmt.Errorf("capture: field %s: extra name longer than %d bytes", k, maxNameLen)
			case len(segments(name)) == 0:
				return fmt.Errorf("capture: field %s: extra name %q has no letter or digit", k, n)
			}
			if other, ok := owner[name]; ok && other != k {
				return fmt.Errorf("capture: extra name %q is given for both %s and %s; expected one field per name", n, other, k)
			}
			owner[name] = k
		}
	}
	return nil
}

// Errors Extract wraps; callers use errors.Is. Neither ever carries body content.
var (
	// ErrUnsupported: the content type is not a form or JSON; nothing was read.
	ErrUnsupported = errors.New("unsupported content type")
	// ErrMalformed: the body does not parse as its content type says; the Submission holds what was
	// recognized before the problem.
	ErrMalformed = errors.New("malformed body")
)

// Bounds that keep Extract cheap on hostile input; the caller caps the body size.
const (
	maxParts      = 1000     // multipart parts examined
	maxPartValue  = 64 << 10 // bytes read from one non-file part; longer values are skipped
	maxMultiValue = 5        // emails and phones kept
	// maxJSONDepth bounds the nesting of objects and arrays walked. Checkout forms nest a few
	// levels ({"billing":{"address":{…}}}); a deeper body is not a form, and without a bound every
	// level would cost a copy of the key path and, under "name" and "value", a re-read of the rest.
	maxJSONDepth = 16
)

// Extract recognizes customer fields in a form or JSON body. contentType is the request's
// Content-Type header. Recognized are application/x-www-form-urlencoded, multipart/form-data (file
// parts are skipped without being buffered) and JSON (application/json and any +json type, nested
// objects and arrays). body is read, never modified. Extract is safe for any input.
//
// Where a field appears more than once, a value outside any shipping context wins over a shipping
// one, and then the first one posted wins; all distinct emails and phones are kept (up to five).
func Extract(contentType string, body []byte, fields Fields) (Submission, error) {
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		// A bare JSON or form body posted without a parseable type: be no smarter than the upstream.
		return Submission{}, fmt.Errorf("capture: content type: %w", ErrUnsupported)
	}
	c := newCollector(fields)
	switch {
	case mediaType == "application/x-www-form-urlencoded":
		err = c.urlencoded(body)
	case mediaType == "multipart/form-data":
		err = c.multipart(body, params["boundary"])
	case mediaType == "application/json" || mediaType == "text/json" || strings.HasSuffix(mediaType, "+json"):
		err = c.json(body)
	default:
		return Submission{}, fmt.Errorf("capture: %s: %w", mediaType, ErrUnsupported)
	}
	return c.result(), err
}

func (c *collector) urlencoded(body []byte) error {
	// url.ParseQuery keeps going past a bad pair, so the good pairs are still used; the pairs stay in
	// body order so that "first posted wins" holds.
	var bad bool
	for s := string(body); s != ""; {
		var pair string
		pair, s, _ = strings.Cut(s, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		key, err1 := url.QueryUnescape(k)
		val, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			bad = true
			continue
		}
		c.add(key, val)
	}
	if bad {
		return fmt.Errorf("capture: urlencoded: bad percent-encoding: %w", ErrMalformed)
	}
	return nil
}

func (c *collector) multipart(body []byte, boundary string) error {
	if boundary == "" {
		return fmt.Errorf("capture: multipart: no boundary: %w", ErrMalformed)
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	buf := make([]byte, maxPartValue+1)
	for i := 0; i < maxParts; i++ {
		p, err := mr.NextPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("capture: multipart part %d: %w", i, ErrMalformed)
		}
		name := p.FormName()
		if name == "" || p.FileName() != "" || !textPart(p.Header.Get("Content-Type")) {
			// NextPart skips the rest of this part without keeping it.
			continue
		}
		n, err := io.ReadFull(p, buf)
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			c.add(name, string(buf[:n]))
		case err != nil:
			return fmt.Errorf("capture: multipart part %d: %w", i, ErrMalformed)
		default:
			// Longer than any customer field: a pasted document, not a name or an address.
		}
	}
	return nil
}

// textPart reports whether a part's own Content-Type (empty for ordinary fields) is text.
func textPart(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (strings.HasPrefix(mt, "text/") || mt == "application/json")
}

func (c *collector) json(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := c.walk(dec, nil, 0); err != nil {
		if errors.Is(err, errTooDeep) {
			return fmt.Errorf("capture: json nested deeper than %d levels at byte %d: %w", maxJSONDepth, dec.InputOffset(), ErrMalformed)
		}
		return fmt.Errorf("capture: json at byte %d: %w", dec.InputOffset(), ErrMalformed)
	}
	return nil
}

var errTooDeep = errors.New("too deep")

// walk reads one JSON value from the token stream, in document order so that "first posted wins"
// holds, naming each leaf by its path of object keys ("billing", "first_name"); array indexes are
// not names. Objects of the form {"name": …, "value": …}, as form builders post them, are read as
// one field named by "name". depth counts the objects and arrays around the value; past
// maxJSONDepth the walk stops with errTooDeep, keeping the fields recognized before.
func (c *collector) walk(dec *json.Decoder, path []string, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	return c.walkFrom(dec, tok, path, depth)
}

// walkFrom is walk for a value whose first token, tok, is already read.
func (c *collector) walkFrom(dec *json.Decoder, tok json.Token, path []string, depth int) error {
	if d, ok := tok.(json.Delim); ok && (d == '{' || d == '[') {
		if depth++; depth > maxJSONDepth {
			return errTooDeep
		}
	}
	switch tok {
	case json.Delim('{'):
		var pairName, pairValue string
		var pairKeys, keys int
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := k.(string)
			keys++
			if key == "name" || key == "value" {
				// A scalar under these keys is half of a pair; anything else is an ordinary
				// value named by the key.
				v, err := dec.Token()
				if err != nil {
					return err
				}
				if s, ok := scalar(v); ok {
					pairKeys++
					if key == "name" {
						pairName = s
					} else {
						pairValue = s
					}
					continue
				}
				if err := c.walkFrom(dec, v, append(path[:len(path):len(path)], key), depth); err != nil {
					return err
				}
				continue
			}
			if err := c.walk(dec, append(path[:len(path):len(path)], key), depth); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil {
			return err
		}
		if pairKeys == 2 && keys <= 3 && pairName != "" {
			c.add(strings.Join(append(path[:len(path):len(path)], pairName), "."), pairValue)
		} else if len(path) > 0 || pairKeys > 0 {
			if pairName != "" {
				c.add(strings.Join(append(path[:len(path):len(path)], "name"), "."), pairName)
			}
			if pairValue != "" {
				c.add(strings.Join(append(path[:len(path):len(path)], "value"), "."), pairValue)
			}
		}
	case json.Delim('['):
		for dec.More() {
			if err := c.walk(dec, path, depth); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil {
			return err
		}
	default:
		if s, ok := scalar(tok); ok && len(path) > 0 {
			c.add(strings.Join(path, "."), s)
		}
	}
	return nil
}

func scalar(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		// Zip codes and phone numbers are sometimes posted as numbers.
		return v.String(), true
	}
	return "", false
}

// candidate is one recognized value; rank 1 marks a shipping address, which loses to billing.
type candidate struct {
	value string
	rank  int
}

type collector struct {
	extraFull map[string]string // lower-cased full posted name → our field
	extraLeaf map[string]string // lower-cased last segment → our field
	found     map[string][]candidate
	seen      int
}

func newCollector(fields Fields) *collector {
	c := &collector{found: make(map[string][]candidate)}
	if len(fields) > 0 {
		c.extraFull = make(map[string]string)
		c.extraLeaf = make(map[string]string)
		// In fieldNames order, and the first field to claim a name keeps it, so that names shared
		// by two fields (which Validate refuses) still resolve the same way on every request.
		for _, field := range fieldNames {
			for _, n := range fields[field] {
				n = strings.ToLower(strings.TrimSpace(n))
				if _, taken := c.extraFull[n]; !taken {
					c.extraFull[n] = field
				}
				if segs := segments(n); len(segs) > 0 {
					if _, taken := c.extraLeaf[segs[len(segs)-1]]; !taken {
						c.extraLeaf[segs[len(segs)-1]] = field
					}
				}
			}
		}
	}
	return c
}

// add considers one posted name and value.
func (c *collector) add(name, value string) {
	value = strings.TrimSpace(value)
	if value == "" || len(name) > maxNameLen {
		return
	}
	segs := segments(name)
	if len(segs) == 0 {
		return
	}
	field, rank := c.classify(strings.ToLower(name), segs)
	if field == "" || !plausible(field, value) {
		return
	}
	c.found[field] = append(c.found[field], candidate{value: value, rank: rank})
}

// classify names the field a posted name carries, and its rank.
func (c *collector) classify(lowerName string, segs []string) (string, int) {
	rank := 0
	for _, s := range segs[:len(segs)-1] {
		if strings.Contains(s, "shipping") || strings.Contains(s, "delivery") {
			rank = 1
		}
	}
	leaf := segs[len(segs)-1]
	if f, ok := c.extraFull[lowerName]; ok {
		return f, rank
	}
	if f, ok := c.extraLeaf[leaf]; ok {
		return f, rank
	}
	bare := leaf
	for _, p := range contextPrefixes {
		if rest, ok := strings.CutPrefix(leaf, p); ok && rest != "" {
			bare = rest
			if p == "shipping_" || p == "delivery_" {
				rank = 1
			}
			break
		}
	}
	parent := ""
	if len(segs) > 1 {
		parent = segs[len(segs)-2]
	}
	if leaf == "token" && parent == "cart" {
		return CartToken, 0
	}
	field, ok := builtin[bare]
	if !ok {
		return "", 0
	}
	if ambiguous[bare] && bare == leaf && parent != "" && !personContext(parent) {
		// "name" under "items" or "product" is not the customer's.
		return "", 0
	}
	return field, rank
}

func personContext(parent string) bool {
	for _, p := range personParents {
		if strings.Contains(parent, p) {
			return true
		}
	}
	return false
}

// result resolves the candidates into a Submission.
func (c *collector) result() Submission {
	var s Submission
	pick := func(field string) string {
		best, bestRank := "", 2
		for _, cand := range c.found[field] {
			if cand.rank < bestRank {
				best, bestRank = cand.value, cand.rank
			}
		}
		return best
	}
	all := func(field string) []string {
		var out []string
		for rank := 0; rank <= 1; rank++ {
			for _, cand := range c.found[field] {
				if cand.rank == rank && len(out) < maxMultiValue && !containsFold(out, cand.value) {
					out = append(out, cand.value)
				}
			}
		}
		return out
	}
	s.Customer = Customer{
		Emails:      all(Email),
		Phones:      all(Phone),
		FirstName:   pick(FirstName),
		LastName:    pick(LastName),
		DateOfBirth: pick(DateOfBirth),
		Gender:      pick(Gender),
		Street:      pick(Street),
		City:        pick(City),
		State:       pick(State),
		Zip:         pick(Zip),
		Country:     pick(Country),
	}
	if s.Customer.FirstName == "" && s.Customer.LastName == "" {
		s.Customer.FirstName, s.Customer.LastName = SplitName(pick(FullName))
	}
	s.CartToken = pick(CartToken)
	return s
}

// SplitName splits a full name at its first space: "Jane van Dijk" → "Jane", "van Dijk". A single
// word is a first name. Both parts are substrings of the input.
func SplitName(full string) (first, last string) {
	full = strings.TrimSpace(full)
	first, last, _ = strings.Cut(full, " ")
	return first, strings.TrimSpace(last)
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// segments splits a posted name into lower-case snake_case segments: "checkout[billing_address][zip]"
// → checkout, billing_address, zip; "customer.firstName" → customer, first_name; "E-Mail" → e_mail.
// Array indexes ("items[0]", "emails[]") are dropped.
func segments(name string) []string {
	var segs []string
	var b strings.Builder
	flush := func() {
		s := strings.Trim(b.String(), "_")
		b.Reset()
		if s != "" && strings.TrimFunc(s, unicode.IsDigit) != "" {
			segs = append(segs, s)
		}
	}
	var prev rune
	for _, r := range name {
		switch {
		case r == '[' || r == ']' || r == '.':
			flush()
		case r == '-' || r == ' ' || r == '_':
			b.WriteByte('_')
		case unicode.IsUpper(r):
			if unicode.IsLower(prev) || unicode.IsDigit(prev) {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
		default:
			b.WriteRune(r)
		}
		prev = r
	}
	flush()
	return segs
}

// plausible rejects values that cannot be the field, so that a hidden "state" token or a pasted
// paragraph does not end up hashed into a profile.
func plausible(field, v string) bool {
	if len(v) > limits[field] {
		return false
	}
	switch field {
	case Email:
		at := strings.IndexByte(v, '@')
		return at > 0 && at < len(v)-1 && !strings.ContainsAny(v, " \t\r\n")
	case Phone:
		digits := 0
		for _, r := range v {
			if r >= '0' && r <= '9' {
				digits++
			}
		}
		return digits >= 5 && digits <= 20
	case State, City, Country, FirstName, LastName, FullName:
		return strings.IndexFunc(v, unicode.IsLetter) >= 0
	}
	return true
}
