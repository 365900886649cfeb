package inject

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
)

// discard is a ResponseWriter that drops the body, so benchmarks measure the writer, not a buffer.
type discard struct {
	h http.Header
	n int64
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) WriteHeader(int)             {}
func (d *discard) Write(p []byte) (int, error) { d.n += int64(len(p)); return len(p), nil }

// storefrontPage returns an HTML page of about size bytes shaped like a storefront: a head with
// metas, links, inline style and JSON-LD, then a long body.
func storefrontPage(size int) []byte {
	var b strings.Builder
	b.WriteString("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
	b.WriteString("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n")
	b.WriteString("<title>Product – Shop</title>\n<link rel=\"stylesheet\" href=\"/assets/theme.css\">\n")
	b.WriteString("<style>body{font-family:sans-serif}.grid>li{display:flex}</style>\n")
	b.WriteString(`<script type="application/ld+json">{"@type":"Product","name":"<head> & co"}</script>` + "\n</head>\n<body>\n")
	for i := 0; b.Len() < size-20; i++ {
		fmt.Fprintf(&b, "<li class=\"card\"><a href=\"/products/%d\">Product %d</a> <span>$%d.99</span></li>\n", i, i, i%97)
	}
	b.WriteString("</body></html>\n")
	return []byte(b.String())
}

const chunk = 32 << 10 // reverse_proxy's copy buffer

func writeChunks(w io.Writer, page []byte) {
	for b := page; len(b) > 0; {
		n := min(chunk, len(b))
		w.Write(b[:n])
		b = b[n:]
	}
}

var benchSnippet = bytes.Repeat([]byte("<script>/* pixels */</script>"), 60) // ~1.8 KB, like the three base codes

var benchRequest = httptest.NewRequest("GET", "/", nil)

func serveOnce(page []byte, contentType, encoding string) {
	d := &discard{h: http.Header{"Content-Type": {contentType}}}
	if encoding != "" {
		d.h.Set("Content-Encoding", encoding)
	}
	iw := NewWriter(d, benchRequest, func(http.Header) []byte { return benchSnippet })
	iw.WriteHeader(200)
	writeChunks(iw, page)
	iw.Finish()
	iw.Close()
}

// BenchmarkHTML50KB compares a 50 KB page written straight to the ResponseWriter (baseline) with
// the same page through Writer (inject).
func BenchmarkHTML50KB(b *testing.B) {
	page := storefrontPage(50 << 10)
	b.Run("baseline", func(b *testing.B) {
		b.SetBytes(int64(len(page)))
		b.ReportAllocs()
		for b.Loop() {
			d := &discard{h: http.Header{"Content-Type": {"text/html"}}}
			writeChunks(d, page)
		}
	})
	b.Run("inject", func(b *testing.B) {
		b.SetBytes(int64(len(page)))
		b.ReportAllocs()
		for b.Loop() {
			serveOnce(page, "text/html; charset=utf-8", "")
		}
	})
	gz := gzipBytes(page)
	b.Run("inject-gzip-upstream", func(b *testing.B) {
		b.SetBytes(int64(len(page)))
		b.ReportAllocs()
		for b.Loop() {
			serveOnce(gz, "text/html; charset=utf-8", "gzip")
		}
	})
}

// BenchmarkNonHTML50KB is the passthrough cost for an asset.
func BenchmarkNonHTML50KB(b *testing.B) {
	body := bytes.Repeat([]byte(`{"id":1,"title":"<head>"},`), 2000)
	b.Run("baseline", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			d := &discard{h: http.Header{"Content-Type": {"application/json"}}}
			writeChunks(d, body)
		}
	})
	b.Run("passthrough", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			serveOnce(body, "application/json", "")
		}
	})
}

func gzipBytes(p []byte) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(p)
	zw.Close()
	return b.Bytes()
}

// allocatedWhile reports the bytes allocated while f runs.
func allocatedWhile(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestWriterMemoryIsBounded streams a 10 MB page (identity and gzip) through Writer and checks that
// the bytes allocated meanwhile, the upper bound of heap growth, stay under 1 MB: nothing is
// buffered in proportion to the page.
func TestWriterMemoryIsBounded(t *testing.T) {
	page := storefrontPage(10 << 20)
	gz := gzipBytes(page)
	for _, tc := range []struct {
		name, encoding string
		body           []byte
	}{{"identity", "", page}, {"gzip", "gzip", gz}} {
		t.Run(tc.name, func(t *testing.T) {
			d := &discard{h: http.Header{"Content-Type": {"text/html"}}}
			if tc.encoding != "" {
				d.h.Set("Content-Encoding", tc.encoding)
			}
			r := httptest.NewRequest("GET", "/", nil)
			alloc := allocatedWhile(func() {
				iw := NewWriter(d, r, func(http.Header) []byte { return benchSnippet })
				iw.WriteHeader(200)
				writeChunks(iw, tc.body)
				if err := iw.Finish(); err != nil {
					t.Error(err)
				}
			})
			if d.n != int64(len(page)+len(benchSnippet)) {
				t.Fatalf("wrote %d bytes, want %d", d.n, len(page)+len(benchSnippet))
			}
			t.Logf("%s: %d bytes allocated for a %d-byte page", tc.name, alloc, len(page))
			if alloc >= 1<<20 {
				t.Fatalf("%d bytes allocated streaming a 10 MB page", alloc)
			}
		})
	}
}

// BenchmarkHTML10MB reports the bytes allocated per 10 MB page (allocs/op, B/op) with throughput.
func BenchmarkHTML10MB(b *testing.B) {
	page := storefrontPage(10 << 20)
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		serveOnce(page, "text/html", "")
	}
}

// BenchmarkScanLimit is the worst case: a page with no anchor, scanned for the whole scan limit.
func BenchmarkScanLimit(b *testing.B) {
	page := storefrontPage(DefaultScanLimit)
	page = page[bytes.Index(page, []byte("<li class")):bytes.Index(page, []byte("</body>"))] // no anchor
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		in := NewInjector(io.Discard, benchSnippet, 0)
		in.Write(page)
		in.Close()
		if in.Injected() {
			b.Fatal("injected into a page without an anchor")
		}
	}
}
