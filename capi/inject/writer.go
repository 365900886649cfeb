package inject

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// Writer is an http.ResponseWriter that inserts a snippet into the HTML response written through
// it, streaming, and passes every other response through untouched, headers included.
//
// The decision is made once, when the status is written: a snippet is injected only into a 200
// answer to a GET or POST navigation whose Content-Type is text/html in an ASCII-compatible charset,
// with no Content-Encoding (gzip is decoded, see below), no Cache-Control: no-transform, no
// Content-Disposition: attachment and no Content-Range; never for HEAD, CONNECT, upgrades, 1xx, 204,
// 206, 304 or any other status, and never for a fetch or an iframe (Sec-Fetch-Dest other than
// "document"), whose HTML is a part of a page that already has the snippet. Only then is the snippet
// callback called; it may return nil to leave the response alone.
//
// When it injects, Writer deletes Accept-Ranges (byte ranges of the upstream body do not address
// ours), ETag and Last-Modified, and sends Content-Length only when it can know the new length before
// the first byte: see "Content-Length" below. The snippet carries
// a per-view event ID, so two injected bodies are never the same: a validator would let a browser or
// cache revalidate to 304 and reuse a page whose event ID was already counted, and the platforms
// would drop that view as a duplicate. Deleting them is what Caddy's templates handler does for the
// same reason; a weak ETag would still allow the 304.
//
// Content-Length: an identity body whose upstream length is known keeps a Content-Length, and with it
// the plain (not chunked) transfer that costs a proxy fewer system calls and bytes per page. The
// status and headers are held back from the first WriteHeader until the Injector first writes
// output, which is at the end of the Write that brought the first body bytes: by then the snippet
// has nearly always gone in (its anchor sits in a page's first bytes), so the body will be exactly
// the upstream length plus the snippet's, and that is the Content-Length sent. When the Injector
// has given up instead (no anchor within the scan limit) the body is the upstream's and so is its
// length. When it is still scanning, or on a Flush before any output, the length is unknown and the
// response is streamed without Content-Length, as before. Nothing else waits: the headers go out
// with the first output bytes, never later than they would have been flushed by the network.
//
// A gzip body from an upstream that ignored PrepareRequest is decoded and sent on as identity with
// Content-Encoding removed, so that Caddy's encode handler, which wraps this one, compresses the
// result for the client. Other encodings (br, zstd, stacked ones) pass through untouched and get no
// snippet.
//
// Writer forwards 1xx responses without latching the status, routes ReadFrom through Write so
// io.Copy cannot bypass the injection, flushes through http.NewResponseController, and unwraps to
// the inner writer so hijacking (websockets) and deadlines reach the real connection.
//
// Use it as:
//
//	iw := inject.NewWriter(w, r, snippet)
//	defer iw.Close()
//	err := next.ServeHTTP(iw, r)
//	if err == nil {
//		err = iw.Finish()
//	}
type Writer struct {
	rw      http.ResponseWriter
	req     *http.Request
	snippet func(http.Header) []byte

	wroteHeader bool
	// held is the status of a response whose headers wait for the first output bytes (see
	// "Content-Length" above); 0 once they are written.
	held int
	// length is the upstream body's Content-Length while the headers are held, -1 when unknown.
	length     int64
	snippetLen int64
	inj        *Injector // nil unless injecting
	gz         *gunzipper
	err        error
}

// NewWriter returns a Writer for the response to r. snippet is called at most once, when the
// status is written and the response qualifies, with the response headers: it may read and change
// them (a CSP nonce, a hash source) and returns the bytes to insert, or nil for none.
func NewWriter(w http.ResponseWriter, r *http.Request, snippet func(h http.Header) []byte) *Writer {
	return &Writer{rw: w, req: r, snippet: snippet}
}

// Header returns the inner writer's header map; the two share it, so trailers work.
func (w *Writer) Header() http.Header { return w.rw.Header() }

