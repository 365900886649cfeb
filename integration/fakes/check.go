package fakes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// checker collects every way a payload breaks the rules, each prefixed with the JSON path of the
// offending value, so one violation report names all the problems of a request.
type checker struct {
	problems []string
}

func (c *checker) addf(path, format string, args ...any) {
	c.problems = append(c.problems, path+": "+fmt.Sprintf(format, args...))
}

func (c *checker) ok() bool { return len(c.problems) == 0 }

// decode parses JSON keeping numbers as json.Number, so that integers and decimals can be told
// apart.
func decode(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after the JSON value")
	}
	return v, nil
}

func (c *checker) object(path string, v any) (map[string]any, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		c.addf(path, "must be a JSON object, got %s", kind(v))
	}
	return m, ok
}

func (c *checker) array(path string, v any) ([]any, bool) {
	a, ok := v.([]any)
	if !ok {
		c.addf(path, "must be a JSON array, got %s", kind(v))
	}
	return a, ok
}

// fields reports every key of m that is not in allowed.
func (c *checker) fields(path string, m map[string]any, allowed ...string) {
	set := map[string]bool{}
	for _, k := range allowed {
		set[k] = true
	}
	var unknown []string
	for k := range m {
		if !set[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		c.addf(join(path, k), "unknown field")
	}
}

func (c *checker) required(path string, m map[string]any, keys ...string) {
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			c.addf(join(path, k), "required field is missing")
		}
	}
}

func (c *checker) str(path string, v any) (string, bool) {
	s, ok := v.(string)
	if !ok {
		c.addf(path, "must be a string, got %s", kind(v))
	}
	return s, ok
}

func (c *checker) nonEmpty(path string, v any) (string, bool) {
	s, ok := c.str(path, v)
	if ok && strings.TrimSpace(s) == "" {
		c.addf(path, "must not be empty")
		return s, false
	}
	return s, ok
}

func (c *checker) integer(path string, v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		c.addf(path, "must be an integer, got %s", kind(v))
		return 0, false
	}
	i, err := n.Int64()
	if err != nil {
		c.addf(path, "must be an integer, got %s", n)
		return 0, false
	}
	return i, true
}

func (c *checker) number(path string, v any) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		c.addf(path, "must be a number, got %s", kind(v))
		return 0, false
	}
	f, err := n.Float64()
	if err != nil {
		c.addf(path, "must be a number, got %s", n)
		return 0, false
	}
	return f, true
}

func (c *checker) boolean(path string, v any) (bool, bool) {
	b, ok := v.(bool)
	if !ok {
		c.addf(path, "must be a boolean, got %s", kind(v))
	}
	return b, ok
}

func (c *checker) oneOf(path string, v any, values ...string) (string, bool) {
	s, ok := c.str(path, v)
	if !ok {
		return s, false
	}
	for _, want := range values {
		if s == want {
			return s, true
		}
	}
	c.addf(path, "must be one of %s, got %q", strings.Join(values, ", "), s)
	return s, false
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// looksHashed reports a value that is (or contains, after a Meta-style appendix) a SHA-256 hex
// digest in either case, or an MD5 digest: plain fields must never carry one.
func looksHashed(s string) bool {
	return hashLike.MatchString(strings.TrimSpace(s))
}

var hashLike = regexp.MustCompile(`^([0-9A-Fa-f]{64}|[0-9A-Fa-f]{32})(\.[A-Za-z0-9_-]+)?$`)

// hashed checks a field that must hold SHA-256 hashes: a 64-character lowercase hex string, or,
// where arrays is true, also an array of them.
func (c *checker) hashed(path string, v any, arrays bool) {
	switch x := v.(type) {
	case string:
		c.hash(path, x)
	case []any:
		if !arrays {
			c.addf(path, "must be a single string, got an array")
			return
		}
		if len(x) == 0 {
			c.addf(path, "must not be an empty array")
		}
		for i, e := range x {
			s, ok := c.str(fmt.Sprintf("%s[%d]", path, i), e)
			if ok {
				c.hash(fmt.Sprintf("%s[%d]", path, i), s)
			}
		}
	default:
		if arrays {
			c.addf(path, "must be a hashed string or an array of them, got %s", kind(v))
		} else {
			c.addf(path, "must be a hashed string, got %s", kind(v))
		}
	}
}

func (c *checker) hash(path, s string) {
	if !sha256Hex.MatchString(s) {
		c.addf(path, "must be a SHA-256 hash as 64 lowercase hex characters, got %s", describe(s))
	}
}

// plain checks a field the platform requires unhashed: a non-empty string that does not look like a
// hash.
func (c *checker) plain(path string, v any) (string, bool) {
	s, ok := c.nonEmpty(path, v)
	if !ok {
		return s, false
	}
	if looksHashed(s) {
		c.addf(path, "must be sent in plain text, not hashed (got %s)", describe(s))
		return s, false
	}
	return s, true
}

func (c *checker) ip(path string, v any) {
	s, ok := c.plain(path, v)
	if !ok {
		return
	}
	if _, err := netip.ParseAddr(s); err != nil {
		c.addf(path, "must be an IPv4 or IPv6 address without port or spaces, got %q", s)
	}
}

func (c *checker) absURL(path string, v any) {
	s, ok := c.nonEmpty(path, v)
	if !ok {
		return
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		c.addf(path, "must be an absolute http(s) URL, got %q", s)
	}
}

var currencyCode = regexp.MustCompile(`^[A-Z]{3}$`)

// currency checks an ISO 4217 code; Meta's documents show both cases, so lower is allowed where
// upperOnly is false.
func (c *checker) currency(path string, v any, upperOnly bool) {
	s, ok := c.str(path, v)
	if !ok {
		return
	}
	if !upperOnly {
		s = strings.ToUpper(s)
	}
	if !currencyCode.MatchString(s) {
		c.addf(path, "must be an ISO 4217 currency code, got %q", s)
	}
}

func (c *checker) stringArray(path string, v any) {
	a, ok := c.array(path, v)
	if !ok {
		return
	}
	for i, e := range a {
		c.nonEmpty(fmt.Sprintf("%s[%d]", path, i), e)
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kind(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("string %s", describe(x))
	case json.Number:
		return "number " + x.String()
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// describe shows a value in a violation without echoing long or personal data in full.
func describe(s string) string {
	if len(s) > 24 {
		return fmt.Sprintf("%q… (%d chars)", s[:12], len(s))
	}
	return fmt.Sprintf("%q", s)
}
