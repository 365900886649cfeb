package fakes

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// GoogleConfig is what the fake Google Ads API and its OAuth token endpoint expect.
type GoogleConfig struct {
	// CustomerID is the only customer accepted in paths and resource names, digits only.
	// Default "1234567890".
	CustomerID string
	// LoginCustomerID, when set, must arrive as the login-customer-id header; when empty the header
	// must be absent.
	LoginCustomerID string
	// DeveloperToken is the developer-token header callers must send. Default "google-dev-token".
	DeveloperToken string
	// ClientID, ClientSecret and RefreshToken are what the token endpoint accepts. Defaults
	// "google-client-id", "google-client-secret", "google-refresh-token".
	ClientID, ClientSecret, RefreshToken string
	// TokenTTL is the lifetime of issued access tokens. Default one hour.
	TokenTTL time.Duration
	// APIVersion, when set, is the only version accepted in the path (e.g. "v24"); otherwise any
	// vNN is.
	APIVersion string
	// Now is the fake's clock. Default time.Now.
	Now func() time.Time
}

// Google is a fake of the Google Ads API's ConversionUploadService and
// ConversionAdjustmentUploadService over REST, plus Google's OAuth token endpoint
// (shared/spec/tiktok-google.md §B):
//
//	POST /{version}/customers/{cid}:uploadClickConversions
//	POST /{version}/customers/{cid}:uploadConversionAdjustments
//	POST /token
type Google struct {
	*recorder
	cfg GoogleConfig

	tokMu   sync.Mutex
	tokens  map[string]time.Time // access token → expiry
	revoked map[string]bool
	issued  int
}

// Google's documented limits.
const (
	GoogleMaxBatch       = 2000
	GoogleMaxIdentifiers = 5
)

// NewGoogle starts a fake Google Ads API and token endpoint for the test.
func NewGoogle(t testing.TB, cfg GoogleConfig) *Google {
	if cfg.CustomerID == "" {
		cfg.CustomerID = "1234567890"
	}
	if cfg.DeveloperToken == "" {
		cfg.DeveloperToken = "google-dev-token"
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "google-client-id"
	}
	if cfg.ClientSecret == "" {
		cfg.ClientSecret = "google-client-secret"
	}
	if cfg.RefreshToken == "" {
		cfg.RefreshToken = "google-refresh-token"
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = time.Hour
	}
	g := &Google{recorder: newRecorder(t, "google", cfg.Now), cfg: cfg, tokens: map[string]time.Time{}, revoked: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/token", g.handleToken)
	mux.HandleFunc("/", g.handle)
	g.serve(mux)
	return g
}

// Config returns the configuration in force (with defaults filled in).
func (g *Google) Config() GoogleConfig { return g.cfg }

// TokenURL is the token endpoint, to configure as `token_endpoint`.
func (g *Google) TokenURL() string { return g.URL() + "/token" }

// TokensIssued counts the access tokens the token endpoint has handed out.
func (g *Google) TokensIssued() int {
	g.tokMu.Lock()
	defer g.tokMu.Unlock()
	return g.issued
}

// RevokeTokens invalidates every access token issued so far: the next upload with one gets 401
// UNAUTHENTICATED (not a violation), as after a revocation, and the caller must refresh.
func (g *Google) RevokeTokens() {
	g.tokMu.Lock()
	defer g.tokMu.Unlock()
	for tok := range g.tokens {
		g.revoked[tok] = true
	}
}

func (g *Google) handleToken(w http.ResponseWriter, req *http.Request) {
	body, ok := g.receive(w, req)
	if !ok {
		return
	}
	fail := func(status int, code, problem string) {
		g.violate(req, []string{problem})
		g.record(req, nil, status, "violation: "+problem, nil) // the body holds secrets
		writeJSON(w, status, map[string]string{"error": code, "error_description": problem})
	}
	if req.Method != http.MethodPost {
		fail(http.StatusMethodNotAllowed, "invalid_request", "token requests must be POST")
		return
	}
	if mt, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		fail(http.StatusBadRequest, "invalid_request", "token request must be application/x-www-form-urlencoded")
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		fail(http.StatusBadRequest, "invalid_request", "unreadable form")
		return
	}
	// Client credentials may come in the form or as HTTP Basic auth (RFC 6749 §2.3.1); Google
	// accepts both, and golang.org/x/oauth2 may try either.
	id, secret := form.Get("client_id"), form.Get("client_secret")
	if u, p, ok := req.BasicAuth(); ok {
		id, _ = url.QueryUnescape(u)
		secret, _ = url.QueryUnescape(p)
	}
	switch {
	case form.Get("grant_type") != "refresh_token":
		fail(http.StatusBadRequest, "unsupported_grant_type", "grant_type must be refresh_token")
		return
	case !equal(id, g.cfg.ClientID) || !equal(secret, g.cfg.ClientSecret):
		fail(http.StatusUnauthorized, "invalid_client", "client_id or client_secret is wrong")
		return
	case !equal(form.Get("refresh_token"), g.cfg.RefreshToken):
		fail(http.StatusBadRequest, "invalid_grant", "refresh_token is wrong")
		return
	}
	g.tokMu.Lock()
	g.issued++
	tok := fmt.Sprintf("ya29.fake-%d-%s", g.issued, base64.RawURLEncoding.EncodeToString([]byte(g.now().String()))[:8])
	g.tokens[tok] = g.now().Add(g.cfg.TokenTTL)
	g.tokMu.Unlock()
	g.record(req, nil, http.StatusOK, "token issued", nil)
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok, "expires_in": int(g.cfg.TokenTTL / time.Second), "token_type": "Bearer",
		"scope": "https://www.googleapis.com/auth/adwords",
	})
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

