package fakes

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// tiktokPayload is a well-formed web Purchase as the Events API 2.0 notes describe it (§A1, §A2).
func tiktokPayload(now time.Time) map[string]any {
	return map[string]any{
		"event_source":    "web",
		"event_source_id": "CAPITESTPIXEL0000001",
		"test_event_code": "TEST12345",
		"data": []any{map[string]any{
			"event":      "Purchase",
			"event_time": now.Add(-time.Minute).Unix(),
			"event_id":   "evt-2002",
			"user": map[string]any{
				"email":       []string{sha("john_smith@gmail.com")},
				"phone":       []string{sha("+16505551212")},
				"external_id": []string{sha("k3j4h5g6f7d8s9a0q1w2e3r4")},
				"first_name":  sha("mary"),
				"zip_code":    sha("94035"),
				"ttclid":      "E.C.P.CqgBAbCdEfGh",
				"ttp":         "2F7h37YkS1j57AYSKTI7IHhJPYH",
				"ip":          "203.0.113.7",
				"user_agent":  "Mozilla/5.0 (X11; Linux x86_64)",
				"locale":      "en-US",
				"city":        "newyork",
				"state":       "ny",
				"country":     "us",
			},
			"page":       map[string]any{"url": "https://shop.example.com/thank-you?order=2002", "referrer": "https://shop.example.com/checkout"},
			"properties": map[string]any{"value": 49.9, "currency": "USD", "order_id": "2002", "content_type": "product", "contents": []any{map[string]any{"content_id": "mug-1", "quantity": 2, "price": 24.95}}},
		}},
	}
}

func tiktokHeaders() map[string]string { return map[string]string{"Access-Token": "tiktok-test-token"} }

func TestTikTokAcceptsDocumentedPayload(t *testing.T) {
	f := NewTikTok(t, TikTokConfig{})
	r := send(t, "POST", f.URL()+TikTokPath, "application/json", mustJSON(t, tiktokPayload(time.Now())), tiktokHeaders())
	if r.status != 200 || r.body["code"] != float64(0) {
		t.Fatalf("got %d %v, want 200 code 0", r.status, r.body)
	}
	e := f.WaitEvent(t, "evt-2002", time.Second)
	if e.Name != "Purchase" || e.Get("properties.order_id") != "2002" || e.TestEventCode != "TEST12345" {
		t.Errorf("accepted event %+v", e)
	}
}

