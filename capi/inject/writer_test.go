package inject

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"
)

const page = `<!doctype html><html><head><meta charset="utf-8"><title>Shop</title></head><body><p>hi</p></body></html>`

var injectedPage = strings.Replace(page, "<title>", mark+"<title>", 1)

func gzipped(t testing.TB, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	zw.Close()
	return b.Bytes()
}

// serveThrough runs handler behind a Writer the way the capi handler does and records the result.
func serveThrough(t *testing.T, r *http.Request, snippet func(http.Header) []byte, handler http.HandlerFunc) (*httptest.ResponseRecorder, *Writer) {
	t.Helper()
	rec := httptest.NewRecorder()
	iw := NewWriter(rec, r, snippet)
	defer iw.Close()
	handler(iw, r)
	if err := iw.Finish(); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	return rec, iw
}

func markSnippet(http.Header) []byte { return []byte(mark) }

func TestWriterDecidesWhetherToInject(t *testing.T) {
	htmlHeaders := map[string]string{
		"Content-Type":   "text/html; charset=utf-8",
		"Content-Length": strconv.Itoa(len(page)),
		"ETag":           `"v1"`,
		"Last-Modified":  "Mon, 02 Jan 2006 15:04:05 GMT",
		"Accept-Ranges":  "bytes",
	}
	with := func(extra map[string]string) map[string]string {
		h := map[string]string{}
		for k, v := range htmlHeaders {
			h[k] = v
		}
		for k, v := range extra {
			if v == "" {
				delete(h, k)
			} else {
				h[k] = v
			}
		}
		return h
	}
	tests := []struct {
		name    string
		method  string
		req     map[string]string
		status  int
		headers map[string]string
		inject  bool
	}{
		{"GET html", "GET", nil, 200, htmlHeaders, true},
		{"POST answered with html", "POST", nil, 200, htmlHeaders, true},
		{"navigation", "GET", map[string]string{"Sec-Fetch-Dest": "document"}, 200, htmlHeaders, true},
		{"latin-1 page", "GET", nil, 200, with(map[string]string{"Content-Type": "text/html; charset=ISO-8859-1"}), true},
		{"no charset", "GET", nil, 200, with(map[string]string{"Content-Type": "text/html"}), true},
		{"identity encoding", "GET", nil, 200, with(map[string]string{"Content-Encoding": "identity"}), true},
		{"inline disposition", "GET", nil, 200, with(map[string]string{"Content-Disposition": "inline"}), true},
		{"HEAD", "HEAD", nil, 200, htmlHeaders, false},
		{"PUT", "PUT", nil, 200, htmlHeaders, false},
		{"CONNECT", "CONNECT", nil, 200, htmlHeaders, false},
		{"upgrade", "GET", map[string]string{"Upgrade": "websocket", "Connection": "Upgrade"}, 200, htmlHeaders, false},
		{"fetch from a page", "GET", map[string]string{"Sec-Fetch-Dest": "empty"}, 200, htmlHeaders, false},
		{"iframe", "GET", map[string]string{"Sec-Fetch-Dest": "iframe"}, 200, htmlHeaders, false},
		{"201", "GET", nil, 201, htmlHeaders, false},
		{"204", "GET", nil, 204, htmlHeaders, false},
		{"206", "GET", nil, 206, with(map[string]string{"Content-Range": "bytes 0-9/100"}), false},
		{"304", "GET", nil, 304, htmlHeaders, false},
		{"404", "GET", nil, 404, htmlHeaders, false},
		{"json", "GET", nil, 200, with(map[string]string{"Content-Type": "application/json"}), false},
		{"xhtml", "GET", nil, 200, with(map[string]string{"Content-Type": "application/xhtml+xml"}), false},
		{"no content type", "GET", nil, 200, with(map[string]string{"Content-Type": ""}), false},
		{"utf-16", "GET", nil, 200, with(map[string]string{"Content-Type": "text/html; charset=utf-16"}), false},
		{"shift_jis", "GET", nil, 200, with(map[string]string{"Content-Type": "text/html; charset=Shift_JIS"}), false},
		{"brotli", "GET", nil, 200, with(map[string]string{"Content-Encoding": "br"}), false},
		{"zstd", "GET", nil, 200, with(map[string]string{"Content-Encoding": "zstd"}), false},
		{"no-transform", "GET", nil, 200, with(map[string]string{"Cache-Control": "public, No-Transform"}), false},
		{"attachment", "GET", nil, 200, with(map[string]string{"Content-Disposition": `attachment; filename="page.html"`}), false},
		{"200 with content-range", "GET", nil, 200, with(map[string]string{"Content-Range": "bytes 0-9/100"}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "/", nil)
			for k, v := range tt.req {
				r.Header.Set(k, v)
			}
			called := 0
			snippet := func(h http.Header) []byte { called++; return []byte(mark) }
			rec, iw := serveThrough(t, r, snippet, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.headers {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, page)
			})
			body, h := rec.Body.String(), rec.Result().Header
			if !tt.inject {
				if called != 0 {
					t.Errorf("snippet callback called for a response that does not qualify")
				}
				if body != page || iw.Injected() {
					t.Errorf("body changed: %q", body)
				}
				for k, v := range tt.headers {
					if got := h.Get(k); got != v {
						t.Errorf("header %s = %q, want it untouched (%q)", k, got, v)
					}
				}
				return
			}
			if called != 1 || body != injectedPage || !iw.Injected() {
				t.Fatalf("callback called %d times, body %q", called, body)
			}
			for _, k := range []string{"ETag", "Last-Modified", "Accept-Ranges"} {
				if v := h.Get(k); v != "" {
					t.Errorf("%s = %q kept on an injected response", k, v)
				}
			}
			if got, want := h.Get("Content-Length"), strconv.Itoa(len(injectedPage)); got != want {
				t.Errorf("Content-Length = %q, want the injected body's %s", got, want)
			}
			if h.Get("Content-Type") != tt.headers["Content-Type"] {
				t.Errorf("Content-Type changed to %q", h.Get("Content-Type"))
			}
		})
	}
}