var googlePath = regexp.MustCompile(`^/(v\d+)/customers/([^/:]+):(uploadClickConversions|uploadConversionAdjustments)$`)

// googleStatus is the status name Google's JSON errors carry for an HTTP status.
func googleStatus(code int) string {
	switch code {
	case 400:
		return "INVALID_ARGUMENT"
	case 401:
		return "UNAUTHENTICATED"
	case 403:
		return "PERMISSION_DENIED"
	case 404:
		return "NOT_FOUND"
	case 429:
		return "RESOURCE_EXHAUSTED"
	case 503:
		return "UNAVAILABLE"
	case 504:
		return "DEADLINE_EXCEEDED"
	}
	if code >= 500 {
		return "INTERNAL"
	}
	return "UNKNOWN"
}

// googleFailure is one GoogleAdsError: errorCode is e.g. {"requestError": "UNKNOWN"}.
type googleFailure struct {
	ErrorCode map[string]string `json:"errorCode"`
	Message   string            `json:"message"`
	Location  *googleLocation   `json:"location,omitempty"`
}

type googleLocation struct {
	FieldPathElements []googlePathElement `json:"fieldPathElements"`
}

type googlePathElement struct {
	FieldName string `json:"fieldName"`
	Index     *int   `json:"index,omitempty"`
}

func (g *Google) failureDetails(version string, errs []googleFailure) []any {
	return []any{map[string]any{
		"@type":     "type.googleapis.com/google.ads.googleads." + orDefault(version, "v24") + ".errors.GoogleAdsFailure",
		"errors":    errs,
		"requestId": g.traceID(),
	}}
}

func (g *Google) fail(w http.ResponseWriter, version string, status int, message string, errs []googleFailure) {
	e := map[string]any{"code": status, "message": message, "status": googleStatus(status)}
	if len(errs) > 0 {
		e["details"] = g.failureDetails(version, errs)
	}
	writeJSON(w, status, map[string]any{"error": e})
}

