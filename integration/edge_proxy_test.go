package integration

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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
