package google

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/platform"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// The secrets, each with characters that URL escaping changes.
const (
	refreshToken   = "1//refresh+token/secret"
	clientSecret   = "GOCSPX-client secret"
	developerToken = "dev-token/+="
	accessToken    = "ya29.access+token/x"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func hash(c byte) string { return strings.Repeat(string(c), 64) }

// fullEvent is a Purchase carrying every signal Google accepts, as the signal package would fill it.
func fullEvent() event.Event {
	return event.Event{
		Name:         "Purchase",
		ID:           "evt-0001",
		Time:         now.Add(-time.Minute),
		SourceURL:    "https://shop.example.com/thanks?order=A-1",
		ActionSource: event.ActionWebsite,
		Value:        "49.90",
		Currency:     "EUR",
		OrderID:      "A-1",
		User: event.User{
			ExternalID: hash('e'),
			IP:         "203.0.113.9",
			UserAgent:  "Mozilla/5.0 (X11; Linux x86_64)",
			GCLID:      "Cj0KCQiA-gclid",
			GBRAID:     "0AAAAA-gbraid",
			Google: event.Profile{
				Emails:    []string{hash('a')},
				Phones:    []string{hash('c')},
				FirstName: hash('1'),
				LastName:  hash('2'),
				Street:    hash('3'),
				City:      "berlin",
				State:     "be",
				Zip:       "10115",
				Country:   "de",
			},
		},
	}
}

var conversions = map[string]Conversion{"Purchase": {ActionID: "987654", Label: "AbC-label"}, "Lead": {ActionID: "111"}}

// fakeGoogle is an OAuth token endpoint and a Google Ads API that records what it receives.
type fakeGoogle struct {
	t *testing.T
	*httptest.Server

	mu          sync.Mutex
	tokenCalls  int
	tokenForm   map[string][]string
	requests    map[string]*http.Request
	bodies      map[string][]byte
	answer      map[string]func(w http.ResponseWriter, body []byte)
	tokenAnswer func(w http.ResponseWriter)
}

func newFakeGoogle(t *testing.T) *fakeGoogle {
	f := &fakeGoogle{t: t, requests: map[string]*http.Request{}, bodies: map[string][]byte{},
		answer: map[string]func(http.ResponseWriter, []byte){}}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeGoogle) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.URL.Path == "/token" {
		f.tokenCalls++
		r.ParseForm()
		f.tokenForm = r.PostForm
		if f.tokenAnswer != nil {
			f.tokenAnswer(w)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"`+accessToken+`","expires_in":3599,"token_type":"Bearer","scope":"https://www.googleapis.com/auth/adwords"}`)
		return
	}
	body, _ := io.ReadAll(r.Body)
	method := r.URL.Path[strings.LastIndexByte(r.URL.Path, ':')+1:]
	f.requests[method] = r
	f.bodies[method] = body
	if a := f.answer[method]; a != nil {
		a(w, body)
		return
	}
	io.WriteString(w, `{"results":[{}],"jobId":"1"}`)
}

func newTestSender(t *testing.T, f *fakeGoogle, mutate ...func(*Config)) *Sender {
	t.Helper()
	cfg := Config{
		CustomerID: "123-456-7890", LoginCustomerID: "999-888-7777",
		DeveloperToken: developerToken, ClientID: "client.apps.googleusercontent.com",
		ClientSecret: clientSecret, RefreshToken: refreshToken,
		Conversions: conversions, Endpoint: f.URL, TokenEndpoint: f.URL + "/token",
		Now: func() time.Time { return now },
	}
	for _, m := range mutate {
		m(&cfg)
	}
	s, err := NewSender(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func golden(t *testing.T, name string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("payload differs from %s:\n%s", path, got)
	}
}

func TestBuildRequestsFullProfileMatchesGoldenAndCarriesNineSignals(t *testing.T) {
	clicks, adjs, err := BuildRequests("1234567890", conversions, time.UTC, []event.Event{fullEvent()})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "full_profile_click.json", clicks)
	golden(t, "full_profile_adjustment.json", adjs)

	want := []string{"email", "phone", "first_name", "last_name", "street", "city", "region", "postal_code", "country"}
	if got := Signals(&clicks.Conversions[0], &adjs.ConversionAdjustments[0]); !reflect.DeepEqual(got, want) {
		t.Errorf("signals = %v, want all nine", got)
	}
	c := clicks.Conversions[0]
	if c.Gclid == "" || c.Gbraid != "" || c.Wbraid != "" {
		t.Errorf("click IDs: gclid %q gbraid %q wbraid %q, want gclid only", c.Gclid, c.Gbraid, c.Wbraid)
	}
	for _, id := range c.UserIdentifiers {
		if id.AddressInfo != nil {
			t.Error("uploadClickConversions takes email and phone only")
		}
	}
	b, _ := json.Marshal(clicks)
	for _, want := range []string{`"partialFailure":true`, `"conversionValue":49.90`, `"conversionDateTime":"2026-11-27 11:59:00+00:00"`,
		`"conversionAction":"customers/1234567890/conversionActions/987654"`, `"consent":{"adUserData":"GRANTED"}`, `"userIdentifierSource":"FIRST_PARTY"`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("click request lacks %s", want)
		}
	}
	a := adjs.ConversionAdjustments[0]
	if a.AdjustmentType != "ENHANCEMENT" || a.OrderID != "A-1" || a.UserAgent == "" || a.GclidDateTimePair == nil {
		t.Errorf("adjustment = %+v", a)
	}
	if addr := a.UserIdentifiers[len(a.UserIdentifiers)-1].AddressInfo; addr == nil || addr.CountryCode != "DE" {
		t.Errorf("address = %+v, want country code upper case", addr)
	}
}

func TestConversionDateTimeFormat(t *testing.T) {
	la, err := time.LoadLocation("America/Los_Angeles")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	tm := time.Date(2019, 1, 1, 20, 32, 45, 999, time.UTC)
	if got := ConversionDateTime(tm, la); got != "2019-01-01 12:32:45-08:00" {
		t.Errorf("got %q", got)
	}
	if got := ConversionDateTime(tm, time.FixedZone("", 5*3600+1800)); got != "2019-01-02 02:02:45+05:30" {
		t.Errorf("got %q", got)
	}
}

func TestClickIDPreference(t *testing.T) {
	tests := []struct {
		gclid, gbraid, wbraid string
		want                  [3]string
	}{
		{"g", "b", "w", [3]string{"g", "", ""}},
		{"", "b", "w", [3]string{"", "b", ""}},
		{"", "", "w", [3]string{"", "", "w"}},
	}
	for _, tt := range tests {
		ev := fullEvent()
		ev.User.GCLID, ev.User.GBRAID, ev.User.WBRAID = tt.gclid, tt.gbraid, tt.wbraid
		c, ok, err := BuildClickConversion(ev, "a", time.UTC)
		if !ok || err != nil || [3]string{c.Gclid, c.Gbraid, c.Wbraid} != tt.want {
			t.Errorf("%v: got %q %q %q", tt, c.Gclid, c.Gbraid, c.Wbraid)
		}
	}
	ev := fullEvent()
	ev.User.GCLID, ev.User.GBRAID = "", ""
	if _, ok, _ := BuildClickConversion(ev, "a", time.UTC); ok {
		t.Error("click conversion without a click ID")
	}
}

func TestIdentifiersAtMostFiveOnePerObject(t *testing.T) {
	ev := fullEvent()
	ev.User.Google.Emails = []string{hash('a'), hash('b'), hash('c'), hash('d')}
	ev.User.Google.Phones = []string{hash('5'), hash('6'), hash('7')}
	c, _, _ := BuildClickConversion(ev, "a", time.UTC)
	a, _ := BuildAdjustment(ev, "a", time.UTC)
	for name, ids := range map[string][]UserIdentifier{"click": c.UserIdentifiers, "adjustment": a.UserIdentifiers} {
		if len(ids) != 5 {
			t.Errorf("%s: %d identifiers, want 5", name, len(ids))
		}
		phones := 0
		for _, id := range ids {
			set := 0
			for _, present := range []bool{id.HashedEmail != "", id.HashedPhoneNumber != "", id.AddressInfo != nil} {
				if present {
					set++
				}
			}
			if set != 1 || id.UserIdentifierSource != "FIRST_PARTY" {
				t.Errorf("%s: identifier %+v sets %d fields", name, id, set)
			}
			if id.HashedPhoneNumber != "" {
				phones++
			}
		}
		if phones == 0 {
			t.Errorf("%s: emails crowded out every phone", name)
		}
	}
	if a.UserIdentifiers[4].AddressInfo == nil {
		t.Error("adjustment: the address did not keep its place")
	}
}

func TestAddressNeedsNamesCountryAndPostalCode(t *testing.T) {
	ev := fullEvent()
	ev.User.Google.Zip = ""
	a, ok := BuildAdjustment(ev, "a", time.UTC)
	if !ok {
		t.Fatal("email and phone alone still make an enhancement")
	}
	for _, id := range a.UserIdentifiers {
		if id.AddressInfo != nil {
			t.Errorf("incomplete address sent: %+v", id.AddressInfo)
		}
	}
}

func TestConsentDeniedSendsNoUserData(t *testing.T) {
	ev := fullEvent()
	ev.Consent.AdUserDataDenied = true
	c, ok, _ := BuildClickConversion(ev, "a", time.UTC)
	if !ok || c.Consent.AdUserData != "DENIED" || c.UserIdentifiers != nil || c.UserIPAddress != "" {
		t.Errorf("click = %+v", c)
	}
	if _, ok := BuildAdjustment(ev, "a", time.UTC); ok {
		t.Error("enhancement built without ad user data consent")
	}
}

func TestSendPostsBothUploadsWithAuthHeadersAndCachesTheToken(t *testing.T) {
	f := newFakeGoogle(t)
	s := newTestSender(t, f)
	for range 2 {
		if r := s.Send(context.Background(), []event.Event{fullEvent()}); r.Outcome != platform.Delivered || len(r.Events) != 0 {
			t.Fatalf("result = %+v", r)
		}
	}
	if f.tokenCalls != 1 {
		t.Errorf("%d token refreshes for two sends, want 1 (cached)", f.tokenCalls)
	}
	for k, want := range map[string]string{"grant_type": "refresh_token", "refresh_token": refreshToken,
		"client_id": "client.apps.googleusercontent.com", "client_secret": clientSecret} {
		if got := f.tokenForm[k]; len(got) != 1 || got[0] != want {
			t.Errorf("token form %s = %q, want %q", k, got, want)
		}
	}
	for _, method := range []string{"uploadClickConversions", "uploadConversionAdjustments"} {
		r := f.requests[method]
		if r == nil {
			t.Fatalf("%s not called", method)
		}
		if r.Method != http.MethodPost || r.URL.Path != "/v24/customers/1234567890:"+method {
			t.Errorf("%s: %s %s", method, r.Method, r.URL.Path)
		}
		for h, want := range map[string]string{"Authorization": "Bearer " + accessToken, "developer-token": developerToken,
			"login-customer-id": "9998887777", "Content-Type": "application/json"} {
			if got := r.Header.Get(h); got != want {
				t.Errorf("%s: header %s = %q, want %q", method, h, got, want)
			}
		}
	}
	var clicks ClickConversionsRequest
	if err := json.Unmarshal(f.bodies["uploadClickConversions"], &clicks); err != nil || !clicks.PartialFailure || len(clicks.Conversions) != 1 {
		t.Errorf("click body = %s (%v)", f.bodies["uploadClickConversions"], err)
	}
	var adjs ConversionAdjustmentsRequest
	if err := json.Unmarshal(f.bodies["uploadConversionAdjustments"], &adjs); err != nil || !adjs.PartialFailure || len(adjs.ConversionAdjustments) != 1 {
		t.Errorf("adjustment body = %s (%v)", f.bodies["uploadConversionAdjustments"], err)
	}
}

func TestSendSettlesEventsGoogleCannotTake(t *testing.T) {
	f := newFakeGoogle(t)
	s := newTestSender(t, f)
	unconfigured := fullEvent()
	unconfigured.Name = "AddToCart"
	test := fullEvent()
	test.Test = true
	old := fullEvent()
	old.Time = now.Add(-MaxAge - time.Hour)
	nothing := fullEvent()
	nothing.User.GCLID, nothing.User.GBRAID, nothing.OrderID = "", "", ""
	staleNoClick := fullEvent()
	staleNoClick.Time = now.Add(-48 * time.Hour)
	staleNoClick.User.GCLID, staleNoClick.User.GBRAID = "", ""
	staleClick := fullEvent()
	staleClick.Time = now.Add(-48 * time.Hour)

	r := s.Send(context.Background(), []event.Event{unconfigured, test, old, nothing, staleNoClick, staleClick})
	wants := []string{`no conversion configured for event "AddToCart"`, "no test event code", "older than Google's 90 days",
		"no gclid", "too old (over 24 hours) to enhance"}
	for i, want := range wants {
		if er := r.Events[i]; er.Outcome != platform.Permanent || !strings.Contains(er.Reason, want) {
			t.Errorf("event %d: %+v, want Permanent %q", i, er, want)
		}
	}
	if r.Events[5].Outcome != platform.Delivered {
		t.Errorf("stale event with a click: %+v", r.Events[5])
	}
	if f.requests["uploadConversionAdjustments"] != nil {
		t.Error("an enhancement was sent for an event older than 24 hours")
	}
	var clicks ClickConversionsRequest
	json.Unmarshal(f.bodies["uploadClickConversions"], &clicks)
	if len(clicks.Conversions) != 1 {
		t.Errorf("%d click conversions sent, want 1", len(clicks.Conversions))
	}
}

func TestSendWithNothingSendableMakesNoRequest(t *testing.T) {
	f := newFakeGoogle(t)
	ev := fullEvent()
	ev.Name = "Unmapped"
	r := newTestSender(t, f).Send(context.Background(), []event.Event{ev})
	if r.Outcome != platform.Permanent || f.tokenCalls != 0 || len(f.requests) != 0 {
		t.Errorf("result %+v, %d token calls, %d requests", r, f.tokenCalls, len(f.requests))
	}
}

func TestSendMapsPartialFailuresToEvents(t *testing.T) {
	f := newFakeGoogle(t)
	f.answer["uploadClickConversions"] = func(w http.ResponseWriter, body []byte) {
		io.WriteString(w, `{"results":[{"gclid":"a"},{},{}],"partialFailureError":{"code":3,"message":"multiple errors","details":[{"@type":"type.googleapis.com/google.ads.googleads.v24.errors.GoogleAdsFailure","errors":[
			{"errorCode":{"conversionUploadError":"CLICK_NOT_FOUND"},"message":"The click was not found.","location":{"fieldPathElements":[{"fieldName":"conversions","index":1},{"fieldName":"gclid"}]}},
			{"errorCode":{"internalError":"TRANSIENT_ERROR"},"message":"Try again.","location":{"fieldPathElements":[{"fieldName":"conversions","index":2}]}}]}]}}`)
	}
	f.answer["uploadConversionAdjustments"] = func(w http.ResponseWriter, body []byte) {
		io.WriteString(w, `{"results":[{},{},{}],"partialFailureError":{"code":3,"message":"x","details":[{"errors":[
			{"errorCode":{"conversionAdjustmentUploadError":"CONVERSION_ALREADY_ENHANCED"},"location":{"fieldPathElements":[{"fieldName":"conversion_adjustments","index":0}]}},
			{"errorCode":{"conversionAdjustmentUploadError":"CONVERSION_NOT_FOUND"},"message":"No conversion with that order ID.","location":{"fieldPathElements":[{"fieldName":"conversion_adjustments","index":2}]}}]}]}}`)
	}
	s := newTestSender(t, f)
	evs := []event.Event{fullEvent(), fullEvent(), fullEvent(), fullEvent()}
	evs[3].Name = "Unmapped"
	r := s.Send(context.Background(), evs)

	if e0, ok := r.Events[0]; ok && e0.Outcome != platform.Delivered {
		t.Errorf("event 0: %+v (click ok, enhancement already done)", e0)
	}
	if e := r.Events[1]; e.Outcome != platform.Permanent || !strings.Contains(e.Reason, "click conversion: google: conversionUploadError.CLICK_NOT_FOUND") {
		t.Errorf("event 1: %+v", e)
	}
	if e := r.Events[2]; e.Outcome != platform.Retry || !strings.Contains(e.Reason, "TRANSIENT_ERROR") || !strings.Contains(e.Reason, "CONVERSION_NOT_FOUND") {
		t.Errorf("event 2: %+v, want Retry naming both failures", e)
	}
	if e := r.Events[3]; e.Outcome != platform.Permanent {
		t.Errorf("event 3: %+v", e)
	}
}

func TestClassify(t *testing.T) {
	gaf := func(code string, index int) string {
		loc := ""
		if index >= 0 {
			loc = fmt.Sprintf(`,"location":{"fieldPathElements":[{"fieldName":"conversions","index":%d}]}`, index)
		}
		return `{"@type":"type.googleapis.com/google.ads.googleads.v24.errors.GoogleAdsFailure","errors":[{"errorCode":` + code + `,"message":"m"` + loc + `}],"requestId":"req1"}`
	}
	tests := []struct {
		name       string
		status     int
		header     http.Header
		body       string
		n          int
		want       platform.Outcome
		events     map[int]platform.Outcome
		wholeBatch bool
		after      time.Duration
		reason     string
	}{
		{"all uploaded", 200, nil, `{"results":[{},{}]}`, 2, platform.Delivered, nil, false, 0, ""},
		{"empty partial failure", 200, nil, `{"results":[{}],"partialFailureError":{}}`, 1, platform.Delivered, nil, false, 0, ""},
		{"one failed", 200, nil, `{"partialFailureError":{"code":3,"details":[` + gaf(`{"conversionUploadError":"UNPARSEABLE_GCLID"}`, 1) + `]}}`, 3,
			platform.Delivered, map[int]platform.Outcome{1: platform.Permanent}, false, 0, ""},
		{"one transient", 200, nil, `{"partialFailureError":{"code":3,"details":[` + gaf(`{"databaseError":"CONCURRENT_MODIFICATION"}`, 0) + `]}}`, 3,
			platform.Delivered, map[int]platform.Outcome{0: platform.Retry}, false, 0, ""},
		{"index out of range applies to all", 200, nil, `{"partialFailureError":{"code":3,"details":[` + gaf(`{"x":"Y"}`, 9) + `]}}`, 2,
			platform.Permanent, nil, false, 0, "x.Y"},
		{"partial failure without detail", 200, nil, `{"partialFailureError":{"code":3,"message":"boom"}}`, 2, platform.Permanent, nil, false, 0, "boom"},
		{"unauthenticated", 401, nil, `{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED","details":[` + gaf(`{"authenticationError":"OAUTH_TOKEN_INVALID"}`, -1) + `]}}`, 2,
			platform.Permanent, nil, false, 0, "authenticationError.OAUTH_TOKEN_INVALID"},
		{"developer token not approved", 403, nil, `{"error":{"code":403,"status":"PERMISSION_DENIED","details":[` + gaf(`{"authorizationError":"DEVELOPER_TOKEN_NOT_APPROVED"}`, -1) + `]}}`, 2,
			platform.Permanent, nil, false, 0, "DEVELOPER_TOKEN_NOT_APPROVED"},
		{"invalid argument, unnamed", 400, nil, `{"error":{"code":400,"status":"INVALID_ARGUMENT","message":"Request contains an invalid argument."}}`, 2,
			platform.Permanent, nil, true, 0, "INVALID_ARGUMENT"},
		{"invalid argument, single", 400, nil, `{"error":{"code":400,"status":"INVALID_ARGUMENT"}}`, 1, platform.Permanent, nil, false, 0, ""},
		{"invalid argument naming one", 400, nil, `{"error":{"code":400,"status":"INVALID_ARGUMENT","details":[` + gaf(`{"fieldError":"INVALID_VALUE"}`, 1) + `]}}`, 3,
			platform.Retry, map[int]platform.Outcome{1: platform.Permanent}, false, 0, "not processed"},
		{"quota with retryDelay", 429, nil, `{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"errors":[{"errorCode":{"quotaError":"RESOURCE_EXHAUSTED"},"details":{"quotaErrorDetails":{"retryDelay":"120s"}}}]}]}}`, 2,
			platform.Retry, nil, false, 2 * time.Minute, "RESOURCE_EXHAUSTED"},
		{"429 Retry-After", 429, http.Header{"Retry-After": {"30"}}, ``, 2, platform.Retry, nil, false, 30 * time.Second, "HTTP 429"},
		{"transient in 400", 400, nil, `{"error":{"code":400,"details":[` + gaf(`{"internalError":"TRANSIENT_ERROR"}`, -1) + `]}}`, 2, platform.Retry, nil, false, 0, "TRANSIENT_ERROR"},
		{"deadline", 504, nil, `{"error":{"code":504,"status":"DEADLINE_EXCEEDED"}}`, 2, platform.Retry, nil, false, 0, ""},
		{"500 internal", 500, nil, `{"error":{"code":500,"status":"INTERNAL","details":[` + gaf(`{"internalError":"INTERNAL_ERROR"}`, -1) + `]}}`, 2, platform.Retry, nil, false, 0, ""},
		{"503 html", 503, nil, `<html>unavailable</html>`, 2, platform.Retry, nil, false, 0, "HTTP 503"},
		{"200 garbage", 200, nil, `]]]`, 2, platform.Retry, nil, false, 0, "not the Google Ads API's"},
		{"404 html", 404, nil, `<html>nope</html>`, 2, platform.Retry, nil, false, 0, "HTTP 404"},
		{"error code not a string", 400, nil, `{"error":{"code":400,"details":[{"errors":[{"errorCode":{"x":7}}]}]}}`, 2, platform.Permanent, nil, false, 0, "x.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.header
			if h == nil {
				h = http.Header{}
			}
			r := Classify(tt.status, h, []byte(tt.body), tt.n, now)
			if r.Outcome != tt.want || r.WholeBatch != tt.wholeBatch || r.RetryAfter != tt.after {
				t.Errorf("got %v whole=%v after=%v, want %v whole=%v after=%v (%s)", r.Outcome, r.WholeBatch, r.RetryAfter, tt.want, tt.wholeBatch, tt.after, r.Reason)
			}
			if len(r.Events) != len(tt.events) {
				t.Errorf("events = %+v, want %v", r.Events, tt.events)
			}
			for i, o := range tt.events {
				if r.Events[i].Outcome != o || r.Events[i].Reason == "" {
					t.Errorf("event %d = %+v, want %v with a reason", i, r.Events[i], o)
				}
			}
			if !strings.Contains(r.Reason, tt.reason) {
				t.Errorf("reason %q lacks %q", r.Reason, tt.reason)
			}
		})
	}
}