func (g *Google) handle(w http.ResponseWriter, req *http.Request) {
	body, ok := g.receive(w, req)
	if !ok {
		return
	}
	match := googlePath.FindStringSubmatch(req.URL.Path)
	version := ""
	if match != nil {
		version = match[1]
	}
	reject := func(status int, problems []string, errCode map[string]string) {
		g.violate(req, problems)
		g.record(req, body, status, "violation: "+strings.Join(problems, "; "), nil)
		var errs []googleFailure
		for _, p := range problems {
			errs = append(errs, googleFailure{ErrorCode: errCode, Message: p})
		}
		msg := "Request contains an invalid argument."
		switch status {
		case 401:
			msg = "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential."
		case 403:
			msg = "The caller does not have permission"
		case 404:
			msg = "Requested entity was not found."
		}
		g.fail(w, version, status, msg, errs)
	}
	if match == nil || req.Method != http.MethodPost || (g.cfg.APIVersion != "" && version != g.cfg.APIVersion) {
		reject(http.StatusNotFound, []string{fmt.Sprintf("endpoint must be POST /%s/customers/{customer_id}:uploadClickConversions or :uploadConversionAdjustments", orDefault(g.cfg.APIVersion, "{version}"))},
			map[string]string{"requestError": "UNKNOWN"})
		return
	}
	cid, op := match[2], match[3]
	if !regexp.MustCompile(`^[0-9]{10}$`).MatchString(cid) {
		reject(http.StatusBadRequest, []string{fmt.Sprintf("customer ID %q must be 10 digits without dashes", cid)}, map[string]string{"requestError": "INVALID_CUSTOMER_ID"})
		return
	}
	if cid != g.cfg.CustomerID {
		reject(http.StatusForbidden, []string{fmt.Sprintf("customer %s is not the configured customer %s", cid, g.cfg.CustomerID)}, map[string]string{"authorizationError": "USER_PERMISSION_DENIED"})
		return
	}

	// Authentication: a live token from our token endpoint, the developer token, and the manager
	// account header exactly when one is configured.
	auth := req.Header.Get("Authorization")
	tok, isBearer := strings.CutPrefix(auth, "Bearer ")
	g.tokMu.Lock()
	expiry, known := g.tokens[tok]
	revoked := g.revoked[tok]
	g.tokMu.Unlock()
	switch {
	case !isBearer || tok == "":
		reject(http.StatusUnauthorized, []string{"missing Authorization: Bearer <access token>"}, map[string]string{"authenticationError": "NOT_ADS_USER"})
		return
	case revoked:
		g.record(req, body, http.StatusUnauthorized, "revoked token", nil)
		g.fail(w, version, http.StatusUnauthorized, "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.", nil)
		return
	case !known:
		reject(http.StatusUnauthorized, []string{"access token was not issued by the token endpoint"}, map[string]string{"authenticationError": "OAUTH_TOKEN_INVALID"})
		return
	case !g.now().Before(expiry):
		reject(http.StatusUnauthorized, []string{"access token has expired; refresh it before it does"}, map[string]string{"authenticationError": "OAUTH_TOKEN_EXPIRED"})
		return
	}
	if dt := req.Header.Get("developer-token"); !equal(dt, g.cfg.DeveloperToken) {
		reject(http.StatusUnauthorized, []string{"developer-token header is missing or wrong"}, map[string]string{"authenticationError": "DEVELOPER_TOKEN_INVALID"})
		return
	}
	login := req.Header.Get("login-customer-id")
	switch {
	case g.cfg.LoginCustomerID == "" && login != "":
		reject(http.StatusForbidden, []string{"login-customer-id sent although no manager account is configured"}, map[string]string{"authorizationError": "USER_PERMISSION_DENIED"})
		return
	case g.cfg.LoginCustomerID != "" && login != g.cfg.LoginCustomerID:
		reject(http.StatusForbidden, []string{fmt.Sprintf("login-customer-id must be %s (digits only), got %q", g.cfg.LoginCustomerID, login)}, map[string]string{"authorizationError": "USER_PERMISSION_DENIED"})
		return
	}
	if mt, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type")); mt != "application/json" {
		reject(http.StatusBadRequest, []string{fmt.Sprintf("Content-Type must be application/json, got %q", req.Header.Get("Content-Type"))}, map[string]string{"requestError": "UNKNOWN"})
		return
	}

	listField := "conversions"
	if op == "uploadConversionAdjustments" {
		listField = "conversionAdjustments"
	}
	items, raws, problems := g.request(body, listField)
	if len(problems) > 0 {
		reject(http.StatusBadRequest, problems, map[string]string{"requestError": "INVALID_INPUT"})
		return
	}
	// Each conversion is checked on its own: with partialFailure, Google fails only the bad ones.
	var events []Event
	var failures []googleFailure
	results := make([]any, len(items))
	var violations []string
	for i, item := range items {
		var c checker
		path := fmt.Sprintf("%s[%d]", listField, i)
		var e Event
		if op == "uploadClickConversions" {
			e = g.clickConversion(&c, path, item, cid)
		} else {
			e = g.adjustment(&c, path, item, cid)
		}
		e.Endpoint, e.Raw = op, raws[i]
		idx := i
		loc := &googleLocation{FieldPathElements: []googlePathElement{{FieldName: listField, Index: &idx}}}
		if !c.ok() {
			violations = append(violations, c.problems...)
			failures = append(failures, googleFailure{ErrorCode: map[string]string{"conversionUploadError": "INVALID_ARGUMENT"}, Message: strings.Join(c.problems, "; "), Location: loc})
			results[i] = map[string]any{}
			continue
		}
		if reason, ok := g.rejection(e.ID); ok {
			failures = append(failures, googleFailure{ErrorCode: map[string]string{"conversionUploadError": "CLICK_NOT_FOUND"}, Message: reason, Location: loc})
			results[i] = map[string]any{}
			continue
		}
		events = append(events, e)
		results[i] = g.result(op, item)
	}
	if len(violations) > 0 {
		g.violate(req, violations)
	}
	if status, retryAfter := g.scripted(); status != 0 {
		g.record(req, body, status, fmt.Sprintf("scripted: %d", status), nil)
		if status == http.StatusTooManyRequests {
			retryAfterHeader(w, retryAfter)
			g.fail(w, version, status, "Resource has been exhausted (e.g. check quota).", []googleFailure{{ErrorCode: map[string]string{"quotaError": "RESOURCE_EXHAUSTED"}, Message: "Too many requests."}})
			return
		}
		errCode := map[string]string{"internalError": "TRANSIENT_ERROR"}
		if status < 500 {
			errCode = map[string]string{"requestError": "UNKNOWN"}
		}
		g.fail(w, version, status, "scripted failure", []googleFailure{{ErrorCode: errCode, Message: "scripted failure"}})
		return
	}
	resp := map[string]any{"results": results}
	outcome := "accepted"
	if len(failures) > 0 {
		outcome = fmt.Sprintf("partial failure: %d of %d", len(failures), len(items))
		resp["partialFailureError"] = map[string]any{
			"code":    3,
			"message": fmt.Sprintf("%d conversion(s) failed; see details", len(failures)),
			"details": g.failureDetails(version, failures),
		}
	}
	if op == "uploadClickConversions" {
		resp["jobId"] = fmt.Sprint(int64(1)<<31 + int64(len(g.Requests())))
	}
	g.record(req, body, http.StatusOK, outcome, events)
	writeJSON(w, http.StatusOK, resp)
}

