package meta

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/platform"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

const token = "EAAGtest|secret/Token+with=odd&chars"

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func hash(c byte) string { return strings.Repeat(string(c), 64) }

// fullEvent is a Purchase carrying every signal Meta accepts, as the signal package would fill it.
func fullEvent() event.Event {
	return event.Event{
		Name:         "Purchase",
		ID:           "evt-0001",
		Time:         now.Add(-time.Minute),
		SourceURL:    "https://shop.example.com/thanks?order=A-1",
		Referrer:     "https://shop.example.com/checkout",
		ActionSource: event.ActionWebsite,
		Value:        "49.90",
		Currency:     "EUR",
		OrderID:      "A-1",
		ContentType:  "product",
		ContentIDs:   []string{"SKU-1", "SKU-2"},
		Contents: []event.Content{
			{ID: "SKU-1", Quantity: 1, ItemPrice: "29.90"},
			{ID: "SKU-2", Quantity: 2, ItemPrice: "10"},
		},
		NumItems:     3,
		SearchString: "red shoes",
		Custom:       map[string]string{"coupon": "WELCOME", "value": "must not replace the value"},
		User: event.User{
			ExternalID: hash('e'),
			IP:         "2001:db8::1",
			UserAgent:  "Mozilla/5.0 (X11; Linux x86_64)",
			Locale:     "de-DE",
			FBC:        "fb.1.1554763741205.IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk",
			FBP:        "fb.1.1596403881668.1116446470",
			Meta: event.Profile{
				Emails:      []string{hash('a'), hash('b')},
				Phones:      []string{hash('c')},
				FirstName:   hash('1'),
				LastName:    hash('2'),
				DateOfBirth: hash('3'),
				Gender:      hash('4'),
				City:        hash('5'),
				State:       hash('6'),
				Zip:         hash('7'),
				Country:     hash('8'),
			},
		},
	}
}

func newTestSender(t *testing.T, endpoint string, mutate ...func(*Config)) *Sender {
	t.Helper()
	cfg := Config{
		PixelID: "1234567890", AccessToken: token, Endpoint: endpoint,
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

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, got, "", "  "); err != nil {
		t.Fatalf("payload is not JSON: %v", err)
	}
	pretty.WriteByte('\n')
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(pretty.Bytes(), want) {
		t.Errorf("payload differs from %s:\n%s", path, pretty.String())
	}
}

