package fakes

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// metaPayload is a well-formed website Purchase as DOC-SERVER and DOC-CIP describe it, built by
// hand so that the fake is checked against the notes and not against our sender.
func metaPayload(now time.Time) map[string]any {
	return map[string]any{
		"data": []any{map[string]any{
			"event_name":       "Purchase",
			"event_time":       now.Add(-time.Minute).Unix(),
			"event_id":         "evt-1001",
			"action_source":    "website",
			"event_source_url": "https://shop.example.com/thank-you?order=1001",
			"user_data": map[string]any{
				"em":                []string{sha("john_smith@gmail.com")},
				"ph":                []string{sha("16505551212")},
				"fn":                sha("mary"),
				"ct":                sha("newyork"),
				"country":           sha("us"),
				"external_id":       sha("k3j4h5g6f7d8s9a0q1w2e3r4"),
				"client_ip_address": "2001:db8::7",
				"client_user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
				"fbc":               "fb.1.1554763741205.IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk",
				"fbp":               "fb.1.1596403881668.1116446470",
			},
			"custom_data": map[string]any{
				"value": 49.9, "currency": "USD", "order_id": "1001",
				"content_ids": []string{"mug-1"}, "content_type": "product",
				"contents": []any{map[string]any{"id": "mug-1", "quantity": 2, "item_price": 24.95}},
			},
		}},
		"test_event_code": "TEST4242",
	}
}

func TestMetaAcceptsDocumentedPayload(t *testing.T) {
	m := NewMeta(t, MetaConfig{})
	body := mustJSON(t, metaPayload(time.Now()))
	r := send(t, "POST", m.URL()+"/v25.0/1234567890123456/events?access_token=meta-test-token", "application/json", body, nil)
	if r.status != 200 || r.body["events_received"] != float64(1) {
		t.Fatalf("got %d %v, want 200 with events_received 1", r.status, r.body)
	}
	e, ok := m.Event("evt-1001")
	if !ok || e.Name != "Purchase" || e.Platform != "meta" || e.Get("custom_data.order_id") != "1001" {
		t.Fatalf("accepted event not recorded as sent: %+v", e)
	}
	if e.TestEventCode != "TEST4242" {
		t.Errorf("TestEventCode = %q, want the request's TEST4242", e.TestEventCode)
	}
	if len(m.EventsNamed("Purchase")) != 1 {
		t.Errorf("EventsNamed(Purchase) = %d events, want 1", len(m.EventsNamed("Purchase")))
	}
}

func TestMetaAcceptsFormPostLikeTheDocsCurlExample(t *testing.T) {
	m := NewMeta(t, MetaConfig{})
	p := metaPayload(time.Now())
	form := url.Values{"data": {mustJSON(t, p["data"])}, "access_token": {"meta-test-token"}}
	r := send(t, "POST", m.URL()+"/v25.0/1234567890123456/events", "application/x-www-form-urlencoded", form.Encode(), nil)
	if r.status != 200 {
		t.Fatalf("got %d %v, want 200", r.status, r.body)
	}
	if len(m.Accepted()) != 1 {
		t.Fatalf("accepted %d events, want 1", len(m.Accepted()))
	}
}

