package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-capi/caddy-capi/capi/conversion"
)

const (
	// maxCollectBody bounds a browser event: name, ID, a few data fields and two URLs.
	maxCollectBody = 16 << 10
	// collectPerMinute is how many browser events one visitor may post a minute; a shop's pages
	// fire a handful, a loop or a script fires thousands.
	collectPerMinute = 30
	// collectPerAddressMinute is how many browser events one client IP may post a minute, whatever
	// visitor cookies it sends: a visitor cookie is the client's to choose, so without it a script
	// rotating forged cookies would have no limit. It leaves room for an office or a mobile
	// carrier's NAT with many shoppers behind one address.
	collectPerAddressMinute = 20 * collectPerMinute
	// maxLimiterKeys bounds the limiter's memory; past it, unknown keys are refused until idle
	// buckets are pruned.
	maxLimiterKeys = 100_000
)

// metaStandardEvents are Meta's standard event names, the vocabulary window.capi.track speaks.
// PageView is not among those accepted from the browser: the page's own PageView is sent by the
// server when `page_view server` is on, and a posted one would count the page twice.
var metaStandardEvents = []string{
	"AddPaymentInfo", "AddToCart", "AddToWishlist", "CompleteRegistration", "Contact",
	"CustomizeProduct", "Donate", "FindLocation", "InitiateCheckout", "Lead", "Purchase",
	"Schedule", "Search", "StartTrial", "SubmitApplication", "Subscribe", "ViewContent",
}

// Why a posted event ID cannot pre-empt a real conversion:
//
// collect takes the event ID the browser chose, because the pixels fired the event with it and
// the server copy must carry the same one for the platforms to count it once. The queue (for 48
// hours) and the platforms keep the first event with a given (name, ID) and drop later ones. So if
// an order's conversion ID were computable from public inputs, someone who guesses the next order
// number (Shopify's are sequential) could post that order's Purchase here first, and the real
// purchase from the thank-you page, the shop's webhook or the network's postback would be dropped
// as its duplicate: a lost sale. Conversion IDs are therefore derived under the installation's
// secret key (conversion.IDKey, kept in the storage and never logged or shown by the admin API),
// which the browser never sees: it only ever receives finished IDs of its own visitor's events. A
// posted ID thus never equals the ID of an order the poster did not place, and this endpoint needs
// no check of its own; refusing IDs "in the derivation's range" would not even be possible, since
// keyed IDs are indistinguishable from random ones. A forged event posted here is still counted as
// the browser event it claims to be; that is the endpoint's contract (rate-limited, same-origin),
// and it can only add an event, never remove one.

// collectEvent is the body window.capi.track posts.
type collectEvent struct {
	Name     string      `json:"name"`
	EventID  string      `json:"event_id"`
	Data     collectData `json:"data"`
	URL      string      `json:"url"`
	Referrer string      `json:"referrer"`
}

// collectData holds the fields of track's data that reach the server copy, under Meta's
// custom_data names, as the injected script passes them on to the pixels.
type collectData struct {
	Value      jsonText   `json:"value"`
	Currency   string     `json:"currency"`
	OrderID    jsonText   `json:"order_id"`
	ContentIDs []jsonText `json:"content_ids"`
}

// jsonText is a JSON string or number kept as its text: shops pass prices and IDs either way.
type jsonText string

func (t *jsonText) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*t = ""
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*t = jsonText(s)
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return errors.New("expected a string or a number")
		}
		*t = jsonText(n)
	}
	return nil
}

// collectRefusal is why the collect endpoint refused a post: the status, the outcome label it is
// counted under, and a message that says what the endpoint expects.
type collectRefusal struct {
	status  int
	outcome string
	msg     string
}

func (r collectRefusal) Error() string { return "capi collect: " + r.msg }

// collectError counts a refusal of the collect endpoint under its outcome and returns it as a
// caddyhttp.Error carrying the collectRefusal, for answerCollect to answer.
func collectError(status int, outcome, msg string) error {
	edgeStats().collected.WithLabelValues(outcome).Inc()
	return caddyhttp.Error(status, collectRefusal{status: status, outcome: outcome, msg: msg})
}