func TestTokenErrors(t *testing.T) {
	tests := []struct {
		name   string
		answer func(w http.ResponseWriter)
		want   platform.Outcome
		reason string
	}{
		{"refresh token revoked", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			io.WriteString(w, `{"error":"invalid_grant","error_description":"Token has been expired or revoked. `+refreshToken+`"}`)
		}, platform.Permanent, "invalid_grant"},
		{"client unknown", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(401)
			io.WriteString(w, `{"error":"invalid_client","error_description":"The OAuth client was not found."}`)
		}, platform.Permanent, "invalid_client"},
		{"token endpoint down", func(w http.ResponseWriter) {
			w.WriteHeader(503)
			io.WriteString(w, "down "+clientSecret)
		}, platform.Retry, "HTTP 503"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeGoogle(t)
			f.tokenAnswer = tt.answer
			r := newTestSender(t, f).Send(context.Background(), []event.Event{fullEvent()})
			if r.Outcome != tt.want || !strings.Contains(r.Reason, tt.reason) {
				t.Errorf("result = %+v", r)
			}
			assertNoSecret(t, r)
			if len(f.requests) != 0 {
				t.Error("uploaded without an access token")
			}
		})
	}
}

func TestUnauthorizedAnswerForgetsTheToken(t *testing.T) {
	f := newFakeGoogle(t)
	f.answer["uploadClickConversions"] = func(w http.ResponseWriter, body []byte) {
		w.WriteHeader(401)
		io.WriteString(w, `{"error":{"code":401,"status":"UNAUTHENTICATED","details":[{"errors":[{"errorCode":{"authenticationError":"OAUTH_TOKEN_EXPIRED"}}]}]}}`)
	}
	s := newTestSender(t, f)
	ev := fullEvent()
	ev.OrderID = ""
	s.Send(context.Background(), []event.Event{ev})
	s.Send(context.Background(), []event.Event{ev})
	if f.tokenCalls != 2 {
		t.Errorf("%d token refreshes, want a new one after the 401", f.tokenCalls)
	}
}