// request checks the request-level fields and returns the items of listField with their raw JSON.
func (g *Google) request(body []byte, listField string) ([]any, []json.RawMessage, []string) {
	var c checker
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return nil, nil, []string{"body is not a JSON object"}
	}
	v, err := decode(body)
	if err != nil {
		return nil, nil, []string{"body is not valid JSON: " + err.Error()}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, nil, []string{"body is not a JSON object"}
	}
	// REST bodies use lowerCamelCase as Google's REST reference does; the proto JSON parser would
	// also take snake_case, but the product sends one form and the fake holds it to that.
	// debugEnabled is left out: whether it survives in v23+ is unconfirmed.
	c.fields("", obj, listField, "partialFailure", "validateOnly", "jobId")
	if pf, ok := obj["partialFailure"]; !ok {
		c.addf("partialFailure", "must be true (v26 refuses requests without it)")
	} else if b, ok := c.boolean("partialFailure", pf); ok && !b {
		c.addf("partialFailure", "must be true (v26 refuses false)")
	}
	if v, ok := obj["validateOnly"]; ok {
		c.boolean("validateOnly", v)
	}
	if v, ok := obj["jobId"]; ok {
		if n, ok := c.integer("jobId", v); ok && (n < 0 || n >= 1<<31) {
			c.addf("jobId", "must be a non-negative int32, got %d", n)
		}
	}
	var raws []json.RawMessage
	if raw, ok := top[listField]; !ok {
		c.addf(listField, "required field is missing")
	} else if err := json.Unmarshal(raw, &raws); err != nil {
		c.addf(listField, "must be an array")
	}
	switch {
	case top[listField] != nil && len(raws) == 0:
		c.addf(listField, "must hold at least one item")
	case len(raws) > GoogleMaxBatch:
		c.addf(listField, "holds %d items; at most %d are allowed per request (TOO_MANY_CONVERSIONS_IN_REQUEST)", len(raws), GoogleMaxBatch)
	}
	var items []any
	if v, ok := obj[listField].([]any); ok {
		items = v
	}
	return items, raws, c.problems
}