func TestMetaRejectsWhatTheDocsForbid(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name      string
		mutate    func(p map[string]any)
		path      string // default the configured pixel's events edge with the right token
		ctype     string
		wantCode  float64
		wantSub   float64
		violation string
	}{
		{name: "wrong access token", path: "/v25.0/1234567890123456/events?access_token=nope", wantCode: 190, violation: "access_token"},
		{name: "no access token", path: "/v25.0/1234567890123456/events", wantCode: 104, violation: "no access_token"},
		{name: "unknown pixel", path: "/v25.0/999/events?access_token=meta-test-token", wantCode: 100, wantSub: 33, violation: "not the configured dataset"},
		{name: "version without minor", path: "/v25/1234567890123456/events?access_token=meta-test-token", wantCode: 2500, violation: "path must be"},
		{name: "text body", ctype: "text/plain", wantCode: 100, violation: "Content-Type"},
		{name: "unknown top-level field", mutate: func(p map[string]any) { p["events"] = []any{} }, wantCode: 100, violation: "events: unknown field"},
		{name: "event_time as string", mutate: func(p map[string]any) { ev(p)["event_time"] = fmt.Sprint(now.Unix()) }, wantCode: 100, violation: "event_time: must be an integer"},
		{name: "event_time in milliseconds", mutate: func(p map[string]any) { ev(p)["event_time"] = now.UnixMilli() }, wantCode: 100, violation: "in the future"},
		{name: "event older than 7 days", mutate: func(p map[string]any) { ev(p)["event_time"] = now.Add(-7*24*time.Hour - time.Hour).Unix() }, wantCode: 100, wantSub: 2804003, violation: "more than 7 days old"},
		{name: "missing event_name", mutate: func(p map[string]any) { delete(ev(p), "event_name") }, wantCode: 100, violation: "event_name: required"},
		{name: "missing action_source", mutate: func(p map[string]any) { delete(ev(p), "action_source") }, wantCode: 100, violation: "action_source: required"},
		{name: "unknown action_source", mutate: func(p map[string]any) { ev(p)["action_source"] = "web" }, wantCode: 100, violation: "must be one of"},
		{name: "website event without event_source_url", mutate: func(p map[string]any) { delete(ev(p), "event_source_url") }, wantCode: 100, violation: "event_source_url: required for website events"},
		{name: "website event without user agent", mutate: func(p map[string]any) { delete(ud(p), "client_user_agent") }, wantCode: 100, violation: "client_user_agent: required"},
		{name: "camelCase event field", mutate: func(p map[string]any) { ev(p)["eventName"] = "Purchase" }, wantCode: 100, violation: "eventName: unknown field"},
		{name: "unknown user field", mutate: func(p map[string]any) { ud(p)["email"] = sha("a@b.co") }, wantCode: 100, violation: "user_data.email: unknown field"},
		{name: "plain email", mutate: func(p map[string]any) { ud(p)["em"] = []any{"john_smith@gmail.com"} }, wantCode: 100, violation: "user_data.em[0]: must be a SHA-256"},
		{name: "uppercase hash", mutate: func(p map[string]any) { ud(p)["fn"] = strings.ToUpper(sha("mary")) }, wantCode: 100, violation: "user_data.fn: must be a SHA-256"},
		{name: "hashed IP address", mutate: func(p map[string]any) { ud(p)["client_ip_address"] = sha("203.0.113.7") }, wantCode: 100, violation: "not hashed"},
		{name: "IP with port", mutate: func(p map[string]any) { ud(p)["client_ip_address"] = "203.0.113.7:443" }, wantCode: 100, violation: "IPv4 or IPv6"},
		{name: "hashed fbp", mutate: func(p map[string]any) { ud(p)["fbp"] = sha("fb.1.1596403881668.1116446470") }, wantCode: 100, violation: "user_data.fbp: must be sent in plain text"},
		{name: "fbc with seconds", mutate: func(p map[string]any) { ud(p)["fbc"] = "fb.1.1554763741.IwAR2F4" }, wantCode: 100, violation: "user_data.fbc: must be fb."},
		{name: "fbp without random part", mutate: func(p map[string]any) { ud(p)["fbp"] = "fb.1.1596403881668." }, wantCode: 100, violation: "user_data.fbp: must be fb."},
		{name: "user data too weak to match", mutate: func(p map[string]any) {
			ev(p)["user_data"] = map[string]any{"ct": sha("paris"), "client_user_agent": "Mozilla/5.0"}
		}, wantCode: 100, violation: "too little to match"},
		{name: "value as string", mutate: func(p map[string]any) { cd(p)["value"] = "49.90" }, wantCode: 100, violation: "custom_data.value: must be a number"},
		{name: "Purchase without currency", mutate: func(p map[string]any) { delete(cd(p), "currency") }, wantCode: 100, violation: "custom_data.currency: required"},
		{name: "content_ids not an array", mutate: func(p map[string]any) { cd(p)["content_ids"] = "mug-1" }, wantCode: 100, violation: "content_ids: must be a JSON array"},
		{name: "LDU without country", mutate: func(p map[string]any) { ev(p)["data_processing_options"] = []any{"LDU"} }, wantCode: 100, violation: "data_processing_options_country: required"},
		{name: "empty batch", mutate: func(p map[string]any) { p["data"] = []any{} }, wantCode: 100, violation: "at least one event"},
		{name: "batch over 1000", mutate: func(p map[string]any) {
			one := ev(p)
			var data []any
			for i := range MetaMaxBatch + 1 {
				e := clone(one).(map[string]any)
				e["event_id"] = fmt.Sprintf("evt-%d", i)
				data = append(data, e)
			}
			p["data"] = data
		}, wantCode: 100, violation: "at most 1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMeta(t, MetaConfig{})
			m.ExpectViolations()
			p := clone(metaPayload(now)).(map[string]any)
			if tt.mutate != nil {
				tt.mutate(p)
			}
			path := tt.path
			if path == "" {
				path = "/v25.0/1234567890123456/events?access_token=meta-test-token"
			}
			ctype := tt.ctype
			if ctype == "" {
				ctype = "application/json"
			}
			r := send(t, "POST", m.URL()+path, ctype, mustJSON(t, p), nil)
			if r.status != http.StatusBadRequest {
				t.Errorf("status %d, want 400", r.status)
			}
			e, _ := r.body["error"].(map[string]any)
			if e == nil || e["code"] != tt.wantCode || e["fbtrace_id"] == "" || e["is_transient"] != false {
				t.Errorf("error envelope %v, want Graph error code %v", r.body, tt.wantCode)
			}
			if tt.wantSub != 0 && e["error_subcode"] != tt.wantSub {
				t.Errorf("error_subcode %v, want %v", e["error_subcode"], tt.wantSub)
			}
			assertViolation(t, m.Violations(), tt.violation)
			if n := len(m.Accepted()); n != 0 {
				t.Errorf("accepted %d events from an invalid request; Meta processes none", n)
			}
		})
	}
}

