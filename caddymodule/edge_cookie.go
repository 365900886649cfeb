package caddymodule

import (
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/caddy-capi/caddy-capi/capi/conversion"
	"github.com/caddy-capi/caddy-capi/capi/pixel"
)

// A conversion whose response is a redirect or not HTML (a form post answered with 303, an
// add-to-cart fetch) cannot fire in the browser on that response. Its name, event ID, value,
// currency and order ride to the next HTML page in a short-lived cookie, which that page fires
// with the event ID the server copy carries, and clears (DESIGN §5).
const (
	carriedCookie = "_capi_evt"
	// carriedMaxAge is long enough for a redirect chain and a slow payment page, short enough
	// that a conversion never fires on a page visited much later.
	carriedMaxAge = 5 * time.Minute
	// maxCarried bounds the conversions one cookie carries; the newest are kept.
	maxCarried = 4
	// maxCarriedCookieLength bounds the cookie value read back; browsers allow about 4 KB a cookie.
	maxCarriedCookieLength = 2048
	// maxCarriedOrderID bounds an order ID in the cookie, as the conversion package bounds it.
	maxCarriedOrderID = 256
)

// carriedConversion is one conversion on its way to the next HTML page.
type carriedConversion struct {
	Name, EventID, Value, Currency, OrderID string
	// contentIDs go into the page of the conversion itself; the cookie leaves them out, as a cart's
	// SKUs could outgrow it.
	contentIDs []string
}

func (c carriedConversion) browser() pixel.Conversion {
	return pixel.Conversion{Name: c.Name, EventID: c.EventID, Value: c.Value, Currency: c.Currency,
		OrderID: c.OrderID, ContentIDs: c.contentIDs}
}

// encodeCarried returns the cookie value for cs: per conversion its five fields, each
// query-escaped, joined by '|', and conversions joined by '!'. Query escaping leaves only
// A-Z a-z 0-9 - _ . ~ % +, so the value needs no quoting in a cookie and cannot hold a separator.
func encodeCarried(cs []carriedConversion) string {
	if len(cs) > maxCarried {
		cs = cs[len(cs)-maxCarried:]
	}
	var b strings.Builder
	for i, c := range cs {
		if i > 0 {
			b.WriteByte('!')
		}
		for j, f := range []string{c.Name, c.EventID, c.Value, c.Currency, c.OrderID} {
			if j > 0 {
				b.WriteByte('|')
			}
			b.WriteString(url.QueryEscape(f))
		}
	}
	return b.String()
}

// parseCarried reads a cookie value written by encodeCarried. It comes back from the browser, so
// it is outside input: an entry whose name is not one known (a configured conversion), whose event
// ID is not valid, or whose value, currency or order ID does not pass the conversion package's
// checks is skipped, and at most maxCarried entries are read. What it returns is safe to put in
// the snippet and in a cookie again.
func parseCarried(s string, known func(name string) bool) []carriedConversion {
	if s == "" || len(s) > maxCarriedCookieLength {
		return nil
	}
	var out []carriedConversion
	for _, entry := range strings.SplitN(s, "!", maxCarried+1) {
		if len(out) == maxCarried {
			break
		}
		fields := strings.Split(entry, "|")
		if len(fields) != 5 {
			continue
		}
		var f [5]string
		ok := true
		for i, raw := range fields {
			v, err := url.QueryUnescape(raw)
			if err != nil || !utf8.ValidString(v) {
				ok = false
				break
			}
			f[i] = v
		}
		if !ok {
			continue
		}
		c := carriedConversion{Name: f[0], EventID: f[1]}
		if !known(c.Name) || !conversion.ValidEventID(c.EventID) {
			continue
		}
		if f[2] != "" {
			v, err := conversion.ParseValue(f[2])
			if err != nil {
				continue
			}
			c.Value = v
		}
		if f[3] != "" {
			cur, err := conversion.ParseCurrency(f[3])
			if err != nil {
				continue
			}
			c.Currency = cur
		}
		if f[4] != "" {
			if len(f[4]) > maxCarriedOrderID || strings.TrimSpace(f[4]) != f[4] || strings.IndexFunc(f[4], notPrintable) >= 0 {
				continue
			}
			c.OrderID = f[4]
		}
		out = append(out, c)
	}
	return out
}

func notPrintable(r rune) bool { return !unicode.IsPrint(r) }

// carriedCookieLine returns the Set-Cookie value that carries cs, or clears the cookie when cs is
// empty. Domain matches the identity cookies', so the page on www. clears what checkout. set.
func carriedCookieLine(cs []carriedConversion, domain string, secure bool) string {
	c := &http.Cookie{
		Name:     carriedCookie,
		Value:    encodeCarried(cs),
		Path:     "/",
		Domain:   domain,
		MaxAge:   int(carriedMaxAge / time.Second),
		Secure:   secure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
	if len(cs) == 0 {
		c.MaxAge = -1
	}
	return c.String()
}

// replaceCarriedCookie removes every Set-Cookie of carriedCookie from h and adds line, if any.
func replaceCarriedCookie(h http.Header, line string) {
	lines := h.Values("Set-Cookie")
	kept := lines[:0:0]
	for _, l := range lines {
		if !strings.HasPrefix(l, carriedCookie+"=") {
			kept = append(kept, l)
		}
	}
	h.Del("Set-Cookie")
	for _, l := range kept {
		h.Add("Set-Cookie", l)
	}
	if line != "" {
		h.Add("Set-Cookie", line)
	}
}