var (
	googleDateTime = regexp.MustCompile(`^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$`)
	googleClickIDs = []string{"gclid", "gbraid", "wbraid"}
)

// dateTime checks yyyy-mm-dd hh:mm:ss+hh:mm, the only form the upload services take.
func (g *Google) dateTime(c *checker, path string, v any) time.Time {
	s, ok := c.str(path, v)
	if !ok {
		return time.Time{}
	}
	if !googleDateTime.MatchString(s) {
		c.addf(path, "must be yyyy-mm-dd hh:mm:ss+hh:mm, got %q", s)
		return time.Time{}
	}
	t, err := time.Parse("2006-01-02 15:04:05-07:00", s)
	if err != nil {
		c.addf(path, "is not a valid date and time: %v", err)
		return time.Time{}
	}
	if t.After(g.now().Add(10 * time.Minute)) {
		c.addf(path, "%q is in the future", s)
	}
	return t
}

func (g *Google) conversionAction(c *checker, path string, v any, cid string) string {
	s, ok := c.str(path, v)
	if ok && !regexp.MustCompile(`^customers/`+cid+`/conversionActions/[0-9]+$`).MatchString(s) {
		c.addf(path, "must be customers/%s/conversionActions/<id>, got %q", cid, s)
	}
	return s
}

func (g *Google) clickConversion(c *checker, path string, v any, cid string) (e Event) {
	obj, ok := c.object(path, v)
	if !ok {
		return e
	}
	c.fields(path, obj, "gclid", "gbraid", "wbraid", "conversionAction", "conversionDateTime", "conversionValue",
		"currencyCode", "orderId", "externalAttributionData", "userIdentifiers", "consent", "customVariables",
		"userIpAddress", "sessionAttributesEncoded", "sessionAttributesKeyValuePairs", "conversionEnvironment", "cartData")
	c.required(path, obj, "conversionAction", "conversionDateTime")
	if v, ok := obj["conversionAction"]; ok {
		e.Name = g.conversionAction(c, path+".conversionAction", v, cid)
	}
	if v, ok := obj["conversionDateTime"]; ok {
		e.Time = g.dateTime(c, path+".conversionDateTime", v)
	}
	clickIDs := 0
	for _, k := range googleClickIDs {
		if v, ok := obj[k]; ok {
			clickIDs++
			c.plain(join(path, k), v)
		}
	}
	_, hasIdentifiers := obj["userIdentifiers"]
	switch {
	case clickIDs > 1:
		c.addf(path, "must carry only one of gclid, gbraid and wbraid")
	case clickIDs == 0 && !hasIdentifiers:
		c.addf(path, "needs a click ID (gclid, gbraid or wbraid) or userIdentifiers")
	}
	if v, ok := obj["userIdentifiers"]; ok {
		googleIdentifiers(c, path+".userIdentifiers", v, false)
	}
	g.money(c, path, obj, "conversionValue", "currencyCode")
	if v, ok := obj["orderId"]; ok {
		e.ID = g.orderID(c, path+".orderId", v)
	}
	if v, ok := obj["consent"]; ok {
		if con, ok := c.object(path+".consent", v); ok {
			// adPersonalization belongs to other services; click conversions take adUserData.
			c.fields(path+".consent", con, "adUserData")
			if v, ok := con["adUserData"]; ok {
				c.oneOf(path+".consent.adUserData", v, "GRANTED", "DENIED", "UNSPECIFIED", "UNKNOWN")
			}
		}
	}
	if v, ok := obj["userIpAddress"]; ok {
		c.ip(path+".userIpAddress", v)
	}
	if v, ok := obj["conversionEnvironment"]; ok {
		c.oneOf(path+".conversionEnvironment", v, "WEB", "APP", "UNSPECIFIED", "UNKNOWN")
	}
	if v, ok := obj["customVariables"]; ok {
		vars, ok := c.array(path+".customVariables", v)
		for i, cv := range vars {
			if !ok {
				break
			}
			p := fmt.Sprintf("%s.customVariables[%d]", path, i)
			if o, ok := c.object(p, cv); ok {
				c.fields(p, o, "conversionCustomVariable", "value")
				c.required(p, o, "conversionCustomVariable", "value")
			}
		}
	}
	return e
}