func ev(p map[string]any) map[string]any { return obj(p, "data", 0) }
func ud(p map[string]any) map[string]any { return obj(p, "data", 0, "user_data") }
func cd(p map[string]any) map[string]any { return obj(p, "data", 0, "custom_data") }

func TestMetaScriptedFailures(t *testing.T) {
	url := "/v25.0/1234567890123456/events?access_token=meta-test-token"
	t.Run("5xx is transient, then the retry is accepted", func(t *testing.T) {
		m := NewMeta(t, MetaConfig{})
		m.FailNext(1, http.StatusServiceUnavailable)
		body := mustJSON(t, metaPayload(time.Now()))
		r := send(t, "POST", m.URL()+url, "application/json", body, nil)
		if r.status != 503 || obj(r.body, "error")["is_transient"] != true {
			t.Fatalf("got %d %v, want 503 with is_transient", r.status, r.body)
		}
		if r := send(t, "POST", m.URL()+url, "application/json", body, nil); r.status != 200 {
			t.Fatalf("retry got %d, want 200", r.status)
		}
		if n := len(m.EventsWithID("evt-1001")); n != 1 {
			t.Errorf("accepted the event %d times, want once", n)
		}
	})
	t.Run("429 carries Retry-After", func(t *testing.T) {
		m := NewMeta(t, MetaConfig{})
		m.RateLimit(1, 1500*time.Millisecond)
		r := send(t, "POST", m.URL()+url, "application/json", mustJSON(t, metaPayload(time.Now())), nil)
		if r.status != 429 || r.header.Get("Retry-After") != "2" || obj(r.body, "error")["code"] != float64(4) {
			t.Fatalf("got %d Retry-After %q %v, want 429, 2, code 4", r.status, r.header.Get("Retry-After"), r.body)
		}
	})
	t.Run("outage for a duration", func(t *testing.T) {
		m := NewMeta(t, MetaConfig{})
		m.FailFor(time.Hour, http.StatusInternalServerError)
		for range 2 {
			if r := send(t, "POST", m.URL()+url, "application/json", mustJSON(t, metaPayload(time.Now())), nil); r.status != 500 {
				t.Fatalf("got %d during the outage, want 500", r.status)
			}
		}
	})
	t.Run("one rejected event sinks the whole batch", func(t *testing.T) {
		m := NewMeta(t, MetaConfig{})
		p := metaPayload(time.Now())
		second := clone(ev(p)).(map[string]any)
		second["event_id"] = "evt-bad"
		p["data"] = append(p["data"].([]any), second)
		m.RejectEvent("evt-bad", "invalid custom_data")
		r := send(t, "POST", m.URL()+url, "application/json", mustJSON(t, p), nil)
		if r.status != 400 || obj(r.body, "error")["code"] != float64(100) {
			t.Fatalf("got %d %v, want 400 code 100", r.status, r.body)
		}
		if blame := at(r.body, "error", "error_data", "blame_field_specs", 0, 1); blame != "1" {
			t.Errorf("blame_field_specs names %v, want data[1]", blame)
		}
		if len(m.Accepted()) != 0 {
			t.Errorf("accepted %d events of a rejected batch", len(m.Accepted()))
		}
		if len(m.Violations()) != 0 {
			t.Errorf("a scripted rejection is not a violation: %v", m.Violations())
		}
	})
	t.Run("a client that times out during a delay gets nothing processed", func(t *testing.T) {
		m := NewMeta(t, MetaConfig{})
		m.Delay(2 * time.Second)
		client := &http.Client{Timeout: 200 * time.Millisecond}
		_, err := client.Post(m.URL()+url, "application/json", strings.NewReader(mustJSON(t, metaPayload(time.Now()))))
		if err == nil {
			t.Fatal("request did not time out")
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(m.Requests()) == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if rs := m.Requests(); len(rs) != 1 || rs[0].Outcome != "abandoned" || len(m.Accepted()) != 0 {
			t.Errorf("requests %v, accepted %d; want one abandoned request and nothing accepted", rs, len(m.Accepted()))
		}
	})
}

func TestViolationFailsTheTestAtCleanupUnlessExpected(t *testing.T) {
	for _, expect := range []bool{false, true} {
		var fakeT tb
		m := NewMeta(&fakeT, MetaConfig{})
		if expect {
			m.ExpectViolations()
		}
		send(t, "POST", m.URL()+"/v25.0/1234567890123456/events?access_token=wrong", "application/json", "{}", nil)
		fakeT.runCleanups()
		if failed := len(fakeT.errors) > 0; failed == expect {
			t.Errorf("expected=%v: test failed=%v, want %v", expect, failed, !expect)
		}
	}
}