// WriteHeader decides whether to inject and writes the status.
func (w *Writer) WriteHeader(code int) {
	if w.wroteHeader {
		w.rw.WriteHeader(code) // let the inner writer report the superfluous call
		return
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		w.rw.WriteHeader(code) // informational: the real status is still to come
		return
	}
	w.wroteHeader = true
	if enc, ok := w.qualifies(code); ok {
		if s := w.snippet(w.rw.Header()); s != nil {
			h := w.rw.Header()
			h.Del("Accept-Ranges")
			h.Del("Etag")
			h.Del("Last-Modified")
			w.inj = NewInjector(headerCommitter{w}, s, 0)
			w.snippetLen = int64(len(s))
			if enc == "gzip" {
				h.Del("Content-Encoding")
				h.Del("Content-Length")
				w.gz = newGunzipper(w.inj)
			} else if w.length = contentLength(h); w.length >= 0 {
				w.held = code
				return
			}
			h.Del("Content-Length")
		}
	}
	w.rw.WriteHeader(code)
}

// contentLength returns the single valid Content-Length of h, or -1.
func contentLength(h http.Header) int64 {
	v := h.Values("Content-Length")
	if len(v) != 1 {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v[0]), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// commitHeader writes held headers with the Content-Length the body is now known to have, or
// without one when it is not known yet.
func (w *Writer) commitHeader() {
	if w.held == 0 {
		return
	}
	code := w.held
	w.held = 0
	h := w.rw.Header()
	switch {
	case w.inj.Injected() && w.length <= math.MaxInt64-w.snippetLen:
		h.Set("Content-Length", strconv.FormatInt(w.length+w.snippetLen, 10))
	case w.inj.Injected():
		// An upstream announcing a length no body has: a sum that overflows would announce a
		// negative one. Streamed without a length instead.
		h.Del("Content-Length")
	case w.inj.Finished():
		h.Set("Content-Length", strconv.FormatInt(w.length, 10))
	default:
		h.Del("Content-Length")
	}
	w.rw.WriteHeader(code)
}

// headerCommitter is the Injector's destination: it writes held headers before the first bytes.
type headerCommitter struct{ w *Writer }

func (c headerCommitter) Write(p []byte) (int, error) {
	c.w.commitHeader()
	return c.w.rw.Write(p)
}

// qualifies reports whether the response may be injected into, and its content coding
// ("" or "gzip").
func (w *Writer) qualifies(code int) (encoding string, ok bool) {
	r, h := w.req, w.rw.Header()
	if code != http.StatusOK || (r.Method != http.MethodGet && r.Method != http.MethodPost) {
		return "", false
	}
	if r.Header.Get("Upgrade") != "" {
		return "", false
	}
	if dest := r.Header.Get("Sec-Fetch-Dest"); dest != "" && dest != "document" {
		return "", false
	}
	// Two Content-Types: browsers go by the last, Get reads the first; neither is safe to guess.
	if ct := h.Values("Content-Type"); len(ct) != 1 || !isInjectableHTML(ct[0]) {
		return "", false
	}
	if h.Get("Content-Range") != "" || hasToken(h.Values("Cache-Control"), "no-transform") {
		return "", false
	}
	if d := h.Get("Content-Disposition"); d != "" {
		if disp, _, err := mime.ParseMediaType(d); err != nil || disp != "inline" {
			return "", false // attachment, or something we cannot read: leave downloads alone
		}
	}
	switch ce := h.Values("Content-Encoding"); {
	case len(ce) == 0:
		return "", true
	case len(ce) == 1:
		switch strings.ToLower(strings.TrimSpace(ce[0])) {
		case "", "identity":
			return "", true
		case "gzip", "x-gzip":
			return "gzip", true
		}
	}
	return "", false
}

// Write writes p, injecting into it if the response qualified.
func (w *Writer) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.inj == nil {
		return w.rw.Write(p)
	}
	if w.err != nil {
		return 0, w.err
	}
	var err error
	if w.gz != nil {
		err = w.gz.write(p)
	} else {
		_, err = w.inj.Write(p)
	}
	if err != nil {
		w.err = err
		return 0, err
	}
	return len(p), nil
}

