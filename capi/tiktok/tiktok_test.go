package tiktok

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/platform"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

const token = "tt-secret-token/with+odd=chars"

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func hash(c byte) string { return strings.Repeat(string(c), 64) }

// fullEvent is a Purchase carrying every signal TikTok accepts, as the signal package would fill it.
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
			{ID: "SKU-1", Quantity: 1, ItemPrice: "29.90", Title: "Red shoe", Category: "Shoes", Brand: "Acme"},
			{ID: "SKU-2", Quantity: 2, ItemPrice: "10"},
		},
		NumItems:     3,
		SearchString: "red shoes",
		Custom:       map[string]string{"coupon": "WELCOME"},
		User: event.User{
			ExternalID: hash('e'),
			IP:         "203.0.113.9",
			UserAgent:  "Mozilla/5.0 (X11; Linux x86_64)",
			Locale:     "de-DE",
			TTCLID:     "E.C.P.abcDEF123",
			TTP:        "2F7h37YkS1j57AYSKTI7IHhJPYH",
			GCLID:      "not-for-tiktok",
			TikTok: event.Profile{
				Emails:    []string{hash('a')},
				Phones:    []string{hash('c'), hash('d')},
				FirstName: hash('1'),
				LastName:  hash('2'),
				Zip:       hash('7'),
				City:      "berlin",
				State:     "be",
				Country:   "de",
			},
			Meta: event.Profile{FirstName: "not-for-tiktok"},
		},
	}
}

