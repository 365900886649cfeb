package fakes

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

const googleClick = "/v24/customers/1234567890:uploadClickConversions"
const googleAdjust = "/v24/customers/1234567890:uploadConversionAdjustments"

// googleToken gets an access token from the fake's token endpoint the way an OAuth client
// refreshes one.
func googleToken(t *testing.T, g *Google) string {
	t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "client_id": {"google-client-id"}, "client_secret": {"google-client-secret"}, "refresh_token": {"google-refresh-token"}}
	r := send(t, "POST", g.TokenURL(), "application/x-www-form-urlencoded", form.Encode(), nil)
	tok, _ := r.body["access_token"].(string)
	if r.status != 200 || tok == "" || r.body["token_type"] != "Bearer" {
		t.Fatalf("token endpoint: %d %v", r.status, r.body)
	}
	return tok
}

func googleHeaders(tok string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + tok, "developer-token": "google-dev-token"}
}

// googleClickPayload is a well-formed click conversion upload (§B1), with a gclid and one hashed
// email, and a second conversion keyed only by user identifiers (enhanced conversions for leads).
func googleClickPayload(now time.Time) map[string]any {
	when := now.Add(-time.Hour).In(time.FixedZone("", -8*3600)).Format("2006-01-02 15:04:05-07:00")
	return map[string]any{
		"conversions": []any{
			map[string]any{
				"gclid":              "Cj0KCQiA-example_gclid",
				"conversionAction":   "customers/1234567890/conversionActions/987654321",
				"conversionDateTime": when,
				"conversionValue":    49.9,
				"currencyCode":       "USD",
				"orderId":            "ORD-1",
				"userIdentifiers":    []any{map[string]any{"hashedEmail": sha("john_smith@gmail.com"), "userIdentifierSource": "FIRST_PARTY"}},
				"consent":            map[string]any{"adUserData": "GRANTED"},
			},
			map[string]any{
				"conversionAction":   "customers/1234567890/conversionActions/987654321",
				"conversionDateTime": when,
				"orderId":            "ORD-2",
				"userIdentifiers":    []any{map[string]any{"hashedPhoneNumber": sha("+16505551212")}},
			},
		},
		"partialFailure": true,
	}
}

func googleAdjustmentPayload(now time.Time) map[string]any {
	return map[string]any{
		"conversionAdjustments": []any{map[string]any{
			"conversionAction": "customers/1234567890/conversionActions/987654321",
			"adjustmentType":   "ENHANCEMENT",
			"orderId":          "ORD-1",
			"userAgent":        "Mozilla/5.0 (X11; Linux x86_64)",
			"userIdentifiers": []any{
				map[string]any{"hashedEmail": sha("john_smith@gmail.com")},
				map[string]any{"addressInfo": map[string]any{
					"hashedFirstName": sha("mary"), "hashedLastName": sha("smith"), "hashedStreetAddress": sha("1 main st"),
					"city": "newyork", "state": "ny", "countryCode": "US", "postalCode": "10001",
				}},
			},
		}},
		"partialFailure": true,
	}
}

func TestGoogleAcceptsDocumentedUploads(t *testing.T) {
	g := NewGoogle(t, GoogleConfig{})
	tok := googleToken(t, g)
	r := send(t, "POST", g.URL()+googleClick, "application/json", mustJSON(t, googleClickPayload(time.Now())), googleHeaders(tok))
	if r.status != 200 || r.body["partialFailureError"] != nil || len(r.body["results"].([]any)) != 2 {
		t.Fatalf("click upload: %d %v", r.status, r.body)
	}
	r = send(t, "POST", g.URL()+googleAdjust, "application/json", mustJSON(t, googleAdjustmentPayload(time.Now())), googleHeaders(tok))
	if r.status != 200 || r.body["partialFailureError"] != nil {
		t.Fatalf("adjustment upload: %d %v", r.status, r.body)
	}
	if got := len(g.EventsWithID("ORD-1")); got != 2 {
		t.Errorf("ORD-1 accepted %d times (click + enhancement), want 2", got)
	}
	if e, _ := g.Event("ORD-2"); e.Endpoint != "uploadClickConversions" || e.Name != "customers/1234567890/conversionActions/987654321" {
		t.Errorf("ORD-2 recorded as %+v", e)
	}
	if g.TokensIssued() != 1 {
		t.Errorf("issued %d tokens, want 1", g.TokensIssued())
	}
}