func TestWriterSnippetCallbackSeesAndSetsHeaders(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	rec, _ := serveThrough(t, r, func(h http.Header) []byte {
		csp := h.Get("Content-Security-Policy")
		nonce := strings.TrimSuffix(strings.SplitN(csp, "'nonce-", 2)[1], "'")
		h.Set("Content-Security-Policy", csp+" https://connect.facebook.net")
		return []byte(`<script nonce="` + nonce + `"></script>`)
	}, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Security-Policy", "script-src 'nonce-abc'")
		io.WriteString(w, "<head><p>")
	})
	if got := rec.Body.String(); got != `<head><script nonce="abc"></script><p>` {
		t.Fatalf("body %q", got)
	}
	if got := rec.Header().Get("Content-Security-Policy"); got != "script-src 'nonce-abc' https://connect.facebook.net" {
		t.Fatalf("CSP %q", got)
	}
}

func TestWriterNilSnippetLeavesResponseAlone(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	rec, iw := serveThrough(t, r, func(http.Header) []byte { return nil }, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Length", "109")
		w.Header().Set("ETag", `"x"`)
		io.WriteString(w, page)
	})
	if rec.Body.String() != page || rec.Header().Get("Content-Length") != "109" || rec.Header().Get("ETag") != `"x"` || iw.Injected() {
		t.Fatalf("response changed: %v %q", rec.Header(), rec.Body.String())
	}
}

// With two Content-Types the Writer cannot know which one the browser obeys (the last, in Chrome):
// the answer passes untouched rather than risk a snippet shown as text.
func TestWriterLeavesTwoContentTypesAlone(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	rec, iw := serveThrough(t, r, markSnippet, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Content-Type", "text/html")
		w.Header().Add("Content-Type", "text/plain")
		io.WriteString(w, page)
	})
	if rec.Body.String() != page || iw.Injected() {
		t.Fatalf("injected into %v: %q", rec.Header().Values("Content-Type"), rec.Body.String())
	}
}

func TestWriterImplicitStatusOnWrite(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	rec, _ := serveThrough(t, r, markSnippet, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, page) // no WriteHeader: 200 is implied
	})
	if rec.Code != 200 || rec.Body.String() != injectedPage {
		t.Fatalf("%d %q", rec.Code, rec.Body.String())
	}
}

