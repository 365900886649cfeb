package tiktok

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/platform"
)

// TikTok's body codes that decide an answer. The meanings of 20001 and 40700 are unconfirmed; we
// follow the integrations that have run against the API longest (see spec/tiktok-google.md A3).
const (
	codeOK            = 0
	codePartialOK     = 20001 // accepted with a warning
	codeNoPermission  = 40001 // the token does not belong to the pixel
	codeInvalidParam  = 40002 // one event may be to blame
	codeRateLimited   = 40100
	codeTokenInvalid  = 40105
	codeTemporary     = 40700 // treated as a server error by the integrations that met it
	serverErrorsStart = 50000
	serverErrorsEnd   = 59999
)

type answer struct {
	Code      *int64 `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

// Classify turns TikTok's answer to a request that carried n events into a Result. It is total: any
// status and body gives one of the three outcomes.
//
// TikTok answers business errors with HTTP 200, so the body's code decides: 0 and 20001 Delivered;
// 40100, 40700 and 5xxxx Retry; 40001, 40105 and other codes Permanent; 40002 (invalid parameter)
// on more than one event sets WholeBatch, since one bad event fails the request. HTTP 429 and 5xx are
// Retry whatever the body says, and a body that is not TikTok's JSON is Retry with the HTTP status
// and the start of the body as reason.
func Classify(status int, h http.Header, body []byte, n int, now time.Time) platform.Result {
	retryAfter := platform.RetryAfter(h, now)
	var a answer
	parseErr := json.Unmarshal(body, &a)
	if status == http.StatusTooManyRequests || status >= 500 {
		reason := fmt.Sprintf("tiktok: HTTP %d", status)
		if parseErr == nil && a.Code != nil {
			reason = a.reason(status)
		}
		return platform.Result{Outcome: platform.Retry, RetryAfter: retryAfter, Reason: reason}
	}
	if parseErr != nil || a.Code == nil {
		return platform.Result{Outcome: platform.Retry, RetryAfter: retryAfter,
			Reason: fmt.Sprintf("tiktok: HTTP %d with an answer that is not the Events API's: %s", status, platform.Snippet(body))}
	}
	code := *a.Code
	switch {
	case code == codeOK && status >= 200 && status < 300:
		return platform.Result{Outcome: platform.Delivered}
	case code == codePartialOK && status >= 200 && status < 300:
		return platform.Result{Outcome: platform.Delivered, Reason: a.reason(status)}
	case code == codeRateLimited || code == codeTemporary || (code >= serverErrorsStart && code <= serverErrorsEnd):
		return platform.Result{Outcome: platform.Retry, RetryAfter: retryAfter, Reason: a.reason(status)}
	case code == codeInvalidParam:
		return platform.Result{Outcome: platform.Permanent, Reason: a.reason(status), WholeBatch: n > 1}
	case code == codeOK || code == codePartialOK:
		// A success code under an HTTP error status: something in between answered.
		return platform.Result{Outcome: platform.Retry, RetryAfter: retryAfter, Reason: a.reason(status)}
	default:
		// 40001, 40105 and codes TikTok has not documented to us: a retry of the same request would
		// get the same answer.
		return platform.Result{Outcome: platform.Permanent, Reason: a.reason(status)}
	}
}

func (a answer) reason(status int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "tiktok: HTTP %d: code %d", status, *a.Code)
	if a.Message != "" {
		b.WriteString(": ")
		b.WriteString(platform.OneLine(a.Message))
	}
	if a.RequestID != "" {
		fmt.Fprintf(&b, " (request_id %s)", platform.OneLine(a.RequestID))
	}
	return b.String()
}
