package platform

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// What the meta, tiktok and google senders share when they talk HTTP to a platform: posting a
// request and reading its answer, reading a Retry-After hint, keeping secrets out of reasons, quoting a foreign body safely, turning our decimal
// strings into JSON numbers, and settling some events of a batch before the rest is sent.

// Reply is a platform's answer to one request, its body read up to the cap given to Post.
type Reply struct {
	StatusCode int
	Header     http.Header
	Body       []byte
}

// Post sends req, the request for a batch of n events, with client and reads at most maxBody bytes
// of the answer. Every error it returns is a network failure (the request not sent, or the answer
// cut off), which a sender reports as Retry; its text, "send batch of n: …" or "read answer to batch
// of n: …", may quote the URL, so redact it before it becomes a Reason. What the answer means is
// the platform's to classify.
func Post(client *http.Client, req *http.Request, maxBody int64, n int) (Reply, error) {
	resp, err := client.Do(req)
	if err != nil {
		return Reply{}, fmt.Errorf("send batch of %d: %w", n, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return Reply{}, fmt.Errorf("read answer to batch of %d: %w", n, err)
	}
	return Reply{StatusCode: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

// maxRetryAfter bounds a platform's Retry-After hint: a garbage or hostile value must not park a
// queue for years.
const maxRetryAfter = 24 * time.Hour

// RetryAfter reads a Retry-After header, in delay-seconds or as an HTTP date relative to now. It
// returns 0 when the header is absent, unparseable or in the past, and at most 24 hours.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs >= int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d <= 0 {
			return 0
		}
		return min(d, maxRetryAfter)
	}
	return 0
}

// Redacted replaces a secret wherever Redact finds it.
const Redacted = "[redacted]"

// Redact replaces every non-empty secret in s, also in its URL-escaped forms (a url.Error quotes the
// escaped URL), with Redacted. Use it on every string that may carry a token before it becomes a
// Reason or an error.
func Redact(s string, secrets ...string) string {
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		s = strings.ReplaceAll(s, secret, Redacted)
		if q := url.QueryEscape(secret); q != secret {
			s = strings.ReplaceAll(s, q, Redacted)
		}
		if p := url.PathEscape(secret); p != secret {
			s = strings.ReplaceAll(s, p, Redacted)
		}
	}
	return s
}

// snippetLen is how much of a foreign body a reason quotes: enough to recognize an HTML error page
// or a proxy's message, too little to fill a dead letter with it.
const snippetLen = 80

// Snippet quotes the start of a body a platform sent that could not be understood, for a Reason.
func Snippet(body []byte) string {
	if len(body) > snippetLen {
		// strconv.Quote escapes the invalid bytes of a rune cut in half.
		return strconv.Quote(string(body[:snippetLen])) + "…"
	}
	return strconv.Quote(string(body))
}

// maxLine bounds each text a platform sends back that a reason quotes, so a dead letter stays
// readable.
const maxLine = 300

// OneLine makes a text a platform sent back fit on one line of a reason: whitespace collapsed, at
// most 300 bytes of valid UTF-8.
func OneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxLine {
		s = strings.ToValidUTF8(s[:maxLine], "") + "…"
	}
	return s
}

// ErrNotDecimal reports a monetary value that is not a plain decimal number.
var ErrNotDecimal = errors.New("not a decimal number")

// DecimalNumber checks that s is a plain decimal ("49.90", "-3", "0.5") and returns it as the JSON
// number the platforms want, so cents travel exactly as the edge wrote them instead of through a
// float64. encoding/json writes a json.Number as it is.
func DecimalNumber(s string) (json.Number, error) {
	intPart, fracPart, hasFrac := strings.Cut(strings.TrimPrefix(s, "-"), ".")
	if !allDigits(intPart) || (len(intPart) > 1 && intPart[0] == '0') || (hasFrac && !allDigits(fracPart)) {
		return "", fmt.Errorf("value %s: %w", strconv.Quote(s), ErrNotDecimal)
	}
	return json.Number(s), nil
}

// allDigits reports whether s is one or more ASCII digits.
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// Triage tracks a batch of which a sender settles some events itself (too old, invalid, a test event
// with no test code) and sends the rest in one request. It maps the platform's answer for the sent
// events back onto the batch's indices.
type Triage struct {
	settled map[int]EventResult
	sent    []int
}

// Settle records the outcome of event i of the batch, which is not sent.
func (t *Triage) Settle(i int, o Outcome, reason string) {
	if t.settled == nil {
		t.settled = make(map[int]EventResult)
	}
	t.settled[i] = EventResult{Outcome: o, Reason: reason}
}

// Send records that event i of the batch is part of the request, after the events already added.
func (t *Triage) Send(i int) { t.sent = append(t.sent, i) }

// Sent returns the batch indices of the sent events, in request order.
func (t *Triage) Sent() []int { return t.sent }

// Result turns r, the answer for the request whose Events are indexed by position in the request,
// into the answer for the whole batch. With nothing sent, every event is settled and the Outcome is
// Permanent, each event carrying its own reason in Events.
func (t *Triage) Result(r Result) Result {
	if len(t.settled) == 0 {
		return r
	}
	out := r
	out.Events = make(map[int]EventResult, len(t.settled)+len(r.Events))
	for pos, er := range r.Events {
		if pos >= 0 && pos < len(t.sent) {
			out.Events[t.sent[pos]] = er
		}
	}
	for i, er := range t.settled {
		out.Events[i] = er
	}
	return out
}

// Unsent is the Result of a batch none of whose events was sent.
func (t *Triage) Unsent() Result {
	return t.Result(Result{Outcome: Permanent, Reason: "no event of the batch could be sent"})
}