func TestWriterDecodesGzip(t *testing.T) {
	z := gzipped(t, page)
	r := httptest.NewRequest("GET", "/", nil)
	rec, _ := serveThrough(t, r, markSnippet, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", "42")
		w.Header().Set("Vary", "Accept-Encoding")
		for b := z; len(b) > 0; { // small writes, as reverse_proxy makes from a slow upstream
			n := min(7, len(b))
			w.Write(b[:n])
			b = b[n:]
		}
	})
	if got := rec.Body.String(); got != injectedPage {
		t.Fatalf("body %q", got)
	}
	if ce, cl := rec.Header().Get("Content-Encoding"), rec.Header().Get("Content-Length"); ce != "" || cl != "" {
		t.Fatalf("Content-Encoding %q, Content-Length %q kept", ce, cl)
	}
}

func TestWriterGzipErrors(t *testing.T) {
	tests := []struct {
		name string
		body []byte
	}{
		{"not gzip", []byte("<html><head>")},
		{"truncated", gzipped(t, page)[:30]},
		{"garbage after stream", append(gzipped(t, page), "junk"...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			r := httptest.NewRequest("GET", "/", nil)
			iw := NewWriter(rec, r, markSnippet)
			defer iw.Close()
			iw.Header().Set("Content-Type", "text/html")
			iw.Header().Set("Content-Encoding", "gzip")
			_, werr := iw.Write(tt.body)
			ferr := iw.Finish()
			if werr == nil && ferr == nil {
				t.Fatal("a broken gzip body was accepted")
			}
			err := ferr
			if werr != nil {
				err = werr
			}
			if !strings.Contains(err.Error(), "inject: decode gzip response") {
				t.Fatalf("error without context: %v", err)
			}
		})
	}
}

func TestWriterEmptyGzipBody(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	rec, iw := serveThrough(t, r, markSnippet, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Encoding", "gzip")
		w.WriteHeader(200)
	})
	if rec.Body.Len() != 0 || iw.Injected() {
		t.Fatalf("body %q", rec.Body.String())
	}
}

// TestWriterCloseStopsGzipDecoder is the error path: next failed, Finish is not called.
func TestWriterCloseStopsGzipDecoder(t *testing.T) {
	rec := httptest.NewRecorder()
	iw := NewWriter(rec, httptest.NewRequest("GET", "/", nil), markSnippet)
	iw.Header().Set("Content-Type", "text/html")
	iw.Header().Set("Content-Encoding", "gzip")
	z := gzipped(t, page)
	iw.Write(z[:len(z)/2])
	before := rec.Body.Len()
	iw.Close()
	iw.Close()
	if rec.Body.Len() != before {
		t.Fatal("Close wrote the rest of the page")
	}
}

type readFromCounter struct {
	*httptest.ResponseRecorder
	calls int
}

func (c *readFromCounter) ReadFrom(r io.Reader) (int64, error) {
	c.calls++
	return io.Copy(c.ResponseRecorder, r)
}

// onlyReader hides strings.Reader's WriteTo so io.Copy takes the ReadFrom path.
type onlyReader struct{ io.Reader }

func TestWriterReadFrom(t *testing.T) {
	t.Run("injects through io.Copy", func(t *testing.T) {
		inner := &readFromCounter{ResponseRecorder: httptest.NewRecorder()}
		iw := NewWriter(inner, httptest.NewRequest("GET", "/", nil), markSnippet)
		iw.Header().Set("Content-Type", "text/html")
		iw.WriteHeader(200)
		if _, err := io.Copy(iw, onlyReader{strings.NewReader(page)}); err != nil {
			t.Fatal(err)
		}
		iw.Finish()
		if got := inner.Body.String(); got != injectedPage || inner.calls != 0 {
			t.Fatalf("io.Copy bypassed the injection (inner ReadFrom calls %d): %q", inner.calls, got)
		}
	})
	t.Run("passthrough keeps the inner ReadFrom", func(t *testing.T) {
		inner := &readFromCounter{ResponseRecorder: httptest.NewRecorder()}
		iw := NewWriter(inner, httptest.NewRequest("GET", "/", nil), markSnippet)
		iw.Header().Set("Content-Type", "image/png")
		iw.WriteHeader(200)
		io.Copy(iw, onlyReader{strings.NewReader("\x89PNG")})
		iw.Finish()
		if inner.Body.String() != "\x89PNG" || inner.calls != 1 {
			t.Fatalf("calls %d body %q", inner.calls, inner.Body.String())
		}
	})
}