// ReadFrom copies from src through Write, so that handlers using io.Copy (file_server through
// http.ServeContent) are injected into too. A response that is passed through keeps the inner
// writer's ReadFrom (sendfile).
func (w *Writer) ReadFrom(src io.Reader) (int64, error) {
	if w.wroteHeader && w.inj == nil {
		if rf, ok := w.rw.(io.ReaderFrom); ok {
			return rf.ReadFrom(src)
		}
	}
	return io.Copy(writerOnly{w}, src)
}

// writerOnly hides Writer's ReadFrom from io.Copy, which would otherwise call it back.
type writerOnly struct{ io.Writer }

// FlushError writes out everything that cannot be part of a pending anchor and flushes the inner
// writer. Bytes that a gzip stream has not completed yet stay in the decoder until more arrive.
func (w *Writer) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return w.err
	}
	if w.inj != nil {
		if err := w.inj.Flush(); err != nil {
			return err
		}
		w.commitHeader()
	}
	return http.NewResponseController(w.rw).Flush()
}

// Flush is FlushError for callers that use http.Flusher.
func (w *Writer) Flush() { _ = w.FlushError() }

// Unwrap returns the inner writer, for http.NewResponseController (Hijack, deadlines, full duplex).
func (w *Writer) Unwrap() http.ResponseWriter { return w.rw }

// Injected reports whether the snippet has been written into the response.
func (w *Writer) Injected() bool { return w.inj != nil && w.inj.Injected() }

// Finish writes the end of an injected response: bytes still held, the rest of a gzip stream, and
// the snippet when it belongs at the end. Call it after the next handler returned without error.
func (w *Writer) Finish() error {
	if w.inj == nil {
		return nil
	}
	if w.err != nil {
		return w.err
	}
	if w.gz != nil {
		gz := w.gz
		w.gz = nil
		if err := gz.finish(); err != nil {
			w.err = err
			return err
		}
	}
	if err := w.inj.Close(); err != nil {
		w.err = err
		return err
	}
	w.commitHeader() // a body that never produced output (empty, or all held until now)
	return nil
}

// Close releases the gzip decoder if Finish was not called (the next handler failed or panicked).
// It writes nothing. It is safe to call more than once and after Finish.
func (w *Writer) Close() error {
	if w.gz != nil {
		w.gz.abort()
		w.gz = nil
	}
	return nil
}

// PrepareRequest returns the request to pass upstream. For navigations likely to answer with HTML
// (GET or POST, with Sec-Fetch-Dest: document, or without Sec-Fetch-Dest but accepting text/html)
// it asks for an identity body and drops Range and If-Range, so the answer can be injected into
// without decoding and is not a 206. Other requests are returned as they are.
//
// It works on a shallow copy with its own header map, so the original request, which Caddy's access
// log reads, still shows what the client sent. Compression towards the client is unaffected because
// Caddy's encode handler chose its encoder from the client's Accept-Encoding before this runs.
func PrepareRequest(r *http.Request) *http.Request {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		return r
	}
	if r.Header.Get("Upgrade") != "" {
		return r
	}
	switch dest := r.Header.Get("Sec-Fetch-Dest"); dest {
	case "document":
	case "":
		if !acceptsHTML(r.Header.Values("Accept")) {
			return r
		}
	default:
		return r
	}
	r2 := new(http.Request)
	*r2 = *r
	r2.Header = r.Header.Clone()
	r2.Header.Set("Accept-Encoding", "identity")
	r2.Header.Del("Range")
	r2.Header.Del("If-Range")
	return r2
}

func acceptsHTML(accept []string) bool {
	for _, v := range accept {
		for _, part := range strings.Split(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(mt), "text/html") {
				return true
			}
		}
	}
	return false
}