func assertNoSecret(t *testing.T, r platform.Result) {
	t.Helper()
	texts := []string{r.Reason}
	for _, er := range r.Events {
		texts = append(texts, er.Reason)
	}
	for _, text := range texts {
		for _, secret := range []string{refreshToken, clientSecret, developerToken, accessToken} {
			if strings.Contains(text, secret) || strings.Contains(text, strings.ReplaceAll(secret, "/", "%2F")) {
				t.Errorf("reason leaks a secret: %s", text)
			}
		}
	}
}

func TestErrorsNeverContainSecrets(t *testing.T) {
	f := newFakeGoogle(t)
	echo := func(w http.ResponseWriter, body []byte) {
		w.WriteHeader(400)
		json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": 400, "status": "INVALID_ARGUMENT",
			"message": "you sent " + accessToken + " " + developerToken + " " + clientSecret + " " + refreshToken}})
	}
	f.answer["uploadClickConversions"] = echo
	f.answer["uploadConversionAdjustments"] = func(w http.ResponseWriter, body []byte) {
		w.WriteHeader(502)
		io.WriteString(w, accessToken)
	}
	r := newTestSender(t, f).Send(context.Background(), []event.Event{fullEvent(), fullEvent()})
	if r.Outcome == platform.Delivered {
		t.Fatal("delivered")
	}
	assertNoSecret(t, r)

	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	s, _ := NewSender(Config{CustomerID: "1234567890", DeveloperToken: developerToken, ClientID: "c", ClientSecret: clientSecret,
		RefreshToken: refreshToken, Conversions: conversions, TokenEndpoint: closed.URL + "/token?x=" + refreshToken})
	r = s.Send(context.Background(), []event.Event{fullEvent()})
	if r.Outcome != platform.Retry {
		t.Errorf("network error: %+v", r)
	}
	assertNoSecret(t, r)
}