func TestGoogleRefusesBadRequests(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name       string
		path       string
		cfg        GoogleConfig
		headers    func(tok string) map[string]string
		mutate     func(p map[string]any)
		wantStatus int
		violation  string
	}{
		{name: "no bearer token", headers: func(string) map[string]string { return map[string]string{"developer-token": "google-dev-token"} }, wantStatus: 401, violation: "Bearer"},
		{name: "token not from the token endpoint", headers: func(string) map[string]string { return googleHeaders("ya29.made-up") }, wantStatus: 401, violation: "not issued"},
		{name: "no developer token", headers: func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }, wantStatus: 401, violation: "developer-token"},
		{name: "missing login-customer-id", cfg: GoogleConfig{LoginCustomerID: "1112223334"}, wantStatus: 403, violation: "login-customer-id must be"},
		{name: "login-customer-id without manager", headers: func(tok string) map[string]string {
			h := googleHeaders(tok)
			h["login-customer-id"] = "1112223334"
			return h
		}, wantStatus: 403, violation: "no manager account"},
		{name: "customer ID with dashes", path: "/v24/customers/123-456-7890:uploadClickConversions", wantStatus: 400, violation: "10 digits"},
		{name: "other customer", path: "/v24/customers/5555555555:uploadClickConversions", wantStatus: 403, violation: "not the configured customer"},
		{name: "unknown method", path: "/v24/customers/1234567890:uploadConversions", wantStatus: 404, violation: "endpoint must be"},
		{name: "partialFailure missing", mutate: func(p map[string]any) { delete(p, "partialFailure") }, wantStatus: 400, violation: "partialFailure: must be true"},
		{name: "partialFailure false", mutate: func(p map[string]any) { p["partialFailure"] = false }, wantStatus: 400, violation: "partialFailure: must be true"},
		{name: "snake_case top level", mutate: func(p map[string]any) { p["partial_failure"] = true }, wantStatus: 400, violation: "partial_failure: unknown field"},
		{name: "batch over 2000", mutate: func(p map[string]any) {
			one := obj(p, "conversions", 0)
			var cs []any
			for range GoogleMaxBatch + 1 {
				cs = append(cs, one)
			}
			p["conversions"] = cs
		}, wantStatus: 400, violation: "at most 2000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewGoogle(t, tt.cfg)
			g.ExpectViolations()
			tok := googleToken(t, g)
			p := clone(googleClickPayload(now)).(map[string]any)
			if tt.mutate != nil {
				tt.mutate(p)
			}
			headers := googleHeaders(tok)
			if tt.headers != nil {
				headers = tt.headers(tok)
			}
			path := tt.path
			if path == "" {
				path = googleClick
			}
			r := send(t, "POST", g.URL()+path, "application/json", mustJSON(t, p), headers)
			e, _ := r.body["error"].(map[string]any)
			if r.status != tt.wantStatus || e == nil || e["code"] != float64(tt.wantStatus) || e["status"] == "" {
				t.Errorf("got %d %v, want %d with a Google error", r.status, r.body, tt.wantStatus)
			}
			assertViolation(t, g.Violations(), tt.violation)
			if len(g.Accepted()) != 0 {
				t.Errorf("accepted %d conversions of a refused request", len(g.Accepted()))
			}
		})
	}
}

