package fakes

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// FuzzValidators feeds arbitrary bodies to every fake: whatever arrives, a fake never panics, always
// answers in its platform's JSON shape, and never accepts an event it found invalid.
func FuzzValidators(f *testing.F) {
	now := time.Now()
	for _, seed := range []any{metaPayload(now), tiktokPayload(now), googleClickPayload(now), googleAdjustmentPayload(now)} {
		b, _ := json.Marshal(seed)
		f.Add(b)
	}
	f.Add([]byte(`null`))
	f.Add([]byte(`{"data":[null,1,"x",{}]}`))
	f.Add([]byte(`{"conversions":[{"userIdentifiers":[null]}],"partialFailure":true}`))

	m := NewMeta(f, MetaConfig{})
	tt := NewTikTok(f, TikTokConfig{})
	g := NewGoogle(f, GoogleConfig{})
	for _, r := range []*recorder{m.recorder, tt.recorder, g.recorder} {
		r.ExpectViolations()
	}
	g.tokens["tok"] = now.Add(time.Hour)

	f.Fuzz(func(t *testing.T, body []byte) {
		reqs := []struct {
			h   http.HandlerFunc
			req *http.Request
		}{
			{m.handle, httptest.NewRequest("POST", "/v25.0/1234567890123456/events?access_token=meta-test-token", bytes.NewReader(body))},
			{tt.handle, httptest.NewRequest("POST", TikTokPath, bytes.NewReader(body))},
			{g.handle, httptest.NewRequest("POST", googleClick, bytes.NewReader(body))},
			{g.handle, httptest.NewRequest("POST", googleAdjust, bytes.NewReader(body))},
		}
		reqs[1].req.Header.Set("Access-Token", "tiktok-test-token")
		for _, r := range reqs[2:] {
			r.req.Header.Set("Authorization", "Bearer tok")
			r.req.Header.Set("developer-token", "google-dev-token")
		}
		for _, r := range reqs {
			r.req.Header.Set("Content-Type", "application/json")
			before := len(m.Violations()) + len(tt.Violations()) + len(g.Violations())
			w := httptest.NewRecorder()
			r.h(w, r.req)
			var answer map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &answer); err != nil {
				t.Fatalf("answer is not a JSON object: %q", w.Body.String())
			}
			after := len(m.Violations()) + len(tt.Violations()) + len(g.Violations())
			if w.Code == 200 && answer["code"] == nil && answer["partialFailureError"] == nil && after != before {
				t.Fatalf("answered a clean success to a request it recorded as a violation: %s", w.Body.String())
			}
		}
	})
}
