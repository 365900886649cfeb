package integration

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/caddy-capi/caddy-capi/integration/fakes"
	"github.com/caddy-capi/caddy-capi/integration/harness"
)

// TestEdgeInjectsBehindEncodeAndKeepsContentLength runs the real binary with Caddy's encode in
// front of capi, upstream a shop that sends its pages gzip'd when asked and with Content-Length,
// as static servers do. For every way a browser asks, the page it gets is the shop's page plus
// exactly one snippet; compressed when it accepts gzip; otherwise with a Content-Length that is
// exactly the body's, so that keep-alive clients read it without chunking.
func TestEdgeInjectsBehindEncodeAndKeepsContentLength(t *testing.T) {
	page := `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Mug</title></head><body>` +
		strings.Repeat(`<p>A sturdy mug for every morning.</p>`, 400) + `</body></html>`
	var upstreamEncodings []string
	shop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamEncodings = append(upstreamEncodings, r.Header.Get("Accept-Encoding"))
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("ETag", `"v1"`)
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			// A shop that compresses itself when allowed: the module asks for identity, so this
			// must not happen on navigations.
			w.Header().Set("Content-Encoding", "gzip")
			gz := gzip.NewWriter(w)
			io.WriteString(gz, page)
			gz.Close()
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(page)))
		io.WriteString(w, page)
	}))
	t.Cleanup(shop.Close)
	meta := fakes.NewMeta(t, fakes.MetaConfig{})
	c := harness.Start(t, `{
	capi {
		{{.Vars.meta}}
	}
}
{{.Site}} {
	encode gzip zstd
	capi
	reverse_proxy {{.Vars.shop}}
}`, harness.Var("meta", meta.Block()), harness.Var("shop", shop.URL))

	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	get := func(acceptEncoding string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, c.URL("/"), nil)
		req.Header.Set("Accept", "text/html")
		req.Header.Set("Sec-Fetch-Dest", "document")
		if acceptEncoding != "" {
			req.Header.Set("Accept-Encoding", acceptEncoding)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body io.Reader = res.Body
		if res.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(res.Body)
			if err != nil {
				t.Fatal(err)
			}
			body = zr
		}
		b, err := io.ReadAll(body)
		if err != nil {
			t.Fatalf("reading the page (Accept-Encoding %q): %v", acceptEncoding, err)
		}
		return res, string(b)
	}
	onePlusSnippet := func(body string) {
		t.Helper()
		start, end := strings.Index(body, "<script"), strings.LastIndex(body, "</script>")
		if start < 0 || end < start || body[:start]+body[end+len("</script>"):] != page || strings.Count(body, "fbq('init'") != 1 {
			t.Fatalf("the page is not the shop's plus one snippet (%d bytes)", len(body))
		}
	}

	res, body := get("gzip, deflate, br, zstd")
	onePlusSnippet(body)
	if res.Header.Get("Content-Encoding") != "gzip" && res.Header.Get("Content-Encoding") != "zstd" {
		t.Errorf("Content-Encoding %q: encode did not compress the injected page", res.Header.Get("Content-Encoding"))
	}
	if res.Header.Get("ETag") != "" {
		t.Errorf("ETag %q kept on a page whose body changed", res.Header.Get("ETag"))
	}

	res, body = get("")
	onePlusSnippet(body)
	if res.ContentLength != int64(len(body)) || len(res.TransferEncoding) != 0 {
		t.Errorf("identity page: Content-Length %d, transfer %v, body %d bytes; want the exact length, not chunked",
			res.ContentLength, res.TransferEncoding, len(body))
	}
	for _, enc := range upstreamEncodings {
		if enc != "identity" {
			t.Errorf("a navigation reached the shop with Accept-Encoding %q; want identity", enc)
		}
	}
}
