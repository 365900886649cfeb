package integration

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/integration/fakes"
	"github.com/caddy-capi/caddy-capi/integration/harness"
)

// TestEdgeCookiesStaySecureBehindATrustedTLSProxy runs the real binary behind a stand-in for a load
// balancer that terminates TLS: Caddy sees plain HTTP from 127.0.0.1 with X-Forwarded-Proto. The
// identity cookies are Secure exactly when that address is in the server's trusted_proxies and the
// header says https; a client that merely sends the header changes nothing.
func TestEdgeCookiesStaySecureBehindATrustedTLSProxy(t *testing.T) {
	shop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, `<!doctype html><html><head><title>Shop</title></head><body>hi</body></html>`)
	}))
	t.Cleanup(shop.Close)
	meta := fakes.NewMeta(t, fakes.MetaConfig{})
	const trusted = "servers {\n\t\ttrusted_proxies static 127.0.0.1/32 ::1/128\n\t}"
	for _, tc := range []struct {
		name, servers, proto string
		secure               bool
	}{
		{"trusted proxy, https", trusted, "https", true},
		{"trusted proxy, http", trusted, "http", false},
		{"no trusted proxies, client claims https", "", "https", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := harness.Start(t, `{
	{{.Vars.servers}}
	capi {
		{{.Vars.meta}}
	}
}
{{.Site}} {
	capi
	reverse_proxy {{.Vars.shop}}
}`, harness.Var("meta", meta.Block()), harness.Var("shop", shop.URL), harness.Var("servers", tc.servers))
			req, _ := http.NewRequest(http.MethodGet, c.URL("/?fbclid=IwAR1proxy"), nil)
			req.Header.Set("Accept", "text/html")
			req.Header.Set("Sec-Fetch-Dest", "document")
			req.Header.Set("X-Forwarded-Proto", tc.proto)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			lines := res.Header.Values("Set-Cookie")
			if len(lines) == 0 {
				t.Fatal("no identity cookies were set")
			}
			for _, line := range lines {
				if secure := strings.Contains(strings.ToLower(line), "; secure"); secure != tc.secure {
					t.Errorf("Set-Cookie %q: Secure %v, want %v", line, secure, tc.secure)
				}
			}
		})
	}
}

// TestEdgeCollectWithoutConsentIsRefusedByTheHandler: on an opt-in site, a browser that has not
// consented posts to the collect path (a page cached from before, a script of its own). The real
// binary answers 403 no_consent itself: the shop never sees the path, no cookie is set, nothing is
// sent. With the consent cookie the same post is taken.
func TestEdgeCollectWithoutConsentIsRefusedByTheHandler(t *testing.T) {
	var shopSaw []string
	shop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		shopSaw = append(shopSaw, r.URL.Path)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, `<!doctype html><html><head><title>Shop</title></head><body>hi</body></html>`)
	}))
	t.Cleanup(shop.Close)
	meta := fakes.NewMeta(t, fakes.MetaConfig{})
	c := harness.Start(t, `{
	capi {
		{{.Vars.meta}}
		delivery {
			flush 50ms
		}
		consent {
			require cookie_consent ^all$
		}
	}
}
{{.Site}} {
	capi {
		collect /capi/collect
	}
	reverse_proxy {{.Vars.shop}}
}`, harness.Var("meta", meta.Block()), harness.Var("shop", shop.URL))
	post := func(consent bool) *http.Response {
		t.Helper()
		// As window.capi.track posts it: with the page's URL, which Meta requires of a website event.
		body := `{"name":"AddToCart","event_id":"abcdefgh12345678","url":"` + c.URL("/product") + `"}`
		req, _ := http.NewRequest(http.MethodPost, c.URL("/capi/collect"), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", strings.TrimSuffix(c.URL("/"), "/"))
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) E2E")
		if consent {
			req.AddCookie(&http.Cookie{Name: "cookie_consent", Value: "all"})
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := post(false)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden || !strings.Contains(string(body), `"code":"no_consent"`) {
		t.Fatalf("without consent: %d %s; want 403 no_consent", res.StatusCode, body)
	}
	if len(res.Header.Values("Set-Cookie")) != 0 || len(shopSaw) != 0 {
		t.Fatalf("without consent: cookies %v, the shop saw %v", res.Header.Values("Set-Cookie"), shopSaw)
	}
	res = post(true)
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("with consent: %d; want 204", res.StatusCode)
	}
	if e := meta.WaitEvent(t, "abcdefgh12345678", 20*time.Second); e.Name != "AddToCart" {
		t.Errorf("Meta got %s for the consented post", e.Name)
	}
	if n := len(meta.EventsWithID("abcdefgh12345678")); n != 1 {
		t.Errorf("Meta got the event %d times; the refused post must not have been sent", n)
	}
}