func newTestSender(t *testing.T, endpoint string, mutate ...func(*Config)) *Sender {
	t.Helper()
	cfg := Config{PixelCode: "C4ABCDEF12345", AccessToken: token, Endpoint: endpoint,
		Now: func() time.Time { return now }}
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
	b, err := BuildPayload(Config{PixelCode: "C4ABCDEF12345", TestEventCode: "TEST123"}, []event.Event{fullEvent()})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "full_profile.json", b)

	var p struct {
		EventSource   string           `json:"event_source"`
		EventSourceID string           `json:"event_source_id"`
		Data          []map[string]any `json:"data"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if p.EventSource != "web" || p.EventSourceID != "C4ABCDEF12345" {
		t.Errorf("event_source %q, event_source_id %q", p.EventSource, p.EventSourceID)
	}
	ev := p.Data[0]
	if ev["event_time"] != float64(now.Add(-time.Minute).Unix()) {
		t.Errorf("event_time = %v, want unix seconds", ev["event_time"])
	}
	user := ev["user"].(map[string]any)
	// The 12 signals of DESIGN.md §1, the address counted as one.
	for _, k := range []string{"email", "phone", "external_id", "ttclid", "ttp", "ip", "user_agent", "locale",
		"first_name", "last_name", "zip_code", "city", "state", "country"} {
		if _, ok := user[k]; !ok {
			t.Errorf("user lacks %s", k)
		}
	}
	if len(user) != 14 {
		t.Errorf("user has %d keys: %v", len(user), user)
	}
	if _, ok := user["email"].([]any); !ok {
		t.Errorf("email = %T, want an array", user["email"])
	}
	props := ev["properties"].(map[string]any)
	if props["value"] != 49.90 {
		t.Errorf("value = %#v, want the number 49.90", props["value"])
	}
	if _, ok := props["coupon"]; ok {
		t.Error("custom property sent")
	}
	c0 := props["contents"].([]any)[0].(map[string]any)
	for k, want := range map[string]any{"content_id": "SKU-1", "quantity": 1.0, "price": 29.90,
		"content_name": "Red shoe", "content_category": "Shoes", "brand": "Acme"} {
		if c0[k] != want {
			t.Errorf("contents[0].%s = %#v, want %#v", k, c0[k], want)
		}
	}
	if ev["limited_data_use"] != false {
		t.Errorf("limited_data_use = %v", ev["limited_data_use"])
	}
	if page := ev["page"].(map[string]any); page["url"] != fullEvent().SourceURL || page["referrer"] != fullEvent().Referrer {
		t.Errorf("page = %v", page)
	}
}

func TestEventNameMapsOursToTikToks(t *testing.T) {
	mapping := map[string]string{"Purchase": "CompletePayment", "Lead": ""}
	tests := []struct{ ours, want string }{
		{"Purchase", "CompletePayment"},
		{"Lead", "Lead"}, // an empty mapping does not erase the name
		{"AddToCart", "AddToCart"},
		{"PageView", "Pageview"},
		{"MyCustomEvent", "MyCustomEvent"},
	}
	for _, tt := range tests {
		if got := EventName(tt.ours, mapping); got != tt.want {
			t.Errorf("EventName(%q) = %q, want %q", tt.ours, got, tt.want)
		}
	}
	if got := EventName("Purchase", nil); got != "Purchase" {
		t.Errorf("default Purchase = %q", got)
	}
}

func TestBuildEventLimitedDataUse(t *testing.T) {
	ev := fullEvent()
	ev.Consent.LimitedDataUse = true
	we, err := BuildEvent(ev, nil)
	if err != nil || !we.LimitedDataUse {
		t.Errorf("limited_data_use = %v, err %v", we.LimitedDataUse, err)
	}
}

func TestBuildEventRefusesInvalidEvents(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*event.Event)
		want   error
	}{
		{"no name", func(e *event.Event) { e.Name = "" }, ErrNoName},
		{"no time", func(e *event.Event) { e.Time = time.Time{} }, ErrNoTime},
		{"bad value", func(e *event.Event) { e.Value = "$5" }, platform.ErrNotDecimal},
		{"bad price", func(e *event.Event) { e.Contents[1].ItemPrice = "1." }, platform.ErrNotDecimal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := fullEvent()
			tt.mutate(&ev)
			if _, err := BuildEvent(ev, nil); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSendPostsJSONWithAccessTokenHeader(t *testing.T) {
	var got *http.Request
	var body Payload
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Error(err)
		}
		io.WriteString(w, `{"code":0,"message":"OK","request_id":"r1","data":{}}`)
	}))
	defer srv.Close()
	s := newTestSender(t, srv.URL+"/", func(c *Config) {
		c.TestEventCode = "TEST123"
		c.EventNames = map[string]string{"Purchase": "CompletePayment"}
	})
	r := s.Send(context.Background(), []event.Event{fullEvent(), fullEvent()})
	if r.Outcome != platform.Delivered || r.Reason != "" {
		t.Fatalf("result = %+v", r)
	}
	if got.Method != http.MethodPost || got.URL.Path != "/open_api/v1.3/event/track/" || got.URL.RawQuery != "" {
		t.Errorf("request = %s %s?%s", got.Method, got.URL.Path, got.URL.RawQuery)
	}
	if got.Header.Get("Access-Token") != token || got.Header.Get("Content-Type") != "application/json" {
		t.Errorf("headers = %v", got.Header)
	}
	if body.TestEventCode != "TEST123" || len(body.Data) != 2 || body.Data[0].Event != "CompletePayment" {
		t.Errorf("body = %+v", body)
	}
}

func TestSendSettlesOldAndTestEvents(t *testing.T) {
	var body Payload
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewDecoder(r.Body).Decode(&body)
		io.WriteString(w, `{"code":0}`)
	}))
	defer srv.Close()
	old, test := fullEvent(), fullEvent()
	old.Time = now.Add(-MaxAge - time.Hour)
	test.Test = true
	r := newTestSender(t, srv.URL).Send(context.Background(), []event.Event{old, test, fullEvent()})
	if len(body.Data) != 1 || r.Outcome != platform.Delivered {
		t.Fatalf("sent %d, result %+v", len(body.Data), r)
	}
	if r.Events[0].Outcome != platform.Permanent || r.Events[1].Outcome != platform.Permanent || len(r.Events) != 2 {
		t.Errorf("events = %+v", r.Events)
	}
}

func TestClassify(t *testing.T) {
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
		{"ok", 200, nil, `{"code":0,"message":"OK","request_id":"r"}`, 2, platform.Delivered, false, 0, ""},
		{"ok with warning", 200, nil, `{"code":20001,"message":"partial"}`, 2, platform.Delivered, false, 0, "code 20001"},
		{"rate limited", 200, http.Header{"Retry-After": {"30"}}, `{"code":40100,"message":"Too many requests"}`, 2, platform.Retry, false, 30 * time.Second, "code 40100"},
		{"40700", 200, nil, `{"code":40700,"message":"x"}`, 2, platform.Retry, false, 0, "code 40700"},
		{"server code", 200, nil, `{"code":51000,"message":"internal"}`, 2, platform.Retry, false, 0, "code 51000"},
		{"no permission", 200, nil, `{"code":40001,"message":"No permission"}`, 2, platform.Permanent, false, 0, "No permission"},
		{"invalid param, batch", 200, nil, `{"code":40002,"message":"Invalid value for data[1].event_time","request_id":"abc"}`, 2, platform.Permanent, true, 0, "data[1].event_time"},
		{"invalid param, one", 200, nil, `{"code":40002}`, 1, platform.Permanent, false, 0, "code 40002"},
		{"token invalid", 200, nil, `{"code":40105,"message":"Access token is incorrect"}`, 2, platform.Permanent, false, 0, "code 40105"},
		{"unknown code", 200, nil, `{"code":41234}`, 2, platform.Permanent, false, 0, "code 41234"},
		{"HTTP 429", 429, http.Header{"Retry-After": {"7"}}, ``, 2, platform.Retry, false, 7 * time.Second, "HTTP 429"},
		{"HTTP 503 with ok code", 503, nil, `{"code":0}`, 2, platform.Retry, false, 0, "HTTP 503"},
		{"HTTP 500 html", 500, nil, `<html>oops</html>`, 2, platform.Retry, false, 0, "HTTP 500"},
		{"garbage", 200, nil, `<html>captive portal</html>`, 2, platform.Retry, false, 0, "captive portal"},
		{"empty", 200, nil, ``, 2, platform.Retry, false, 0, "not the Events API's"},
		{"JSON without code", 200, nil, `{"message":"hi"}`, 2, platform.Retry, false, 0, "not the Events API's"},
		{"code not a number", 200, nil, `{"code":"0"}`, 2, platform.Retry, false, 0, ""},
		{"ok code under 403", 403, nil, `{"code":0}`, 2, platform.Retry, false, 0, "HTTP 403"},
		{"401 token error", 401, nil, `{"code":40105}`, 2, platform.Permanent, false, 0, "code 40105"},
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
		<-release
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
		json.NewEncoder(w).Encode(map[string]any{"code": 40105, "message": "bad token " + r.Header.Get("Access-Token")})
	}))
	defer echo.Close()
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("Access-Token"))
	}))
	defer garbage.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for name, endpoint := range map[string]string{"echo": echo.URL, "garbage": garbage.URL, "refused": closed.URL} {
		t.Run(name, func(t *testing.T) {
			r := newTestSender(t, endpoint).Send(context.Background(), []event.Event{fullEvent()})
			if r.Outcome == platform.Delivered || strings.Contains(r.Reason, token) {
				t.Errorf("result = %+v", r)
			}
		})
	}
}

func TestNewSenderValidatesConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"ok", Config{PixelCode: "C4ABC", AccessToken: "t"}, ""},
		{"no pixel", Config{AccessToken: "t"}, "pixel_code"},
		{"pixel with junk", Config{PixelCode: "C4 ABC", AccessToken: "t"}, "pixel_code"},
		{"no token", Config{PixelCode: "C4ABC"}, "access_token"},
		{"empty mapping", Config{PixelCode: "C4ABC", AccessToken: "t", EventNames: map[string]string{"Purchase": " "}}, "event mapping"},
		{"bad endpoint", Config{PixelCode: "C4ABC", AccessToken: "t", Endpoint: "ftp://x"}, "endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSender(tt.cfg)
			if tt.want == "" {
				if err != nil || s.url != "https://business-api.tiktok.com/open_api/v1.3/event/track/" {
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
	f.Add(200, `{"code":0}`, "", 2)
	f.Add(200, `{"code":40002,"message":"x","request_id":"y"}`, "", 3)
	f.Add(429, `{"code":40100}`, "9999999999999999999999", 1)
	f.Add(200, `{"code":1e300}`, "Wed, 21 Oct 2015 07:28:00 GMT", 2)
	f.Add(-1, "\x00\xff", "-5", -1)
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

func BenchmarkBuildPayload1000(b *testing.B) {
	events := make([]event.Event, 1000)
	for i := range events {
		events[i] = fullEvent()
	}
	cfg := Config{PixelCode: "C4ABC"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := BuildPayload(cfg, events); err != nil {
			b.Fatal(err)
		}
	}
}
