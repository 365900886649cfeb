package google

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/caddy-capi/caddy-capi/capi/platform"
)

const maxResponse = 4 << 20

// upload posts body to url with the access token and classifies the answer for a request of n
// conversions; Result.Events is indexed by position in the request.
func (s *Sender) upload(ctx context.Context, url string, body any, n int) platform.Result {
	tok, err := s.tokens.token(ctx)
	if err != nil {
		r := classifyTokenError(err)
		r.Reason = s.redact(r.Reason, nil)
		return r
	}
	b, err := json.Marshal(body)
	if err != nil {
		return platform.Result{Outcome: platform.Permanent, Reason: "google: encode batch: " + err.Error()}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return platform.Result{Outcome: platform.Permanent, Reason: s.redact("google: build request: "+err.Error(), tok)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("developer-token", s.cfg.DeveloperToken)
	if s.cfg.LoginCustomerID != "" {
		req.Header.Set("login-customer-id", s.cfg.LoginCustomerID)
	}
	reply, err := platform.Post(s.cfg.Client, req, maxResponse, n)
	if err != nil {
		return platform.Result{Outcome: platform.Retry, Reason: s.redact("google: "+err.Error(), tok)}
	}
	if reply.StatusCode == http.StatusUnauthorized {
		// Whatever the cause, a new token is worth fetching before the next attempt.
		s.tokens.forget(tok)
	}
	r := Classify(reply.StatusCode, reply.Header, reply.Body, n, s.cfg.Now())
	r.Reason = s.redact(r.Reason, tok)
	for i, er := range r.Events {
		er.Reason = s.redact(er.Reason, tok)
		r.Events[i] = er
	}
	return r
}

// classifyTokenError classifies a failed refresh: Google refusing the client or the refresh token
// is Permanent (the configuration must change); its 5xx, 429 and network errors are Retry.
func classifyTokenError(err error) platform.Result {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		st := re.Response.StatusCode
		if st == http.StatusTooManyRequests || st >= 500 {
			return platform.Result{Outcome: platform.Retry, RetryAfter: platform.RetryAfter(re.Response.Header, time.Now()),
				Reason: fmt.Sprintf("google: refresh access token: HTTP %d", st)}
		}
		reason := fmt.Sprintf("google: refresh access token: HTTP %d", st)
		if re.ErrorCode != "" {
			reason += ": " + platform.OneLine(re.ErrorCode)
		}
		if re.ErrorDescription != "" {
			reason += ": " + platform.OneLine(re.ErrorDescription)
		}
		return platform.Result{Outcome: platform.Permanent, Reason: reason}
	}
	return platform.Result{Outcome: platform.Retry, Reason: "google: refresh access token: " + platform.OneLine(err.Error())}
}

// googleAdsFailure is the detail Google Ads attaches to errors: one entry per failed operation,
// located by field path (conversions[2], conversion_adjustments[0]).
type googleAdsFailure struct {
	Type      string     `json:"@type"`
	Errors    []adsError `json:"errors"`
	RequestID string     `json:"requestId"`
}

type adsError struct {
	ErrorCode map[string]any `json:"errorCode"`
	Message   string         `json:"message"`
	Location  struct {
		FieldPathElements []struct {
			FieldName string `json:"fieldName"`
			Index     *int   `json:"index"`
		} `json:"fieldPathElements"`
	} `json:"location"`
	Details struct {
		QuotaErrorDetails struct {
			RetryDelay string `json:"retryDelay"`
		} `json:"quotaErrorDetails"`
	} `json:"details"`
}

// status is google.rpc.Status, the shape of both a request error and partialFailureError.
type status struct {
	Code    int                `json:"code"`
	Message string             `json:"message"`
	Status  string             `json:"status"`
	Details []googleAdsFailure `json:"details"`
}

type answer struct {
	Results             []json.RawMessage `json:"results"`
	PartialFailureError *status           `json:"partialFailureError"`
	Error               *status           `json:"error"`
}

// Error codes Google asks clients to retry, in errorCode values and in rpc statuses.
var transient = map[string]bool{
	"TRANSIENT_ERROR": true, "INTERNAL_ERROR": true, "DEADLINE_EXCEEDED": true,
	"RESOURCE_EXHAUSTED": true, "CONCURRENT_MODIFICATION": true,
	"UNAVAILABLE": true, "INTERNAL": true, "ABORTED": true,
}

// alreadyDone are errors that say a retry found its work done: a retried upload after a lost
// answer. The names are from the ConversionUploadError and ConversionAdjustmentUploadError enums
// (unconfirmed); an unknown name is Permanent, which is the safe side.
var alreadyDone = map[string]bool{
	"CLICK_CONVERSION_ALREADY_EXISTS": true,
	"CONVERSION_ALREADY_ENHANCED":     true,
}

// Classify turns Google's answer to an upload of n conversions into a Result, with Events indexed by
// position in the request. It is total: any status and body gives one of the three outcomes.
//
//   - 200 without partialFailureError: Delivered.
//   - 200 with partialFailureError: each error is mapped by its fieldPathElements index to its
//     conversion, Retry for TRANSIENT_ERROR, INTERNAL_ERROR, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED and
//     CONCURRENT_MODIFICATION, Permanent otherwise.
//   - HTTP 429, 5xx, and request errors with a transient status or code: Retry, honouring
//     Retry-After or the quota error's retryDelay.
//   - other request errors (authentication, authorization, invalid arguments): Permanent. When the
//     errors name conversions, those are Permanent and the rest, which Google did not process, Retry;
//     an invalid argument that names none on more than one conversion sets WholeBatch.
//   - a body that is not Google's JSON: Retry.
func Classify(code int, h http.Header, body []byte, n int, now time.Time) platform.Result {
	retryAfter := platform.RetryAfter(h, now)
	var a answer
	parseErr := json.Unmarshal(body, &a)

	if code >= 200 && code < 300 && parseErr == nil && a.Error == nil {
		if a.PartialFailureError == nil || (a.PartialFailureError.Code == 0 && len(a.PartialFailureError.Details) == 0) {
			return platform.Result{Outcome: platform.Delivered}
		}
		return partialFailure(a.PartialFailureError, n)
	}
	if parseErr != nil || a.Error == nil {
		if code == http.StatusTooManyRequests || code >= 500 {
			return platform.Result{Outcome: platform.Retry, RetryAfter: retryAfter, Reason: fmt.Sprintf("google: HTTP %d", code)}
		}
		return platform.Result{Outcome: platform.Retry, RetryAfter: retryAfter,
			Reason: fmt.Sprintf("google: HTTP %d with an answer that is not the Google Ads API's: %s", code, platform.Snippet(body))}
	}

	e := a.Error
	reason := e.reason(code)
	retry := code == http.StatusTooManyRequests || code >= 500 || transient[e.Status]
	for _, f := range e.Details {
		for _, ae := range f.Errors {
			if _, v := ae.code(); transient[v] {
				retry = true
			}
			if d, err := time.ParseDuration(ae.Details.QuotaErrorDetails.RetryDelay); err == nil && d > retryAfter {
				retryAfter = min(d, 24*time.Hour)
			}
		}
	}
	if retry {
		return platform.Result{Outcome: platform.Retry, RetryAfter: retryAfter, Reason: reason}
	}
	if code == http.StatusUnauthorized || code == http.StatusForbidden {
		return platform.Result{Outcome: platform.Permanent, Reason: reason}
	}
	if named := byIndex(e, n); len(named) > 0 {
		// Google refused the request over the conversions it names and processed none: those are
		// Permanent, the others go again.
		r := platform.Result{Outcome: platform.Retry, Reason: "google: not processed: another conversion of the request was invalid",
			Events: make(map[int]platform.EventResult, len(named))}
		for i, errs := range named {
			r.Events[i] = platform.EventResult{Outcome: platform.Permanent, Reason: joinReasons(errs)}
		}
		return r
	}
	return platform.Result{Outcome: platform.Permanent, Reason: reason, WholeBatch: n > 1 && e.Status == "INVALID_ARGUMENT"}
}

// partialFailure maps the errors of a partial failure to the conversions they name. An error that
// names none applies to every conversion not named by another.
func partialFailure(pf *status, n int) platform.Result {
	r := platform.Result{Outcome: platform.Delivered}
	named := byIndex(pf, n)
	var unnamed []adsError
	for _, f := range pf.Details {
		for _, ae := range f.Errors {
			if i, ok := ae.index(); !ok || i >= n {
				unnamed = append(unnamed, ae)
			}
		}
	}
	if len(unnamed) > 0 || (len(named) == 0 && pf.Code != 0) {
		r.Outcome, r.Reason = outcomeOf(unnamed), joinReasons(unnamed)
		if r.Reason == "" {
			r.Reason = "google: partial failure: " + platform.OneLine(pf.Message)
		}
	}
	for i, errs := range named {
		if r.Events == nil {
			r.Events = make(map[int]platform.EventResult, len(named))
		}
		r.Events[i] = platform.EventResult{Outcome: outcomeOf(errs), Reason: joinReasons(errs)}
	}
	return r
}

// byIndex groups the errors of s by the conversion index their field path names, within [0, n).
func byIndex(s *status, n int) map[int][]adsError {
	named := map[int][]adsError{}
	for _, f := range s.Details {
		for _, ae := range f.Errors {
			if i, ok := ae.index(); ok && i < n {
				named[i] = append(named[i], ae)
			}
		}
	}
	return named
}

// outcomeOf is Retry when any error is transient, else Delivered when every error says the work
// was already done, else Permanent. No error at all means Google gave no detail: Permanent.
func outcomeOf(errs []adsError) platform.Outcome {
	if len(errs) == 0 {
		return platform.Permanent
	}
	done := true
	for _, ae := range errs {
		_, v := ae.code()
		if transient[v] {
			return platform.Retry
		}
		done = done && alreadyDone[v]
	}
	if done {
		return platform.Delivered
	}
	return platform.Permanent
}

// index is the position of the conversion the error names: the first field path element with an
// index (conversions[i] or conversion_adjustments[i]).
func (ae adsError) index() (int, bool) {
	for _, fp := range ae.Location.FieldPathElements {
		if fp.Index != nil && *fp.Index >= 0 {
			switch fp.FieldName {
			case "conversions", "conversion_adjustments", "conversionAdjustments":
				return *fp.Index, true
			}
		}
	}
	return 0, false
}

// code returns the error's kind and value, as conversionUploadError and CLICK_NOT_FOUND.
func (ae adsError) code() (kind, value string) {
	for k, v := range ae.ErrorCode {
		if s, ok := v.(string); ok {
			return k, s
		}
		return k, fmt.Sprint(v)
	}
	return "", ""
}

func (ae adsError) reason() string {
	kind, value := ae.code()
	s := "google: " + platform.OneLine(kind+"."+value)
	if ae.Message != "" {
		s += ": " + platform.OneLine(ae.Message)
	}
	return s
}

// maxReasons is how many of Google's errors one reason quotes.
const maxReasons = 5

func joinReasons(errs []adsError) string {
	parts := make([]string, 0, min(len(errs), maxReasons))
	for i, ae := range errs {
		if i == maxReasons {
			parts = append(parts, fmt.Sprintf("and %d more errors", len(errs)-maxReasons))
			break
		}
		parts = append(parts, ae.reason())
	}
	return strings.Join(parts, "; ")
}

func (s *status) reason(code int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "google: HTTP %d", code)
	if s.Status != "" {
		b.WriteString(" " + platform.OneLine(s.Status))
	}
	if s.Message != "" {
		b.WriteString(": " + platform.OneLine(s.Message))
	}
	written := 0
	for _, f := range s.Details {
		for _, ae := range f.Errors {
			// A request of 2000 conversions can fail 2000 ways; the first few tell the story.
			if written++; written > maxReasons {
				continue
			}
			kind, value := ae.code()
			b.WriteString("; " + platform.OneLine(kind+"."+value))
			if ae.Message != "" {
				b.WriteString(": " + platform.OneLine(ae.Message))
			}
		}
		if f.RequestID != "" {
			b.WriteString(" (requestId " + platform.OneLine(f.RequestID) + ")")
		}
	}
	if written > maxReasons {
		fmt.Fprintf(&b, "; and %d more errors", written-maxReasons)
	}
	return b.String()
}