func TestPrepareRequest(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		headers map[string]string
		prepare bool
	}{
		{"navigation", "GET", map[string]string{"Sec-Fetch-Dest": "document", "Accept": "*/*"}, true},
		{"old browser accepting html", "GET", map[string]string{"Accept": "text/html,application/xhtml+xml;q=0.9"}, true},
		{"form post", "POST", map[string]string{"Sec-Fetch-Dest": "document"}, true},
		{"image", "GET", map[string]string{"Sec-Fetch-Dest": "image", "Accept": "image/avif,*/*"}, false},
		{"fetch accepting html", "GET", map[string]string{"Sec-Fetch-Dest": "empty", "Accept": "text/html"}, false},
		{"api client", "GET", map[string]string{"Accept": "application/json"}, false},
		{"HEAD", "HEAD", map[string]string{"Sec-Fetch-Dest": "document"}, false},
		{"websocket", "GET", map[string]string{"Accept": "text/html", "Upgrade": "websocket"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "/", nil)
			r.Header.Set("Accept-Encoding", "gzip, br")
			r.Header.Set("Range", "bytes=0-99")
			r.Header.Set("If-Range", `"v1"`)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			got := PrepareRequest(r)
			if r.Header.Get("Accept-Encoding") != "gzip, br" || r.Header.Get("Range") == "" {
				t.Fatal("the original request was modified")
			}
			if !tt.prepare {
				if got != r {
					t.Fatal("request changed")
				}
				return
			}
			if ae := got.Header.Get("Accept-Encoding"); ae != "identity" {
				t.Errorf("Accept-Encoding %q", ae)
			}
			if got.Header.Get("Range") != "" || got.Header.Get("If-Range") != "" {
				t.Error("Range kept")
			}
			if got.URL != r.URL || got.Context() != r.Context() {
				t.Error("not a copy of the same request")
			}
		})
	}
}

// newServer runs handler behind a Writer in a real http.Server.
func newServer(t *testing.T, handler http.HandlerFunc) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		iw := NewWriter(w, r, markSnippet)
		defer iw.Close()
		handler(iw, r)
		if err := iw.Finish(); err != nil {
			t.Errorf("Finish: %v", err)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestWriterStreamsBeforeHandlerFinishes writes half a page, flushes and blocks: the client must
// have the first half, with the snippet, while the handler is still running.
func TestWriterStreamsBeforeHandlerFinishes(t *testing.T) {
	release := make(chan struct{})
	first, second := page[:60], page[60:]
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, first)
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, second)
	})
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	wantFirst := strings.Replace(first, "<title>", mark+"<title>", 1)
	buf := make([]byte, len(wantFirst))
	done := make(chan error, 1)
	go func() { _, err := io.ReadFull(res.Body, buf); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("first half not received while the handler was blocked")
	}
	if string(buf) != wantFirst {
		t.Fatalf("first bytes %q, want %q", buf, wantFirst)
	}
	close(release)
	rest, _ := io.ReadAll(res.Body)
	if got := string(buf) + string(rest); got != injectedPage {
		t.Fatalf("page %q", got)
	}
	if res.ContentLength != -1 || res.TransferEncoding[0] != "chunked" {
		t.Fatalf("not streamed: length %d, %v", res.ContentLength, res.TransferEncoding)
	}
}