// collectAnswer is the body of a refusal: what went wrong, for the developer reading the browser's
// console, and the outcome, stable for a script to branch on.
type collectAnswer struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// answerCollect answers the collect endpoint's error err itself, as JSON with the error's status,
// and returns nil; without an error it does nothing. The endpoint is called by a script, which
// needs to read why a post was refused; a caddyhttp.Error left to Caddy would reach it as an empty
// body unless the site had handle_errors. A refusal keeps the outcome it was counted under as its
// code; any other error (the queue could not take the event) is "failed", as it is counted. The
// messages are the endpoint's own, never a value from the post.
func answerCollect(w http.ResponseWriter, err error) error {
	if err == nil {
		return nil
	}
	status, answer := http.StatusInternalServerError, collectAnswer{Error: "the event could not be recorded", Code: "failed"}
	var he caddyhttp.HandlerError
	var refusal collectRefusal
	switch {
	case errors.As(err, &refusal):
		status, answer = refusal.status, collectAnswer{Error: refusal.msg, Code: refusal.outcome}
	case errors.As(err, &he):
		status = he.StatusCode
		if he.Err != nil {
			answer.Error = strings.TrimPrefix(he.Err.Error(), "capi collect: ")
		}
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	// Encode escapes <, > and & too, so no browser can take the body for markup.
	_ = json.NewEncoder(w).Encode(answer)
	return nil
}

// readCollect checks a post to the collect endpoint and decodes its body; the error is a
// collectError, counted, for answerCollect.
func readCollect(w http.ResponseWriter, r *http.Request, known func(string) bool) (collectEvent, error) {
	var ev collectEvent
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return ev, collectError(http.StatusMethodNotAllowed, "method", "expected POST")
	}
	if !sameOrigin(r) {
		return ev, collectError(http.StatusForbidden, "cross_origin", "only pages of this site may post events (Sec-Fetch-Site or Origin must show the same origin)")
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return ev, collectError(http.StatusUnsupportedMediaType, "content_type", "expected a JSON body (Content-Type: application/json)")
	}
	if r.ContentLength > maxCollectBody {
		return ev, collectError(http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body larger than %d bytes", maxCollectBody))
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxCollectBody+1))
	if err != nil {
		return ev, collectError(http.StatusBadRequest, "read", "reading the body failed")
	}
	if len(body) > maxCollectBody {
		return ev, collectError(http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body larger than %d bytes", maxCollectBody))
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return ev, collectError(http.StatusBadRequest, "bad_json", `expected {"name", "event_id", "data", "url", "referrer"} as JSON`)
	}
	if !known(ev.Name) {
		return ev, collectError(http.StatusUnprocessableEntity, "unknown_name", "unknown event name; expected a Meta standard event or a configured conversion")
	}
	if !conversion.ValidEventID(ev.EventID) {
		return ev, collectError(http.StatusUnprocessableEntity, "bad_event_id", "event_id must be 8 to 64 characters of A-Z a-z 0-9 - _")
	}
	return ev, nil
}

// sameOrigin reports whether r comes from a page of the site it is addressed to. Browsers send
// Sec-Fetch-Site on every fetch; older ones send Origin on every POST. A request with neither is
// not a browser's fetch from our page and is refused.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin"
	}
	origin := r.Header.Get("Origin")
	if origin == "" || origin == "null" {
		return false
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Path != "" {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// sameHostURL returns raw when it is an absolute URL on host, else "": a posted page URL names the
// page the event happened on only when it is one of this site's.
func sameHostURL(raw, host string) string {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || !strings.EqualFold(u.Host, host) {
		return ""
	}
	return raw
}

// visitorLimiter is a token bucket per key (a visitor ID, or the client IP of a visitor without
// one): perMinute tokens a minute, as many in a burst. Idle buckets are pruned once a minute.
type visitorLimiter struct {
	perMinute float64
	maxKeys   int
	now       func() time.Time

	mu        sync.Mutex
	buckets   map[string]*tokenBucket
	lastPrune time.Time
}

type tokenBucket struct {
	tokens float64
	at     time.Time
}

func newVisitorLimiter(perMinute, maxKeys int, now func() time.Time) *visitorLimiter {
	return &visitorLimiter{perMinute: float64(perMinute), maxKeys: maxKeys, now: now, buckets: map[string]*tokenBucket{}}
}

// allow takes a token from key's bucket and reports whether there was one.
func (l *visitorLimiter) allow(key string) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastPrune) >= time.Minute {
		l.prune(now)
	}
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.maxKeys {
			return false
		}
		b = &tokenBucket{tokens: l.perMinute, at: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.perMinute, b.tokens+now.Sub(b.at).Minutes()*l.perMinute)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// prune forgets buckets that have refilled: they behave exactly like new ones.
func (l *visitorLimiter) prune(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.at).Minutes()*l.perMinute >= l.perMinute {
			delete(l.buckets, k)
		}
	}
	l.lastPrune = now
}