func TestSendTimeoutIsRetry(t *testing.T) {
	f := newFakeGoogle(t)
	release := make(chan struct{})
	f.answer["uploadClickConversions"] = func(w http.ResponseWriter, body []byte) { <-release }
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	ev := fullEvent()
	ev.OrderID = ""
	r := newTestSender(t, f).Send(ctx, []event.Event{ev})
	if r.Outcome != platform.Retry || !strings.Contains(r.Reason, "deadline") {
		t.Errorf("result = %+v", r)
	}
}

func TestNewSenderValidatesConfig(t *testing.T) {
	ok := Config{CustomerID: "123-456-7890", DeveloperToken: "d", ClientID: "c", ClientSecret: "s", RefreshToken: "r", Conversions: conversions}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"ok", func(*Config) {}, ""},
		{"customer too short", func(c *Config) { c.CustomerID = "12345" }, "customer_id"},
		{"login customer bad", func(c *Config) { c.LoginCustomerID = "abc" }, "login_customer_id"},
		{"no developer token", func(c *Config) { c.DeveloperToken = "" }, "developer_token"},
		{"no refresh token", func(c *Config) { c.RefreshToken = " " }, "refresh_token"},
		{"no client secret", func(c *Config) { c.ClientSecret = "" }, "client_secret"},
		{"no conversions", func(c *Config) { c.Conversions = nil }, "conversion"},
		{"bad action", func(c *Config) { c.Conversions = map[string]Conversion{"Purchase": {ActionID: "AW-1"}} }, "action ID"},
		{"bad version", func(c *Config) { c.APIVersion = "24" }, "api_version"},
		{"bad token endpoint", func(c *Config) { c.TokenEndpoint = "oauth2.googleapis.com" }, "token_endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mutate(&cfg)
			s, err := NewSender(cfg)
			if tt.want == "" {
				if err != nil || s.clickURL != "https://googleads.googleapis.com/v24/customers/1234567890:uploadClickConversions" {
					t.Errorf("err = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one naming %s", err, tt.want)
			}
		})
	}
}