func (g *Google) adjustment(c *checker, path string, v any, cid string) (e Event) {
	obj, ok := c.object(path, v)
	if !ok {
		return e
	}
	c.fields(path, obj, "conversionAction", "adjustmentType", "adjustmentDateTime", "restatementValue", "orderId",
		"gclidDateTimePair", "userIdentifiers", "userAgent")
	c.required(path, obj, "conversionAction", "adjustmentType")
	if v, ok := obj["conversionAction"]; ok {
		e.Name = g.conversionAction(c, path+".conversionAction", v, cid)
	}
	kind := ""
	if v, ok := obj["adjustmentType"]; ok {
		kind, _ = c.oneOf(path+".adjustmentType", v, "ENHANCEMENT", "RETRACTION", "RESTATEMENT")
	}
	if v, ok := obj["adjustmentDateTime"]; ok {
		e.Time = g.dateTime(c, path+".adjustmentDateTime", v)
	} else if kind == "RETRACTION" || kind == "RESTATEMENT" {
		c.addf(path+".adjustmentDateTime", "required for %s", kind)
	}
	if v, ok := obj["orderId"]; ok {
		e.ID = g.orderID(c, path+".orderId", v)
	}
	_, hasPair := obj["gclidDateTimePair"]
	if e.ID == "" && !hasPair {
		c.addf(path, "needs orderId (the tag's transaction_id) or gclidDateTimePair")
	}
	if v, ok := obj["gclidDateTimePair"]; ok {
		if pair, ok := c.object(path+".gclidDateTimePair", v); ok {
			c.fields(path+".gclidDateTimePair", pair, "gclid", "conversionDateTime")
			c.required(path+".gclidDateTimePair", pair, "gclid", "conversionDateTime")
			if v, ok := pair["gclid"]; ok {
				c.plain(path+".gclidDateTimePair.gclid", v)
			}
			if v, ok := pair["conversionDateTime"]; ok {
				g.dateTime(c, path+".gclidDateTimePair.conversionDateTime", v)
			}
		}
	}
	if v, ok := obj["userIdentifiers"]; ok {
		googleIdentifiers(c, path+".userIdentifiers", v, true)
	} else if kind == "ENHANCEMENT" {
		c.addf(path+".userIdentifiers", "required for ENHANCEMENT")
	}
	if v, ok := obj["restatementValue"]; ok {
		if rv, ok := c.object(path+".restatementValue", v); ok {
			c.fields(path+".restatementValue", rv, "adjustedValue", "currencyCode")
			g.money(c, path+".restatementValue", rv, "adjustedValue", "currencyCode")
		}
	} else if kind == "RESTATEMENT" {
		c.addf(path+".restatementValue", "required for RESTATEMENT")
	}
	if v, ok := obj["userAgent"]; ok {
		c.plain(path+".userAgent", v)
	}
	return e
}