func TestBuildPayloadFullProfileMatchesGolden(t *testing.T) {
	b, err := BuildPayload(Config{TestEventCode: "TEST123", PartnerAgent: "caddycapi_1_0"}, []event.Event{fullEvent()})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "full_profile.json", b)

	// The golden file is reviewed once; these assertions hold whatever it says.
	var p struct {
		Data []map[string]any `json:"data"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	ev := p.Data[0]
	if ev["event_time"] != float64(now.Add(-time.Minute).Unix()) {
		t.Errorf("event_time = %v, want unix seconds", ev["event_time"])
	}
	ud := ev["user_data"].(map[string]any)
	want := []string{"em", "ph", "fn", "ln", "db", "ge", "ct", "st", "zp", "country", "external_id",
		"client_ip_address", "client_user_agent", "fbc", "fbp"}
	for _, k := range want {
		if _, ok := ud[k]; !ok {
			t.Errorf("user_data lacks %s", k)
		}
	}
	if len(ud) != 15 {
		t.Errorf("user_data has %d keys, want the 15 signals", len(ud))
	}
	for _, k := range []string{"em", "ph"} {
		if _, ok := ud[k].([]any); !ok {
			t.Errorf("user_data.%s = %T, want an array", k, ud[k])
		}
	}
	cd := ev["custom_data"].(map[string]any)
	if v, ok := cd["value"].(float64); !ok || v != 49.90 {
		t.Errorf("custom_data.value = %#v, want the number 49.90", cd["value"])
	}
	if !bytes.Contains(b, []byte(`"value":49.90`)) {
		t.Errorf("value is not written exactly as the decimal string: %s", b)
	}
	if cd["coupon"] != "WELCOME" {
		t.Errorf("custom field coupon = %v", cd["coupon"])
	}
	if _, ok := ev["data_processing_options"]; ok {
		t.Error("data_processing_options sent without Limited Data Use")
	}
}

func TestBuildEventLimitedDataUseAsksMetaToGeolocate(t *testing.T) {
	ev := fullEvent()
	ev.Consent.LimitedDataUse = true
	se, err := BuildEvent(ev)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(se)
	for _, want := range []string{`"data_processing_options":["LDU"]`, `"data_processing_options_country":0`, `"data_processing_options_state":0`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("payload lacks %s: %s", want, b)
		}
	}
}

func TestBuildEventOmitsUnknownFields(t *testing.T) {
	ev := event.Event{Name: "Lead", ID: "x", Time: now, ActionSource: event.ActionSystemGenerated,
		User: event.User{ExternalID: hash('e')}}
	se, err := BuildEvent(ev)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(se)
	want := `{"event_name":"Lead","event_time":` + jsonInt(now.Unix()) + `,"event_id":"x","action_source":"system_generated","user_data":{"external_id":"` + hash('e') + `"}}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestBuildEventRefusesWhatMetaWouldRejectTheBatchFor(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*event.Event)
		want   error
	}{
		{"no name", func(e *event.Event) { e.Name = "" }, ErrNoName},
		{"no time", func(e *event.Event) { e.Time = time.Time{} }, ErrNoTime},
		{"website without URL", func(e *event.Event) { e.SourceURL = "" }, ErrWebsiteFields},
		{"website without user agent", func(e *event.Event) { e.User.UserAgent = "" }, ErrWebsiteFields},
		{"no signal at all", func(e *event.Event) {
			e.ActionSource = event.ActionSystemGenerated
			e.User = event.User{}
		}, ErrNoUserData},
		{"value not a number", func(e *event.Event) { e.Value = "49,90" }, platform.ErrNotDecimal},
		{"value with exponent", func(e *event.Event) { e.Value = "1e9" }, platform.ErrNotDecimal},
		{"item price not a number", func(e *event.Event) { e.Contents[0].ItemPrice = "NaN" }, platform.ErrNotDecimal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := fullEvent()
			tt.mutate(&ev)
			if _, err := BuildEvent(ev); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSendPostsEventsAndTokenAsFormFields(t *testing.T) {
	var got *http.Request
	var form url.Values
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		if err := r.ParseForm(); err != nil {
			t.Error(err)
		}
		form = r.PostForm
		io.WriteString(w, `{"events_received":2,"messages":[],"fbtrace_id":"AbC"}`)
	}))
	defer srv.Close()
	s := newTestSender(t, srv.URL, func(c *Config) { c.TestEventCode = "TEST123"; c.PartnerAgent = "caddycapi" })

	r := s.Send(context.Background(), []event.Event{fullEvent(), fullEvent()})
	if r.Outcome != platform.Delivered || r.Reason != "" {
		t.Fatalf("result = %+v", r)
	}
	if got.Method != http.MethodPost || got.URL.Path != "/v25.0/1234567890/events" {
		t.Errorf("request = %s %s", got.Method, got.URL.Path)
	}
	if got.URL.RawQuery != "" {
		t.Errorf("query %q: the token must not travel in the URL", got.URL.RawQuery)
	}
	if ct := got.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		t.Errorf("Content-Type = %q", ct)
	}
	if form.Get("access_token") != token {
		t.Errorf("access_token = %q", form.Get("access_token"))
	}
	if form.Get("test_event_code") != "TEST123" || form.Get("partner_agent") != "caddycapi" {
		t.Errorf("test_event_code %q partner_agent %q", form.Get("test_event_code"), form.Get("partner_agent"))
	}
	var data []ServerEvent
	if err := json.Unmarshal([]byte(form.Get("data")), &data); err != nil {
		t.Fatalf("data is not a JSON array of events: %v", err)
	}
	want, _ := BuildEvent(fullEvent())
	if len(data) != 2 || !reflect.DeepEqual(data[0].UserData, want.UserData) {
		t.Errorf("data = %+v", data)
	}
}

func TestSendSettlesEventsMetaWouldRejectAndSendsTheRest(t *testing.T) {
	var sent []ServerEvent
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		json.Unmarshal([]byte(r.PostForm.Get("data")), &sent)
		io.WriteString(w, `{"events_received":1}`)
	}))
	defer srv.Close()
	s := newTestSender(t, srv.URL)

	old := fullEvent()
	old.Time = now.Add(-MaxAge - time.Second)
	test := fullEvent()
	test.Test = true
	bad := fullEvent()
	bad.Value = "ten"
	timeless := fullEvent()
	timeless.Time = time.Time{}
	r := s.Send(context.Background(), []event.Event{old, fullEvent(), test, bad, timeless})

	if len(sent) != 1 {
		t.Fatalf("sent %d events, want only the good one", len(sent))
	}
	if r.Outcome != platform.Delivered {
		t.Errorf("outcome = %v", r.Outcome)
	}
	for i, want := range map[int]string{0: "older than Meta's 7 days", 2: "test_event_code", 3: `"ten"`, 4: "no time"} {
		if r.Events[i].Outcome != platform.Permanent || !strings.Contains(r.Events[i].Reason, want) {
			t.Errorf("event %d: %+v, want Permanent %q", i, r.Events[i], want)
		}
	}
	if _, ok := r.Events[1]; ok {
		t.Error("the delivered event is listed as an exception")
	}
}

