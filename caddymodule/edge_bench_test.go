package caddymodule

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// BenchmarkEdge measures what the handler adds to a request on its two common paths, each against
// the same next handler called directly in the same run: an asset (passed through without cookies)
// and a 50 KB HTML page of a returning visitor (identity resolved, snippet injected, visitor
// record checked in the background). Compare ns/op and allocs/op of the pairs.
func BenchmarkEdge(b *testing.B) {
	s := newTestSite(b, `{"collect":"/capi/collect"}`, nil)
	page := "<!doctype html><html><head><meta charset=utf-8><title>Shop</title></head><body>" +
		strings.Repeat("<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit.</p>\n", 800) + "</body></html>"
	html := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, err := io.WriteString(w, page)
		return err
	})
	css := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "text/css")
		_, err := io.WriteString(w, "body{margin:0}")
		return err
	})
	s.page("https://shop.example.com/")
	cookies := make([]*http.Cookie, 0, len(s.jar))
	for name, value := range s.jar {
		cookies = append(cookies, &http.Cookie{Name: name, Value: value})
	}
	// request builds a request as Caddy's server hands it on; cookies are the visitor's, nil for a
	// new one.
	request := func(target string, cookies []*http.Cookie, headers ...string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.Header.Set("User-Agent", testUserAgent)
		for i := 0; i+1 < len(headers); i += 2 {
			r.Header.Set(headers[i], headers[i+1])
		}
		for _, c := range cookies {
			r.AddCookie(c)
		}
		r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: testClientIP}))
		caddyhttp.NewTestReplacer(r)
		return r
	}
	run := func(b *testing.B, r *http.Request, serve func(w http.ResponseWriter, r *http.Request) error) {
		w := &discardWriter{header: http.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			clear(w.header)
			if err := serve(w, r); err != nil {
				b.Fatal(err)
			}
		}
	}
	asset := request("https://shop.example.com/app.css", cookies, "Accept", "text/css", "Sec-Fetch-Dest", "style")
	nav := request("https://shop.example.com/product", cookies, "Accept", "text/html", "Sec-Fetch-Dest", "document", "Sec-Fetch-Site", "same-origin")
	b.Run("asset/next", func(b *testing.B) { run(b, asset, css.ServeHTTP) })
	b.Run("asset/capi", func(b *testing.B) {
		run(b, asset, func(w http.ResponseWriter, r *http.Request) error { return s.h.ServeHTTP(w, r, css) })
	})
	adClick := request("https://shop.example.com/product?fbclid=IwAR2xBench&gclid=Cj0KCQiBench&ttclid=E.C.P.Bench", nil,
		"Accept", "text/html", "Sec-Fetch-Dest", "document")
	b.Run("page50k/next", func(b *testing.B) { run(b, nav, html.ServeHTTP) })
	// A new visitor from an ad click on every request: identity minted, six cookies, and a visitor
	// record written by the background writer (whose CPU the profile shows; ns/op does not).
	b.Run("page50k-ad-click/capi", func(b *testing.B) {
		run(b, adClick, func(w http.ResponseWriter, r *http.Request) error { return s.h.ServeHTTP(w, r, html) })
	})
	b.Run("page50k/capi", func(b *testing.B) {
		run(b, nav, func(w http.ResponseWriter, r *http.Request) error { return s.h.ServeHTTP(w, r, html) })
	})
}

// discardWriter is a ResponseWriter that keeps nothing, so the benchmark measures the handler and
// not a recorder's buffer growth.
type discardWriter struct{ header http.Header }

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}