func FuzzClassify(f *testing.F) {
	f.Add(200, `{"results":[{}]}`, "", 1)
	f.Add(200, `{"partialFailureError":{"code":3,"details":[{"errors":[{"errorCode":{"a":"TRANSIENT_ERROR"},"location":{"fieldPathElements":[{"fieldName":"conversions","index":-4}]}}]}]}}`, "", 3)
	f.Add(400, `{"error":{"code":400,"status":"INVALID_ARGUMENT","details":[{"errors":[{"errorCode":{"b":1},"location":{"fieldPathElements":[{"fieldName":"conversions","index":99999999999}]}}]}]}}`, "", 2)
	f.Add(429, `{"error":{"details":[{"errors":[{"details":{"quotaErrorDetails":{"retryDelay":"-9999999h"}}}]}]}}`, "1e9", 2)
	f.Add(0, "\xff", "Wed, 21 Oct 2015 07:28:00 GMT", -3)
	f.Fuzz(func(t *testing.T, status int, body, retryAfter string, n int) {
		r := Classify(status, http.Header{"Retry-After": {retryAfter}}, []byte(body), n, now)
		check := func(o platform.Outcome) {
			switch o {
			case platform.Delivered, platform.Retry, platform.Permanent:
			default:
				t.Fatalf("outcome %v", o)
			}
		}
		check(r.Outcome)
		for i, er := range r.Events {
			check(er.Outcome)
			if i < 0 || i >= n {
				t.Fatalf("event index %d outside a request of %d", i, n)
			}
		}
		if r.RetryAfter < 0 || r.RetryAfter > 24*time.Hour {
			t.Fatalf("RetryAfter %v", r.RetryAfter)
		}
		if r.WholeBatch && (r.Outcome != platform.Permanent || n <= 1) {
			t.Fatalf("WholeBatch on %v with %d events", r.Outcome, n)
		}
		if r.Outcome != platform.Delivered && r.Reason == "" {
			t.Fatal("failure without a reason")
		}
	})
}