func TestTikTokRejectsWhatTheDocsForbid(t *testing.T) {
	now := time.Now()
	tev := func(p map[string]any) map[string]any { return obj(p, "data", 0) }
	user := func(p map[string]any) map[string]any { return obj(p, "data", 0, "user") }
	tests := []struct {
		name      string
		mutate    func(p map[string]any)
		headers   map[string]string
		ctype     string
		wantCode  float64
		violation string
	}{
		{name: "no Access-Token", headers: map[string]string{}, wantCode: 40105, violation: "missing Access-Token"},
		{name: "wrong Access-Token", headers: map[string]string{"Access-Token": "x"}, wantCode: 40105, violation: "not the configured token"},
		{name: "form body", ctype: "application/x-www-form-urlencoded", wantCode: 40002, violation: "Content-Type"},
		{name: "other pixel", mutate: func(p map[string]any) { p["event_source_id"] = "OTHER" }, wantCode: 40001, violation: "not the configured pixel"},
		{name: "legacy pixel_code field", mutate: func(p map[string]any) { p["pixel_code"] = "CAPITESTPIXEL0000001" }, wantCode: 40002, violation: "pixel_code: unknown field"},
		{name: "missing event_source", mutate: func(p map[string]any) { delete(p, "event_source") }, wantCode: 40002, violation: "event_source: required"},
		{name: "app source", mutate: func(p map[string]any) { p["event_source"] = "app" }, wantCode: 40002, violation: "must be one of web"},
		{name: "legacy ISO timestamp", mutate: func(p map[string]any) { tev(p)["event_time"] = now.Format(time.RFC3339) }, wantCode: 40002, violation: "event_time: must be an integer"},
		{name: "event_time in milliseconds", mutate: func(p map[string]any) { tev(p)["event_time"] = now.UnixMilli() }, wantCode: 40002, violation: "in the future"},
		{name: "no event_id", mutate: func(p map[string]any) { delete(tev(p), "event_id") }, wantCode: 40002, violation: "event_id: required"},
		{name: "no page.url for web", mutate: func(p map[string]any) { delete(obj(p, "data", 0, "page"), "url") }, wantCode: 40002, violation: "page.url: required"},
		{name: "legacy context object", mutate: func(p map[string]any) { tev(p)["context"] = map[string]any{} }, wantCode: 40002, violation: "context: unknown field"},
		{name: "legacy phone_number", mutate: func(p map[string]any) { user(p)["phone_number"] = sha("+1650") }, wantCode: 40002, violation: "phone_number: unknown field"},
		{name: "plain email", mutate: func(p map[string]any) { user(p)["email"] = "john@example.com" }, wantCode: 40002, violation: "user.email: must be a SHA-256"},
		{name: "hashed ttclid", mutate: func(p map[string]any) { user(p)["ttclid"] = sha("E.C.P.x") }, wantCode: 40002, violation: "user.ttclid: must be sent in plain text"},
		{name: "hashed city", mutate: func(p map[string]any) { user(p)["city"] = sha("newyork") }, wantCode: 40002, violation: "user.city: must be sent in plain text"},
		{name: "hashed user agent", mutate: func(p map[string]any) { user(p)["user_agent"] = sha("Mozilla") }, wantCode: 40002, violation: "user_agent: must be sent in plain text"},
		{name: "bad locale", mutate: func(p map[string]any) { user(p)["locale"] = "english" }, wantCode: 40002, violation: "BCP 47"},
		{name: "app-only idfa", mutate: func(p map[string]any) { user(p)["idfa"] = "x" }, wantCode: 40002, violation: "idfa: unknown field"},
		{name: "value as string", mutate: func(p map[string]any) { obj(p, "data", 0, "properties")["value"] = "49.90" }, wantCode: 40002, violation: "properties.value: must be a number"},
		{name: "legacy query property", mutate: func(p map[string]any) { obj(p, "data", 0, "properties")["query"] = "mugs" }, wantCode: 40002, violation: "query: unknown field"},
		{name: "batch over 1000", mutate: func(p map[string]any) {
			var data []any
			for i := range TikTokMaxBatch + 1 {
				e := clone(tev(p)).(map[string]any)
				e["event_id"] = fmt.Sprint(i)
				data = append(data, e)
			}
			p["data"] = data
		}, wantCode: 40002, violation: "at most 1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewTikTok(t, TikTokConfig{})
			f.ExpectViolations()
			p := clone(tiktokPayload(now)).(map[string]any)
			if tt.mutate != nil {
				tt.mutate(p)
			}
			headers := tt.headers
			if headers == nil {
				headers = tiktokHeaders()
			}
			ctype := tt.ctype
			if ctype == "" {
				ctype = "application/json"
			}
			r := send(t, "POST", f.URL()+TikTokPath, ctype, mustJSON(t, p), headers)
			if r.status != http.StatusOK || r.body["code"] != tt.wantCode || r.body["request_id"] == "" {
				t.Errorf("got HTTP %d %v, want HTTP 200 with code %v", r.status, r.body, tt.wantCode)
			}
			assertViolation(t, f.Violations(), tt.violation)
			if n := len(f.Accepted()); n != 0 {
				t.Errorf("accepted %d events from an invalid request", n)
			}
		})
	}
}

func TestTikTokScriptedFailures(t *testing.T) {
	body := mustJSON(t, tiktokPayload(time.Now()))
	t.Run("body code on HTTP 200", func(t *testing.T) {
		f := NewTikTok(t, TikTokConfig{})
		f.FailNextCode(1, 40100)
		if r := send(t, "POST", f.URL()+TikTokPath, "application/json", body, tiktokHeaders()); r.status != 200 || r.body["code"] != float64(40100) {
			t.Fatalf("got %d %v, want 200 code 40100", r.status, r.body)
		}
		if r := send(t, "POST", f.URL()+TikTokPath, "application/json", body, tiktokHeaders()); r.body["code"] != float64(0) {
			t.Fatalf("retry got %v, want code 0", r.body)
		}
	})
	t.Run("429 with Retry-After", func(t *testing.T) {
		f := NewTikTok(t, TikTokConfig{})
		f.RateLimit(1, 3*time.Second)
		r := send(t, "POST", f.URL()+TikTokPath, "application/json", body, tiktokHeaders())
		if r.status != 429 || r.header.Get("Retry-After") != "3" || r.body["code"] != float64(40100) {
			t.Fatalf("got %d %q %v", r.status, r.header.Get("Retry-After"), r.body)
		}
	})
	t.Run("rejected event refuses the request", func(t *testing.T) {
		f := NewTikTok(t, TikTokConfig{})
		f.RejectEvent("evt-2002", "bad")
		if r := send(t, "POST", f.URL()+TikTokPath, "application/json", body, tiktokHeaders()); r.body["code"] != float64(40002) {
			t.Fatalf("got %v, want code 40002", r.body)
		}
		if len(f.Accepted()) != 0 || len(f.Violations()) != 0 {
			t.Errorf("accepted %d, violations %v; want none", len(f.Accepted()), f.Violations())
		}
	})
}