func TestSendWithNothingSendableMakesNoRequest(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("request made")
	}))
	defer srv.Close()
	ev := fullEvent()
	ev.Test = true
	r := newTestSender(t, srv.URL).Send(context.Background(), []event.Event{ev})
	if r.Outcome != platform.Permanent || !strings.Contains(r.Events[0].Reason, "test_event_code") {
		t.Errorf("result = %+v", r)
	}
}

func TestClassify(t *testing.T) {
	retryAfter := http.Header{"Retry-After": {"120"}}
	tests := []struct {
		name       string
		status     int
		header     http.Header
		body       string
		n          int
		want       platform.Outcome
		wholeBatch bool
		after      time.Duration
		reason     string
	}{
		{"accepted", 200, nil, `{"events_received":3,"messages":[],"fbtrace_id":"x"}`, 3, platform.Delivered, false, 0, ""},
		{"short count still delivered", 200, nil, `{"events_received":2}`, 3, platform.Delivered, false, 0, "2 of 3"},
		{"too old, batch", 400, nil, `{"error":{"message":"Invalid parameter","type":"OAuthException","code":100,"error_subcode":2804003,"is_transient":false,"error_user_title":"Event Timestamp Too Old","error_user_msg":"The timestamp is too old.","fbtrace_id":"A1"}}`, 5, platform.Permanent, true, 0, "Event Timestamp Too Old"},
		{"invalid param, single event", 400, nil, `{"error":{"code":100,"error_subcode":2804050}}`, 1, platform.Permanent, false, 0, "subcode 2804050"},
		{"blamed field", 400, nil, `{"error":{"code":100,"message":"bad","error_data":{"blame_field_specs":[["custom_data","currency"]]}}}`, 2, platform.Permanent, true, 0, "custom_data.currency"},
		{"blamed field in string error_data", 400, nil, `{"error":{"code":100,"error_data":"{\"blame_field_specs\":[[\"user_data\",\"ph\"]]}"}}`, 2, platform.Permanent, true, 0, "user_data.ph"},
		{"pixel unknown", 400, nil, `{"error":{"code":100,"error_subcode":33,"message":"Unsupported post request"}}`, 5, platform.Permanent, false, 0, "subcode 33"},
		{"token expired", 400, nil, `{"error":{"code":190,"error_subcode":460,"type":"OAuthException","message":"Error validating access token"}}`, 5, platform.Permanent, false, 0, "code 190"},
		{"permission", 403, nil, `{"error":{"code":200,"message":"Permissions error"}}`, 5, platform.Permanent, false, 0, "code 200"},
		{"capability", 400, nil, `{"error":{"code":3}}`, 5, platform.Permanent, false, 0, "code 3"},
		{"code 10", 400, nil, `{"error":{"code":10}}`, 5, platform.Permanent, false, 0, "code 10"},
		{"unknown code", 400, nil, `{"error":{"code":12345}}`, 5, platform.Permanent, true, 0, "code 12345"},
		{"is_transient", 400, nil, `{"error":{"code":100,"is_transient":true}}`, 5, platform.Retry, false, 0, ""},
		{"unknown api error", 500, nil, `{"error":{"code":1,"message":"An unknown error occurred"}}`, 5, platform.Retry, false, 0, "code 1"},
		{"service down", 503, nil, `{"error":{"code":2}}`, 5, platform.Retry, false, 0, ""},
		{"app throttled", 400, retryAfter, `{"error":{"code":4}}`, 5, platform.Retry, false, 2 * time.Minute, ""},
		{"user throttled", 400, nil, `{"error":{"code":17}}`, 5, platform.Retry, false, 0, ""},
		{"app limit", 400, nil, `{"error":{"code":341}}`, 5, platform.Retry, false, 0, ""},
		{"policy block", 400, nil, `{"error":{"code":368}}`, 5, platform.Retry, false, 0, ""},
		{"ad account throttled", 400, nil, `{"error":{"code":80003}}`, 5, platform.Retry, false, 0, ""},
		{"429 with Retry-After", 429, retryAfter, `{"error":{"code":100}}`, 5, platform.Retry, false, 2 * time.Minute, ""},
		{"429 HTTP date", 429, http.Header{"Retry-After": {now.Add(time.Hour).Format(http.TimeFormat)}}, ``, 5, platform.Retry, false, time.Hour, "HTTP 429"},
		{"502 html", 502, nil, `<html>Bad Gateway</html>`, 5, platform.Retry, false, 0, "HTTP 502"},
		{"200 garbage", 200, nil, `not json`, 5, platform.Retry, false, 0, `"not json"`},
		{"200 empty", 200, nil, ``, 5, platform.Retry, false, 0, "not the Graph API's"},
		{"200 JSON without count", 200, nil, `{}`, 5, platform.Retry, false, 0, ""},
		{"404 html", 404, nil, `<h1>Not Found</h1>`, 5, platform.Retry, false, 0, "HTTP 404"},
		{"error of the wrong type", 400, nil, `{"error":"nope"}`, 5, platform.Retry, false, 0, ""},
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
			if !strings.Contains(r.Reason, tt.reason) {
				t.Errorf("reason %q lacks %q", r.Reason, tt.reason)
			}
		})
	}
}

