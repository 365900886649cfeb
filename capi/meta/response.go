package meta

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/platform"
)

// graphError is Graph's error envelope, with the Conversions API's additions.
type graphError struct {
	Message        string          `json:"message"`
	Type           string          `json:"type"`
	Code           int             `json:"code"`
	ErrorSubcode   int             `json:"error_subcode"`
	IsTransient    bool            `json:"is_transient"`
	ErrorUserTitle string          `json:"error_user_title"`
	ErrorUserMsg   string          `json:"error_user_msg"`
	FbtraceID      string          `json:"fbtrace_id"`
	ErrorData      json.RawMessage `json:"error_data"`
}

type answer struct {
	EventsReceived *int        `json:"events_received"`
	Messages       []string    `json:"messages"`
	FbtraceID      string      `json:"fbtrace_id"`
	Error          *graphError `json:"error"`
}

// Codes Meta documents as temporary (downtime, throttling, a temporary block).
func transientCode(code int) bool {
	switch code {
	case 1, 2, 4, 17, 341, 368, 80003:
		return true
	}
	return false
}

// codeInvalidParameter covers every CAPI validation error (the 2804xxx subcodes), each of which may
// lie in a single event of the batch.
const (
	codeInvalidParameter = 100
	// subcodeNoObject under code 100: the pixel does not exist or the token may not use it, which no
	// event of the batch is to blame for.
	subcodeNoObject = 33
)

// Classify turns Meta's answer to a request that carried n events into a Result. It is total: any
// status and body, however malformed, gives one of the three outcomes. Retries honour Retry-After
// relative to now.
//
//   - 2xx with a JSON object: Delivered.
//   - is_transient, codes 1, 2, 4, 17, 341, 368, 80003, HTTP 429 and 5xx: Retry.
//   - codes 100, 190, 3, 10, 200–299 and other 4xx errors: Permanent. A validation error (code 100
//     but subcode 33, or an unknown code) on more than one event sets WholeBatch, since Meta rejects
//     the whole batch for one bad event; the worker splits the batch to find it.
//   - a body that is not Meta's JSON: Retry, since it comes from something between us and Meta.
func Classify(status int, h http.Header, body []byte, n int, now time.Time) platform.Result {
	var a answer
	parseErr := json.Unmarshal(body, &a)
	retryAfter := platform.RetryAfter(h, now)

	if parseErr == nil && a.Error != nil {
		e := a.Error
		reason := e.reason(status)
		switch {
		case e.IsTransient || transientCode(e.Code) || status == http.StatusTooManyRequests || status >= 500:
			return platform.Result{Outcome: platform.Retry, RetryAfter: retryAfter, Reason: reason}
		case e.Code == 190 || e.Code == 3 || e.Code == 10 || (e.Code >= 200 && e.Code <= 299) ||
			(e.Code == codeInvalidParameter && e.ErrorSubcode == subcodeNoObject):
			// Credentials or permissions: every event of the batch fails alike, so splitting is futile.
			return platform.Result{Outcome: platform.Permanent, Reason: reason}
		default:
			return platform.Result{Outcome: platform.Permanent, Reason: reason, WholeBatch: n > 1}
		}
	}
	switch {
	case status == http.StatusTooManyRequests || status >= 500:
		return platform.Result{Outcome: platform.Retry, RetryAfter: retryAfter,
			Reason: fmt.Sprintf("meta: HTTP %d", status)}
	case status >= 200 && status < 300 && parseErr == nil && a.EventsReceived != nil:
		r := platform.Result{Outcome: platform.Delivered}
		if *a.EventsReceived != n {
			// Meta answers for the batch as a whole; a short count is worth a look but names no event.
			r.Reason = fmt.Sprintf("meta: %d of %d events received (fbtrace_id %s)", *a.EventsReceived, n, platform.OneLine(a.FbtraceID))
		}
		return r
	default:
		return platform.Result{Outcome: platform.Retry, RetryAfter: retryAfter,
			Reason: fmt.Sprintf("meta: HTTP %d with an answer that is not the Graph API's: %s", status, platform.Snippet(body))}
	}
}

// reason renders the error as one line: code, subcode, type, the user-facing title and message,
// the fields Meta blames and the trace ID for support.
func (e *graphError) reason(status int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "meta: HTTP %d: code %d", status, e.Code)
	if e.ErrorSubcode != 0 {
		fmt.Fprintf(&b, " subcode %d", e.ErrorSubcode)
	}
	if e.Type != "" {
		fmt.Fprintf(&b, " (%s)", platform.OneLine(e.Type))
	}
	for _, s := range []string{e.ErrorUserTitle, e.ErrorUserMsg, e.Message} {
		if s != "" {
			b.WriteString(": ")
			b.WriteString(platform.OneLine(s))
		}
	}
	if blamed := e.blamedFields(); len(blamed) > 0 {
		b.WriteString("; blamed fields: ")
		b.WriteString(strings.Join(blamed, ", "))
	}
	if e.FbtraceID != "" {
		fmt.Fprintf(&b, " (fbtrace_id %s)", platform.OneLine(e.FbtraceID))
	}
	return b.String()
}

// blamedFields reads error_data.blame_field_specs ([["custom_data","currency"]] →
// "custom_data.currency"). error_data comes either as an object or as a JSON string holding one.
func (e *graphError) blamedFields() []string {
	raw := e.ErrorData
	var s string
	if json.Unmarshal(raw, &s) == nil {
		raw = json.RawMessage(s)
	}
	var d struct {
		BlameFieldSpecs [][]string `json:"blame_field_specs"`
	}
	if json.Unmarshal(raw, &d) != nil {
		return nil
	}
	var out []string
	for _, spec := range d.BlameFieldSpecs {
		if len(spec) > 0 {
			out = append(out, platform.OneLine(strings.Join(spec, ".")))
		}
	}
	return out
}