func BenchmarkBuildRequests2000(b *testing.B) {
	events := make([]event.Event, 2000)
	for i := range events {
		events[i] = fullEvent()
	}
	b.ReportAllocs()
	for b.Loop() {
		clicks, adjs, err := BuildRequests("1234567890", conversions, time.UTC, events)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(clicks); err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(adjs); err != nil {
			b.Fatal(err)
		}
	}
}

func TestConcurrentSendsShareOneTokenRefresh(t *testing.T) {
	f := newFakeGoogle(t)
	s := newTestSender(t, f)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if r := s.Send(context.Background(), []event.Event{fullEvent()}); r.Outcome != platform.Delivered {
				t.Errorf("result = %+v", r)
			}
		})
	}
	wg.Wait()
	if f.tokenCalls != 1 {
		t.Errorf("%d token refreshes for 8 concurrent sends, want 1", f.tokenCalls)
	}
}

func TestEventWithoutTimeIsSettled(t *testing.T) {
	f := newFakeGoogle(t)
	ev := fullEvent()
	ev.Time = time.Time{}
	r := newTestSender(t, f).Send(context.Background(), []event.Event{ev})
	if r.Outcome != platform.Permanent || !strings.Contains(r.Events[0].Reason, "no time") {
		t.Errorf("result = %+v", r)
	}
}