func TestSendTimeoutIsRetry(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	r := newTestSender(t, srv.URL).Send(ctx, []event.Event{fullEvent()})
	if r.Outcome != platform.Retry || !strings.Contains(r.Reason, "deadline") {
		t.Errorf("result = %+v", r)
	}
}

func TestErrorsNeverContainTheToken(t *testing.T) {
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		tok := r.PostForm.Get("access_token")
		w.WriteHeader(400)
		json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
			"code": 190, "message": "Invalid OAuth access token: " + tok, "error_user_msg": url.QueryEscape(tok),
		}})
	}))
	defer echo.Close()
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		w.WriteHeader(502)
		io.WriteString(w, "upstream said "+r.PostForm.Get("access_token"))
	}))
	defer garbage.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	for name, endpoint := range map[string]string{"echo": echo.URL, "garbage": garbage.URL, "refused": closed.URL} {
		t.Run(name, func(t *testing.T) {
			r := newTestSender(t, endpoint).Send(context.Background(), []event.Event{fullEvent()})
			if r.Outcome == platform.Delivered {
				t.Fatal("delivered")
			}
			for _, s := range []string{token, url.QueryEscape(token)} {
				if strings.Contains(r.Reason, s) {
					t.Errorf("reason leaks the token: %s", r.Reason)
				}
			}
		})
	}
	for _, cfg := range []Config{{PixelID: "1", AccessToken: token, APIVersion: "bad"}, {PixelID: "1", AccessToken: token, Endpoint: "::"}} {
		if _, err := NewSender(cfg); err == nil || strings.Contains(err.Error(), token) {
			t.Errorf("NewSender err = %v", err)
		}
	}
}

func TestNewSenderValidatesConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"ok", Config{PixelID: "123", AccessToken: "t"}, ""},
		{"pixel not digits", Config{PixelID: "12a", AccessToken: "t"}, "pixel_id"},
		{"pixel empty", Config{AccessToken: "t"}, "pixel_id"},
		{"no token", Config{PixelID: "123", AccessToken: " "}, "access_token"},
		{"bad version", Config{PixelID: "123", AccessToken: "t", APIVersion: "25"}, "api_version"},
		{"bad endpoint", Config{PixelID: "123", AccessToken: "t", Endpoint: "graph.facebook.com"}, "endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSender(tt.cfg)
			if tt.want == "" {
				if err != nil || s.url != "https://graph.facebook.com/v25.0/123/events" {
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
	f.Add(200, `{"events_received":1}`, "", 1)
	f.Add(400, `{"error":{"code":100,"error_subcode":2804003,"error_data":{"blame_field_specs":[["a"]]}}}`, "", 3)
	f.Add(429, `{"error":{"code":4}}`, "99999999999999999999", 2)
	f.Add(400, `{"error":{"code":1e40,"error_data":"\"x\""}}`, "Wed, 21 Oct 2015 07:28:00 GMT", 2)
	f.Add(500, "\xff\xfe", "-1", 0)
	f.Fuzz(func(t *testing.T, status int, body, retryAfter string, n int) {
		r := Classify(status, http.Header{"Retry-After": {retryAfter}}, []byte(body), n, now)
		switch r.Outcome {
		case platform.Delivered, platform.Retry, platform.Permanent:
		default:
			t.Fatalf("outcome %v", r.Outcome)
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

// BenchmarkBuildPayload1000 builds a full batch of full-profile events, beside a baseline in the
// same run: encoding/json of the neutral events themselves, which is what the queue pays to store
// them. The ratio shows what Meta's shape costs on top.
func BenchmarkBuildPayload1000(b *testing.B) {
	events := make([]event.Event, 1000)
	for i := range events {
		events[i] = fullEvent()
	}
	cfg := Config{PartnerAgent: "caddycapi"}
	b.Run("baseline=json.Marshal(events)", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(events); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("BuildPayload", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := BuildPayload(cfg, events); err != nil {
				b.Fatal(err)
			}
		}
	})
}
