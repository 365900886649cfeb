package bench

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The upstream's fixed resources.
const (
	assetPath = "/static/app.js"
	pagePath  = "/products/page.html"
	largePath = "/catalog/large.html"

	assetSize = 20 << 10
	pageSize  = 50 << 10
	largeSize = 10 << 20
)

// upstream is the store both sites proxy to. It runs in the benchmark process, not in Caddy, so
// that Caddy's CPU time and heap are the proxy's alone — a file_server site in the same Caddy
// would put the upstream's work and memory in the numbers being compared — and so that the large
// page can be sent slowly, in flushed chunks, with its completion time known.
type upstream struct {
	*httptest.Server
	asset, page, large []byte

	// largeChunk and largeDelay pace the large page: that many bytes, a flush, a pause.
	largeChunk int
	largeDelay time.Duration

	mu sync.Mutex
	// onLargeChunk, if set, is called after each flushed chunk of the large page with the bytes
	// sent so far; the sender waits for it.
	onLargeChunk func(sent int)
	// largeDone receives the time the upstream finished sending the large page.
	largeDone chan time.Time
}

func newUpstream(t testing.TB) *upstream {
	u := &upstream{
		asset:      jsAsset(assetSize),
		page:       htmlPage(pageSize),
		large:      htmlPage(largeSize),
		largeChunk: 64 << 10,
		largeDelay: 10 * time.Millisecond,
		largeDone:  make(chan time.Time, 1),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+assetPath, func(w http.ResponseWriter, r *http.Request) {
		serveBytes(w, "text/javascript; charset=utf-8", u.asset)
	})
	mux.HandleFunc("GET "+pagePath, func(w http.ResponseWriter, r *http.Request) {
		serveBytes(w, "text/html; charset=utf-8", u.page)
	})
	mux.HandleFunc("GET "+largePath, u.serveLarge)
	u.Server = httptest.NewServer(mux)
	t.Cleanup(u.Close)
	return u
}

// serveBytes answers as a static file server does: a fixed body with its length and validator.
func serveBytes(w http.ResponseWriter, contentType string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("ETag", `"bench-`+strconv.Itoa(len(body))+`"`)
	h.Set("Cache-Control", "public, max-age=60")
	_, _ = w.Write(body)
}

// serveLarge sends the large page the way a slow backend renders it: in chunks, each flushed,
// with a pause between, and no Content-Length.
func (u *upstream) serveLarge(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	onChunk := u.onLargeChunk
	u.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	sent := 0
	for sent < len(u.large) {
		end := min(sent+u.largeChunk, len(u.large))
		if _, err := w.Write(u.large[sent:end]); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		sent = end
		if onChunk != nil {
			onChunk(sent)
		}
		if sent < len(u.large) {
			time.Sleep(u.largeDelay)
		}
	}
	select {
	case u.largeDone <- time.Now():
	default:
	}
}

// setLargeHook installs the per-chunk callback for the next large-page requests.
func (u *upstream) setLargeHook(f func(sent int)) {
	u.mu.Lock()
	u.onLargeChunk = f
	u.mu.Unlock()
}

// htmlPage is a store's product listing of exactly size bytes: a real head (meta, stylesheet,
// scripts) and a body of product cards.
func htmlPage(size int) []byte {
	const head = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Mugs &amp; Cups — Bench Coffee Co.</title>
<link rel="stylesheet" href="/static/style.css">
<script src="/static/app.js" defer></script>
</head>
<body>
<header><nav><a href="/">Home</a> <a href="/cart">Cart</a></nav></header>
<main class="grid">
`
	const tail = "</main>\n<footer>© Bench Coffee Co.</footer>\n</body>\n</html>\n"
	var b bytes.Buffer
	b.Grow(size)
	b.WriteString(head)
	for i := 0; b.Len() < size-len(tail)-400; i++ {
		fmt.Fprintf(&b, `<article class="card" data-sku="SKU-%06d"><img src="/img/%d.jpg" alt="Mug %d" loading="lazy" width="320" height="320"><h2><a href="/products/mug-%d">The Caddy Mug no. %d</a></h2><p class="price">$%d.95</p><p>Stoneware, 350 ml, dishwasher safe. Ships in two days.</p><button data-add="SKU-%06d">Add to cart</button></article>`+"\n",
			i, i%97, i, i, i, 10+i%40, i)
	}
	pad := size - len(tail) - b.Len() - len("<!---->\n")
	b.WriteString("<!--" + string(bytes.Repeat([]byte{'.'}, max(pad, 0))) + "-->\n")
	b.WriteString(tail)
	return b.Bytes()
}

// jsAsset is a script of exactly size bytes.
func jsAsset(size int) []byte {
	var b bytes.Buffer
	b.WriteString("\"use strict\";\n")
	for i := 0; b.Len() < size-200; i++ {
		fmt.Fprintf(&b, "function price%d(q,c){return Math.round(q*%d.95*100)/100+(c||0);}\n", i, 10+i%40)
	}
	b.WriteString("/*" + string(bytes.Repeat([]byte{'*'}, size-b.Len()-4)) + "*/")
	return b.Bytes()
}
