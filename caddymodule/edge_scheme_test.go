package caddymodule

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Behind a proxy that terminates TLS, Caddy sees plain HTTP: the cookies stay Secure and the page
// URL keeps https when the proxy is one of the server's trusted_proxies and says so, and a client
// that sends the header itself changes nothing.
func TestRequestSchemeTrustsOnlyTrustedProxies(t *testing.T) {
	tests := []struct {
		name    string
		tls     bool
		trusted bool
		proto   []string
		want    bool
	}{
		{"TLS terminated by Caddy", true, false, nil, true},
		{"plain HTTP", false, false, nil, false},
		{"client claims https", false, false, []string{"https"}, false},
		{"trusted proxy, https", false, true, []string{"https"}, true},
		{"trusted proxy, HTTPS with spaces", false, true, []string{" HTTPS "}, true},
		{"trusted proxy, http", false, true, []string{"http"}, false},
		{"trusted proxy, no header", false, true, nil, false},
		{"trusted proxy appends to a client's value", false, true, []string{"https, http"}, false},
		{"trusted proxy, last of a list", false, true, []string{"http, https"}, true},
		{"trusted proxy, last of two headers", false, true, []string{"http", "https"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "http://shop.example.com/thanks?order=1", nil)
			if !tt.tls {
				r.TLS = nil
			} else {
				r.TLS = &tls.ConnectionState{}
			}
			for _, v := range tt.proto {
				r.Header.Add("X-Forwarded-Proto", v)
			}
			r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.TrustedProxyVarKey: tt.trusted}))
			if got := isHTTPS(r); got != tt.want {
				t.Fatalf("isHTTPS = %v, want %v", got, tt.want)
			}
			want := "http://shop.example.com/thanks?order=1"
			if tt.want {
				want = "https://shop.example.com/thanks?order=1"
			}
			if got := requestURL(r, isHTTPS(r)); got != want {
				t.Errorf("requestURL = %q, want %q", got, want)
			}
		})
	}
}