func (g *Google) money(c *checker, path string, obj map[string]any, valueKey, currencyKey string) {
	if v, ok := obj[valueKey]; ok {
		c.number(join(path, valueKey), v)
	}
	if v, ok := obj[currencyKey]; ok {
		c.currency(join(path, currencyKey), v, true)
	}
}

// orderID checks a transaction ID: at most 64 characters, never empty (Google dedups every empty
// ID against each other).
func (g *Google) orderID(c *checker, path string, v any) string {
	s, ok := c.nonEmpty(path, v)
	if ok && len(s) > 64 {
		c.addf(path, "must be at most 64 characters, got %d", len(s))
	}
	return s
}

// googleIdentifiers checks userIdentifiers: at most 5, each holding exactly one identifier.
// Click conversions take only hashed email and phone; adjustments (enhanced conversions for web)
// also addressInfo.
func googleIdentifiers(c *checker, path string, v any, address bool) {
	ids, ok := c.array(path, v)
	if !ok {
		return
	}
	if len(ids) == 0 {
		c.addf(path, "must not be empty")
	}
	if len(ids) > GoogleMaxIdentifiers {
		c.addf(path, "holds %d identifiers; at most %d are allowed", len(ids), GoogleMaxIdentifiers)
	}
	kinds := []string{"hashedEmail", "hashedPhoneNumber"}
	if address {
		kinds = append(kinds, "addressInfo")
	}
	for i, idv := range ids {
		p := fmt.Sprintf("%s[%d]", path, i)
		id, ok := c.object(p, idv)
		if !ok {
			continue
		}
		c.fields(p, id, append([]string{"userIdentifierSource"}, kinds...)...)
		n := 0
		for _, k := range kinds {
			if _, ok := id[k]; ok {
				n++
			}
		}
		if n != 1 {
			c.addf(p, "must hold exactly one of %s, holds %d", strings.Join(kinds, ", "), n)
		}
		if v, ok := id["userIdentifierSource"]; ok {
			c.oneOf(p+".userIdentifierSource", v, "FIRST_PARTY", "THIRD_PARTY", "UNSPECIFIED", "UNKNOWN")
		}
		for _, k := range []string{"hashedEmail", "hashedPhoneNumber"} {
			if v, ok := id[k]; ok {
				c.hashed(join(p, k), v, false)
			}
		}
		if v, ok := id["addressInfo"]; ok {
			googleAddress(c, p+".addressInfo", v)
		}
	}
}

// googleAddress checks an AddressInfo: names and street hashed; city, state, country and postal
// code plain; first and last name, country and postal code together.
func googleAddress(c *checker, path string, v any) {
	a, ok := c.object(path, v)
	if !ok {
		return
	}
	c.fields(path, a, "hashedFirstName", "hashedLastName", "hashedStreetAddress", "city", "state", "countryCode", "postalCode")
	c.required(path, a, "hashedFirstName", "hashedLastName", "countryCode", "postalCode")
	for _, k := range []string{"hashedFirstName", "hashedLastName", "hashedStreetAddress"} {
		if v, ok := a[k]; ok {
			c.hashed(join(path, k), v, false)
		}
	}
	for _, k := range []string{"city", "state", "postalCode"} {
		if v, ok := a[k]; ok {
			c.plain(join(path, k), v)
		}
	}
	if v, ok := a["countryCode"]; ok {
		if s, ok := c.plain(path+".countryCode", v); ok && !regexp.MustCompile(`^[A-Za-z]{2}$`).MatchString(s) {
			c.addf(path+".countryCode", "must be ISO 3166-1 alpha-2, got %q", s)
		}
	}
}

func (g *Google) result(op string, item any) map[string]any {
	obj, _ := item.(map[string]any)
	out := map[string]any{}
	keys := []string{"conversionAction", "conversionDateTime", "gclid", "gbraid", "wbraid", "orderId"}
	if op == "uploadConversionAdjustments" {
		keys = []string{"conversionAction", "adjustmentType", "adjustmentDateTime", "orderId"}
	}
	for _, k := range keys {
		if v, ok := obj[k]; ok {
			out[k] = v
		}
	}
	return out
}