func TestGoogleFailsOnlyTheBadConversion(t *testing.T) {
	now := time.Now()
	conv := func(p map[string]any) map[string]any { return obj(p, "conversions", 1) }
	tests := []struct {
		name      string
		mutate    func(p map[string]any)
		violation string
	}{
		{name: "ISO date time", mutate: func(p map[string]any) { conv(p)["conversionDateTime"] = now.Format(time.RFC3339) }, violation: "yyyy-mm-dd hh:mm:ss+hh:mm"},
		{name: "offset without colon", mutate: func(p map[string]any) { conv(p)["conversionDateTime"] = now.Format("2006-01-02 15:04:05-0700") }, violation: "yyyy-mm-dd hh:mm:ss+hh:mm"},
		{name: "no identifier at all", mutate: func(p map[string]any) { delete(conv(p), "userIdentifiers") }, violation: "needs a click ID"},
		{name: "gclid and gbraid", mutate: func(p map[string]any) { conv(p)["gclid"] = "a"; conv(p)["gbraid"] = "b" }, violation: "only one of gclid"},
		{name: "two identifiers in one", mutate: func(p map[string]any) {
			conv(p)["userIdentifiers"] = []any{map[string]any{"hashedEmail": sha("a@b.co"), "hashedPhoneNumber": sha("+1650")}}
		}, violation: "exactly one of"},
		{name: "six identifiers", mutate: func(p map[string]any) {
			var ids []any
			for range 6 {
				ids = append(ids, map[string]any{"hashedEmail": sha("a@b.co")})
			}
			conv(p)["userIdentifiers"] = ids
		}, violation: "at most 5"},
		{name: "address on a click conversion", mutate: func(p map[string]any) {
			conv(p)["userIdentifiers"] = []any{map[string]any{"addressInfo": map[string]any{}}}
		}, violation: "addressInfo: unknown field"},
		{name: "plain email", mutate: func(p map[string]any) {
			conv(p)["userIdentifiers"] = []any{map[string]any{"hashedEmail": "john@example.com"}}
		}, violation: "hashedEmail: must be a SHA-256"},
		{name: "hashed gclid", mutate: func(p map[string]any) { conv(p)["gclid"] = sha("x") }, violation: "gclid: must be sent in plain text"},
		{name: "value as string", mutate: func(p map[string]any) { conv(p)["conversionValue"] = "49.90" }, violation: "conversionValue: must be a number"},
		{name: "snake_case field", mutate: func(p map[string]any) { conv(p)["order_id"] = "x" }, violation: "order_id: unknown field"},
		{name: "conversion action of another customer", mutate: func(p map[string]any) {
			conv(p)["conversionAction"] = "customers/1/conversionActions/2"
		}, violation: "must be customers/1234567890/conversionActions"},
		{name: "empty order ID", mutate: func(p map[string]any) { conv(p)["orderId"] = "" }, violation: "orderId: must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewGoogle(t, GoogleConfig{})
			g.ExpectViolations()
			p := clone(googleClickPayload(now)).(map[string]any)
			tt.mutate(p)
			r := send(t, "POST", g.URL()+googleClick, "application/json", mustJSON(t, p), googleHeaders(googleToken(t, g)))
			checkPartialFailure(t, r, 1)
			assertViolation(t, g.Violations(), tt.violation)
			if got := g.Accepted(); len(got) != 1 || got[0].ID != "ORD-1" {
				t.Errorf("accepted %v, want only the good conversion ORD-1", got)
			}
		})
	}
}

// checkPartialFailure asserts Google's partial-failure answer naming conversions[index].
func checkPartialFailure(t *testing.T, r response, index int) {
	t.Helper()
	pfe, _ := r.body["partialFailureError"].(map[string]any)
	if r.status != 200 || pfe == nil {
		t.Fatalf("got %d %v, want 200 with partialFailureError", r.status, r.body)
	}
	errs := at(pfe, "details", 0, "errors").([]any)
	el := at(errs[0], "location", "fieldPathElements", 0).(map[string]any)
	if el["fieldName"] != "conversions" || el["index"] != float64(index) {
		t.Errorf("failure located at %v, want conversions[%d]", el, index)
	}
	if res := at(r.body, "results", index).(map[string]any); len(res) != 0 {
		t.Errorf("results[%d] = %v, want an empty object for the failed slot", index, res)
	}
}

func TestGoogleAdjustmentRules(t *testing.T) {
	now := time.Now()
	addr := func(p map[string]any) map[string]any {
		return obj(p, "conversionAdjustments", 0, "userIdentifiers", 1, "addressInfo")
	}
	tests := []struct {
		name      string
		mutate    func(p map[string]any)
		violation string
	}{
		{name: "hashed postal code", mutate: func(p map[string]any) { addr(p)["postalCode"] = sha("10001") }, violation: "postalCode: must be sent in plain text"},
		{name: "hashed country", mutate: func(p map[string]any) { addr(p)["countryCode"] = sha("us") }, violation: "countryCode: must be sent in plain text"},
		{name: "plain first name", mutate: func(p map[string]any) { addr(p)["hashedFirstName"] = "mary" }, violation: "hashedFirstName: must be a SHA-256"},
		{name: "address without postal code", mutate: func(p map[string]any) { delete(addr(p), "postalCode") }, violation: "postalCode: required"},
		{name: "enhancement without order or gclid", mutate: func(p map[string]any) { delete(obj(p, "conversionAdjustments", 0), "orderId") }, violation: "needs orderId"},
		{name: "unknown type", mutate: func(p map[string]any) { obj(p, "conversionAdjustments", 0)["adjustmentType"] = "ENHANCE" }, violation: "must be one of"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewGoogle(t, GoogleConfig{})
			g.ExpectViolations()
			p := clone(googleAdjustmentPayload(now)).(map[string]any)
			tt.mutate(p)
			r := send(t, "POST", g.URL()+googleAdjust, "application/json", mustJSON(t, p), googleHeaders(googleToken(t, g)))
			if r.status != 200 || r.body["partialFailureError"] == nil {
				t.Errorf("got %d %v, want a partial failure", r.status, r.body)
			}
			assertViolation(t, g.Violations(), tt.violation)
		})
	}
}