// isInjectableHTML reports whether a Content-Type is HTML in a charset where the snippet's ASCII
// bytes can be inserted between tags without changing the meaning of the bytes around them. UTF-16
// and UTF-32 would be corrupted, and stateful or EBCDIC encodings could be; those are left alone.
// Without a charset the page decides (BOM or <meta charset>); the Injector refuses a UTF-16 BOM.
func isInjectableHTML(contentType string) bool {
	if contentType == "" {
		return false // net/http would sniff; we do not inject into what we cannot see is HTML
	}
	// What nearly every server sends, decided without parsing (ParseMediaType allocates a map).
	if strings.EqualFold(contentType, "text/html; charset=utf-8") || strings.EqualFold(contentType, "text/html") {
		return true
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "text/html" {
		return false
	}
	cs, ok := params["charset"]
	if !ok {
		return true
	}
	cs = strings.ToLower(strings.TrimSpace(cs))
	switch cs {
	case "utf-8", "utf8", "us-ascii", "ascii", "latin1", "iso-8859-1", "windows-1252", "cp1252":
		return true
	}
	return strings.HasPrefix(cs, "iso-8859-") || strings.HasPrefix(cs, "windows-125")
}

// hasToken reports whether a comma-separated header (Cache-Control) contains token.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			name, _, _ := strings.Cut(part, "=")
			if strings.EqualFold(strings.TrimSpace(name), token) {
				return true
			}
		}
	}
	return false
}

// gunzipper decodes a gzip body that arrives in writes. compress/gzip pulls from a reader, so it
// runs in a goroutine that is handed one write at a time; write returns only when the decoder has
// consumed all of it and wants more, so the inner ResponseWriter is never used by two goroutines at
// once. Memory stays bounded by the decoder's window.
type gunzipper struct {
	dst  io.Writer
	in   chan []byte   // the next compressed chunk; closed at the end of the body
	want chan struct{} // the decoder consumed its chunk and waits for more
	quit chan struct{} // closed to abort: the decoder stops without writing more
	done chan error    // the decoder's result, once
	cur  []byte
	got  bool
	err  error
}

var errAborted = errors.New("inject: response aborted")

func newGunzipper(dst io.Writer) *gunzipper {
	g := &gunzipper{
		dst:  dst,
		in:   make(chan []byte),
		want: make(chan struct{}),
		quit: make(chan struct{}),
		done: make(chan error, 1),
	}
	go g.run()
	return g
}

func (g *gunzipper) run() {
	zr, err := gzip.NewReader(g)
	if err == nil {
		buf := make([]byte, 16<<10)
		for {
			n, rerr := zr.Read(buf)
			if errors.Is(rerr, errAborted) {
				err = rerr
				break // aborted: write nothing more
			}
			if n > 0 {
				if _, werr := g.dst.Write(buf[:n]); werr != nil {
					err = werr
					break
				}
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				err = fmt.Errorf("inject: decode gzip response: %w", rerr)
				break
			}
		}
	} else if err == io.EOF {
		err = nil // an empty body: nothing to decode
	} else if !errors.Is(err, errAborted) {
		err = fmt.Errorf("inject: decode gzip response: %w", err)
	}
	g.done <- err
}

// Read serves the decoder from the current chunk, asking write for the next one when it is used up.
func (g *gunzipper) Read(p []byte) (int, error) {
	for len(g.cur) == 0 {
		if g.got {
			select {
			case g.want <- struct{}{}:
			case <-g.quit:
				return 0, errAborted
			}
		}
		select {
		case chunk, ok := <-g.in:
			if !ok {
				return 0, io.EOF
			}
			g.cur, g.got = chunk, true
		case <-g.quit:
			return 0, errAborted
		}
	}
	n := copy(p, g.cur)
	g.cur = g.cur[n:]
	return n, nil
}

func (g *gunzipper) write(p []byte) error {
	if g.err != nil {
		return g.err
	}
	if len(p) == 0 {
		return nil
	}
	select {
	case g.in <- p:
	case err := <-g.done:
		g.err = endedEarly(err)
		return g.err
	}
	select {
	case <-g.want:
		return nil
	case err := <-g.done:
		g.err = endedEarly(err)
		return g.err
	}
}

func endedEarly(err error) error {
	if err == nil {
		return errors.New("inject: decode gzip response: data after the end of the gzip stream")
	}
	return err
}

// finish ends the compressed body and waits for the decoder to write its last bytes.
func (g *gunzipper) finish() error {
	if g.err != nil {
		return g.err
	}
	close(g.in)
	if err := <-g.done; err != nil {
		g.err = err
	}
	return g.err
}

// abort stops the decoder without writing anything more.
func (g *gunzipper) abort() {
	close(g.quit)
	if g.err == nil {
		<-g.done
	}
}
