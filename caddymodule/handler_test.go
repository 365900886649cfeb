package caddymodule

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// serve runs the handler on a request carrying Caddy's replacer, and returns the placeholders the
// next handler saw and whether it was called with the request unchanged.
func serve(t testing.TB, h *Handler, target, cookie string) (map[string]string, bool) {
	r := httptest.NewRequest(http.MethodGet, "http://shop.example.com/", nil)
	r.URL.RawQuery = target
	if cookie != "" {
		r.Header.Set("Cookie", visitorCookie+"="+cookie)
	}
	repl := caddy.NewReplacer()
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	wantURL, wantHeader := r.URL.String(), r.Header.Clone()

	seen := map[string]string{}
	called := false
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, got *http.Request) error {
		called = got.URL.String() == wantURL && len(got.Header) == len(wantHeader)
		for _, k := range []string{"capi.visitor_id", "capi.fbclid", "capi.gclid", "capi.ttclid"} {
			if v, ok := repl.Get(k); ok {
				seen[k] = v.(string)
			}
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, next); err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
	if w.Code != http.StatusNoContent {
		t.Fatalf("the response of next was changed: %d", w.Code)
	}
	return seen, called
}

func TestHandlerSetsPlaceholdersOnlyForWellFormedValues(t *testing.T) {
	const vid = "abcdefghijklmnopqrstuvwx"
	tests := []struct {
		name   string
		query  string
		cookie string
		want   map[string]string
	}{
		{"nothing", "", "", map[string]string{}},
		{"visitor cookie", "", vid, map[string]string{"capi.visitor_id": vid}},
		{"visitor cookie of the wrong length", "", vid + "y", map[string]string{}},
		{"visitor cookie in upper case", "", strings.ToUpper(vid), map[string]string{}},
		{"click IDs kept exactly", "fbclid=IwAR1.x_y~z-Q&gclid=Cj0KCQ&ttclid=E.C.P.abc", "",
			map[string]string{"capi.fbclid": "IwAR1.x_y~z-Q", "capi.gclid": "Cj0KCQ", "capi.ttclid": "E.C.P.abc"}},
		{"click ID with markup dropped", "fbclid=" + url.QueryEscape(`"><script>`), "", map[string]string{}},
		{"click ID too long dropped", "gclid=" + strings.Repeat("a", 501), "", map[string]string{}},
		{"click ID at the limit kept", "gclid=" + strings.Repeat("a", 500), "", map[string]string{"capi.gclid": strings.Repeat("a", 500)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, unchanged := serve(t, &Handler{}, tc.query, tc.cookie)
			if !unchanged {
				t.Error("next did not receive the request unchanged")
			}
			if len(got) != len(tc.want) {
				t.Fatalf("placeholders = %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func FuzzHandlerPlaceholders(f *testing.F) {
	f.Add("fbclid=abc&gclid=x.y", "abcdefghijklmnopqrstuvwx")
	f.Add("ttclid=%00%ff&fbclid=", "\"quoted\"")
	f.Add("gclid=a&gclid=b;c", "")
	f.Fuzz(func(t *testing.T, query, cookie string) {
		if strings.ContainsAny(cookie, "\r\n") {
			return
		}
		got, unchanged := serve(t, &Handler{}, query, cookie)
		if !unchanged {
			t.Fatal("the request was changed")
		}
		for k, v := range got {
			ok := validClickID(v)
			if k == "capi.visitor_id" {
				ok = validVisitorID(v)
			}
			if !ok {
				t.Fatalf("%s set to a malformed value %q", k, v)
			}
		}
	})
}

// validateConfig runs what `caddy validate` runs on a JSON config with the capi app and a handler.
func validateConfig(t *testing.T, app, handler string) error {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("XDG_DATA_HOME", dir)
	t.Setenv("XDG_CONFIG_HOME", dir)
	if app == "" {
		app = `{}`
	}
	var a map[string]any
	if err := json.Unmarshal([]byte(app), &a); err != nil {
		t.Fatal(err)
	}
	a["storage"] = map[string]any{"path": filepath.Join(dir, "capi.db")}
	appJSON, _ := json.Marshal(a)
	cfg := &caddy.Config{
		Admin: &caddy.AdminConfig{Disabled: true},
		AppsRaw: caddy.ModuleMap{
			"capi": appJSON,
			"http": json.RawMessage(`{"servers":{"s":{"listen":["127.0.0.1:0"],"routes":[{"handle":[` + handler + `]}]}}}`),
		},
	}
	return caddy.Validate(cfg)
}

func TestHandlerProvisionChecksSiteConfig(t *testing.T) {
	const meta = `{"meta":{"pixel_id":"1234567890","access_token":"t"}}`
	tests := []struct {
		name    string
		app     string
		handler string
		want    string
	}{
		{"valid", meta, `{"handler":"capi","pixels":["meta"],"conversions":[{"event":"Purchase","path":"/thanks","currency":"{http.request.uri.query.cur}"}]}`, ""},
		{"pixel of an unconfigured platform", meta, `{"handler":"capi","pixels":["tiktok"]}`, "capi.pixels: tiktok is not configured; expected a tiktok block"},
		{"google pixel without tag", `{"sink":{"type":"file","path":"/tmp/x"},"google_ads":{"customer_id":"1234567890","conversions":[{"event":"Purchase","action_id":"1"}]}}`,
			`{"handler":"capi","pixels":["google"]}`, "expected a google_ads block with tag_id"},
		{"bad currency", meta, `{"handler":"capi","conversions":[{"event":"Purchase","path":"/thanks","currency":"usdollar"}]}`, "capi.conversions[0]: currency: expected a 3-letter ISO 4217"},
		{"conversion without event", meta, `{"handler":"capi","conversions":[{"path":"/thanks"}]}`, "capi.conversions[0]: event: expected an event name"},
		{"generic postback with a secret", meta, `{"handler":"capi","postbacks":[{"source":"generic","path":"/pb","secrets":["x"]}]}`, "capi.postbacks[0].secrets: the generic source authenticates with token"},
		{"unknown postback source", meta, `{"handler":"capi","postbacks":[{"source":"paypal","path":"/pb","secrets":["x"]}]}`, `capi.postbacks[0].source: unknown source "paypal"`},
		{"bad page view", meta, `{"handler":"capi","page_view":"always"}`, "capi.page_view: expected browser or server"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := validateConfig(t, tc.app, tc.handler)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("valid config refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("accepted; want an error containing %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("got %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// BenchmarkServeHTTP measures what the handler adds to a request today (placeholders from the
// cookie and query), against calling next directly as the baseline.
func BenchmarkServeHTTP(b *testing.B) {
	r := httptest.NewRequest(http.MethodGet, "http://shop.example.com/product?gclid=Cj0KCQjw&utm_source=x", nil)
	r.Header.Set("Cookie", visitorCookie+"=abcdefghijklmnopqrstuvwx; other=1")
	repl := caddy.NewReplacer()
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	w := httptest.NewRecorder()
	b.Run("baseline", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = next.ServeHTTP(w, r)
		}
	})
	b.Run("capi", func(b *testing.B) {
		h := &Handler{}
		b.ReportAllocs()
		for b.Loop() {
			_ = h.ServeHTTP(w, r, next)
		}
	})
}