func TestGoogleTokenEndpoint(t *testing.T) {
	t.Run("client credentials in Basic auth", func(t *testing.T) {
		g := NewGoogle(t, GoogleConfig{})
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"google-refresh-token"}}
		req, _ := http.NewRequest("POST", g.TokenURL(), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("google-client-id", "google-client-secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("Basic auth token request: %v %v", err, resp)
		}
		resp.Body.Close()
	})
	t.Run("wrong refresh token", func(t *testing.T) {
		g := NewGoogle(t, GoogleConfig{})
		g.ExpectViolations()
		form := url.Values{"grant_type": {"refresh_token"}, "client_id": {"google-client-id"}, "client_secret": {"google-client-secret"}, "refresh_token": {"stale"}}
		r := send(t, "POST", g.TokenURL(), "application/x-www-form-urlencoded", form.Encode(), nil)
		if r.status != 400 || r.body["error"] != "invalid_grant" {
			t.Errorf("got %d %v, want 400 invalid_grant", r.status, r.body)
		}
	})
	t.Run("expired token is a violation, revoked one is not", func(t *testing.T) {
		now := time.Now()
		clock := func() time.Time { return now }
		g := NewGoogle(t, GoogleConfig{Now: clock, TokenTTL: time.Minute})
		g.ExpectViolations()
		tok := googleToken(t, g)
		g.RevokeTokens()
		body := mustJSON(t, googleClickPayload(now))
		if r := send(t, "POST", g.URL()+googleClick, "application/json", body, googleHeaders(tok)); r.status != 401 {
			t.Fatalf("revoked token: got %d", r.status)
		}
		if len(g.Violations()) != 0 {
			t.Fatalf("a revoked token is not the caller's fault: %v", g.Violations())
		}
		tok = googleToken(t, g)
		now = now.Add(2 * time.Minute)
		if r := send(t, "POST", g.URL()+googleClick, "application/json", body, googleHeaders(tok)); r.status != 401 {
			t.Fatalf("expired token: got %d", r.status)
		}
		assertViolation(t, g.Violations(), "expired")
	})
}

func TestGoogleScriptedFailures(t *testing.T) {
	t.Run("rejected event is a partial failure at its index", func(t *testing.T) {
		g := NewGoogle(t, GoogleConfig{})
		g.RejectEvent("ORD-2", "CLICK_NOT_FOUND")
		r := send(t, "POST", g.URL()+googleClick, "application/json", mustJSON(t, googleClickPayload(time.Now())), googleHeaders(googleToken(t, g)))
		checkPartialFailure(t, r, 1)
		if got := g.Accepted(); len(got) != 1 || got[0].ID != "ORD-1" {
			t.Errorf("accepted %v, want ORD-1 only", got)
		}
	})
	t.Run("429 RESOURCE_EXHAUSTED with Retry-After", func(t *testing.T) {
		g := NewGoogle(t, GoogleConfig{})
		g.RateLimit(1, time.Second)
		r := send(t, "POST", g.URL()+googleClick, "application/json", mustJSON(t, googleClickPayload(time.Now())), googleHeaders(googleToken(t, g)))
		if r.status != 429 || obj(r.body, "error")["status"] != "RESOURCE_EXHAUSTED" || r.header.Get("Retry-After") != "1" {
			t.Errorf("got %d %v", r.status, r.body)
		}
	})
	t.Run("5xx", func(t *testing.T) {
		g := NewGoogle(t, GoogleConfig{})
		g.FailNext(1, 503)
		r := send(t, "POST", g.URL()+googleClick, "application/json", mustJSON(t, googleClickPayload(time.Now())), googleHeaders(googleToken(t, g)))
		if r.status != 503 || obj(r.body, "error")["status"] != "UNAVAILABLE" {
			t.Errorf("got %d %v", r.status, r.body)
		}
		if len(g.Accepted()) != 0 {
			t.Errorf("accepted conversions of a failed request")
		}
	})
}