// A page whose upstream length is known keeps a Content-Length, the new one, whenever the body's
// length is settled by the first output; otherwise it is streamed without one. Checked through a real
// server and client, which refuse a body that disagrees with its Content-Length.
func TestWriterContentLength(t *testing.T) {
	// Bodies above net/http's 2 KB response buffer, which would otherwise size a short answer itself.
	filler := strings.Repeat("<p>hi</p>", 500)
	page := strings.Replace(page, "</body>", filler+"</body>", 1)
	injectedPage := strings.Replace(page, "<title>", mark+"<title>", 1)
	fragment := `<div class="cart">3 items</div>` + filler
	noAnchor := "<!doctype html>" + strings.Repeat("x", DefaultScanLimit+10) + "<head>"
	tests := []struct {
		name   string
		writes []string
		length string // the upstream's Content-Length, "" for none
		flush  bool   // flush after the first write
		want   string // the body the client must get
		sized  bool   // whether the answer must carry a Content-Length (else chunked)
	}{
		{"anchor in the first write", []string{page}, strconv.Itoa(len(page)), false, injectedPage, true},
		{"anchor in the first of two writes", []string{page[:60], page[60:]}, strconv.Itoa(len(page)), false, injectedPage, true},
		{"anchor only in the second write", []string{page[:15], page[15:]}, strconv.Itoa(len(page)), false, injectedPage, false},
		{"flushed before the anchor", []string{page[:15], page[15:]}, strconv.Itoa(len(page)), true, injectedPage, false},
		{"no upstream length", []string{page}, "", false, injectedPage, false},
		{"fragment: nothing inserted", []string{fragment}, strconv.Itoa(len(fragment)), false, fragment, false},
		{"scan limit passed in the first write", []string{noAnchor}, strconv.Itoa(len(noAnchor)), false, noAnchor, true},
		{"empty body", nil, "0", false, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				if tt.length != "" {
					w.Header().Set("Content-Length", tt.length)
				}
				w.WriteHeader(http.StatusOK)
				for i, s := range tt.writes {
					io.WriteString(w, s)
					if i == 0 && tt.flush {
						w.(http.Flusher).Flush()
					}
				}
			})
			res, err := http.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil {
				t.Fatalf("reading the body: %v", err)
			}
			if string(body) != tt.want {
				t.Fatalf("body %q, want %q", body, tt.want)
			}
			if tt.sized && res.ContentLength != int64(len(tt.want)) {
				t.Errorf("Content-Length %d (transfer %v), want %d", res.ContentLength, res.TransferEncoding, len(tt.want))
			}
			if !tt.sized && res.ContentLength != -1 {
				t.Errorf("Content-Length %d on a body whose length was not known at the first byte", res.ContentLength)
			}
		})
	}
}

func TestWriterPassesEarlyHints(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(200)
		io.WriteString(w, page)
	})
	var got1xx []int
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		got1xx = append(got1xx, code)
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), "GET", srv.URL, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if len(got1xx) != 1 || got1xx[0] != 103 || res.StatusCode != 200 || string(body) != injectedPage {
		t.Fatalf("1xx %v, status %d, body %q", got1xx, res.StatusCode, body)
	}
}

func TestWriterHijackThroughUnwrap(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("Hijack through the Writer: %v", err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nhello <head>")
		brw.Flush()
	})
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Upgrade", "echo")
	req.Header.Set("Connection", "Upgrade")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 101 {
		t.Fatalf("status %d", res.StatusCode)
	}
	got, _ := bufio.NewReader(res.Body.(io.Reader)).ReadString('>')
	if got != "hello <head>" {
		t.Fatalf("upgraded stream %q", got)
	}
}

func TestWriterHEADKeepsContentLength(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Length", "109")
		w.Header().Set("ETag", `"v1"`)
	})
	res, err := http.Head(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.ContentLength != 109 || res.Header.Get("ETag") != `"v1"` {
		t.Fatalf("HEAD headers changed: %d %v", res.ContentLength, res.Header)
	}
}

// TestWriterStreamsGzipUpstream: an upstream that gzips and flushes (Z_SYNC_FLUSH) still reaches
// the client decoded, injected and without waiting for the end.
func TestWriterStreamsGzipUpstream(t *testing.T) {
	release := make(chan struct{})
	first, second := page[:60], page[60:]
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		io.WriteString(zw, first)
		zw.Flush()
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(zw, second)
		zw.Close()
	})
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr}).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ce := res.Header.Get("Content-Encoding"); ce != "" {
		t.Fatalf("Content-Encoding %q sent with a decoded body", ce)
	}
	wantFirst := strings.Replace(first, "<title>", mark+"<title>", 1)
	buf := make([]byte, len(wantFirst))
	done := make(chan error, 1)
	go func() { _, err := io.ReadFull(res.Body, buf); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("flushed gzip data not received while the handler was blocked")
	}
	close(release)
	rest, _ := io.ReadAll(res.Body)
	if got := string(buf) + string(rest); got != injectedPage {
		t.Fatalf("page %q", got)
	}
}
