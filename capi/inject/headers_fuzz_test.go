package inject

import (
	"bytes"
	"mime"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/text/encoding/htmlindex"
)

// FuzzResponseHeaders runs a page with arbitrary upstream Content-Type, Content-Disposition,
// Cache-Control, Content-Encoding and Content-Length through the Writer and checks the decision
// and the headers it answers with against references that do not share its code:
//
//   - isInjectableHTML accepts only what mime.ParseMediaType reads as text/html, with no charset or
//     one that the WHATWG label table (x/text's htmlindex) maps to an ASCII-compatible encoding
//     (never UTF-16, ISO-2022-JP or the replacement encoding), and always accepts plain text/html
//     and charset=utf-8;
//   - hasToken finds no-transform whenever a quoted-string-aware Cache-Control parse does;
//   - contentLength is the number strconv.ParseInt reads from the single trimmed value, or -1;
//   - a response is injected only when all of that allows it and its Content-Disposition is inline
//     (by mime.ParseMediaType and by its first token, as browsers read it); a response with a
//     Content-Encoding other than identity or a single gzip is never injected, and an injected gzip
//     response goes out decoded, without Content-Encoding;
//   - a response not injected passes through byte for byte; an injected one holds the snippet once;
//     a Content-Length sent is a non-negative number, the body's length when upstream's was true.
func FuzzResponseHeaders(f *testing.F) {
	for _, tc := range []struct {
		ct, cd, cc, ce, cl string
		shape              uint8
	}{
		{"text/html; charset=utf-8", "", "", "", strconv.Itoa(len(page)), 0},
		{"TEXT/HTML", "inline", "max-age=60, public", "identity", " " + strconv.Itoa(len(page)) + " ", 0},
		{"text/html;charset=\"ISO-8859-1\"", "inline; filename=\"page.html\"", "no-cache", "gzip", "", 0},
		{"text/html; charset=UTF-16", "", "", "", "", 0},
		{"text/html; charset=iso-2022-jp", "", "", "", "", 0},
		{"text/html; charset=csiso2022kr", "", "", "", "", 0},
		{"text/html; charset=windows-1251", "", "", "x-gzip", "", 8},
		{"text/html; charset=latin1; charset=utf-16", "", "", "", "", 0},
		{"text/htmlx", "", "", "", "", 0},
		{"application/xhtml+xml", "", "", "", "", 0},
		{"text/html", "attachment; filename=\"page.html\"", "", "", "", 0},
		{"text/html", "ATTACHMENT", "", "", "", 0},
		{"text/html", "inline;;", "", "", "", 0},
		{"text/html", "", "public, No-Transform", "", "", 0},
		{"text/html", "", "private, max-age=0\tno-transform", "", "", 1},
		{"text/html", "", `no-cache="set-cookie, no-transform"`, "", "", 0},
		{"text/html", "", "public,\tno-transform=1", "", "", 1},
		{"text/html", "", "", "br", "", 0},
		{"text/html", "", "", "gzip, br", "", 0},
		{"text/html", "", "", "GZIP ", "", 2},
		{"text/html", "", "", "", "+12", 0},
		{"text/html", "", "", "", "-1", 0},
		{"text/html", "", "", "", "0x10", 0},
		{"text/html", "", "", "", "99999999999999999999", 0},
		{"text/html", "", "", "", "9223372036854775807", 0}, // plus the snippet would overflow into a negative length
		{"text/html", "", "", "", strconv.Itoa(len(page)), 4},
		{"", "", "", "", "", 0},
	} {
		f.Add(tc.ct, tc.cd, tc.cc, tc.ce, tc.cl, tc.shape)
	}
	f.Fuzz(func(t *testing.T, ct, cd, cc, ce, cl string, shape uint8) {
		h := http.Header{}
		if ct != "" {
			h["Content-Type"] = []string{ct}
		}
		if cd != "" {
			h["Content-Disposition"] = []string{cd}
		}
		if cc != "" {
			h["Cache-Control"] = []string{cc}
			if shape&1 != 0 { // the same directives on two header lines
				h["Cache-Control"] = strings.SplitN(cc, ",", 2)
			}
		}
		if ce != "" {
			h["Content-Encoding"] = []string{ce}
			if shape&2 != 0 {
				h["Content-Encoding"] = []string{ce, ce}
			}
		}
		if cl != "" {
			h["Content-Length"] = []string{cl}
			if shape&4 != 0 {
				h["Content-Length"] = []string{cl, cl}
			}
		}
		method := http.MethodGet
		if shape&8 != 0 {
			method = http.MethodPost
		}

		htmlOK := checkInjectableHTML(t, ct)
		noTransform := checkHasToken(t, h.Values("Cache-Control"))
		checkContentLength(t, h)

		// The Writer's decision, and what it answers with.
		rec := httptest.NewRecorder()
		called := false
		iw := NewWriter(rec, httptest.NewRequest(method, "/", nil), func(http.Header) []byte {
			called = true
			return []byte(mark)
		})
		defer iw.Close()
		for k, v := range h {
			iw.Header()[k] = append([]string(nil), v...)
		}
		enc := h.Values("Content-Encoding")
		gzipBody := len(enc) == 1 && (strings.EqualFold(strings.TrimSpace(enc[0]), "gzip") || strings.EqualFold(strings.TrimSpace(enc[0]), "x-gzip"))
		body := []byte(page)
		if gzipBody {
			body = gzipBytes(body)
		}
		iw.WriteHeader(http.StatusOK)
		if _, err := iw.Write(body); err != nil {
			t.Fatalf("Write: %v", err)
		}
		if err := iw.Finish(); err != nil {
			t.Fatalf("Finish: %v", err)
		}

		if !called {
			if !bytes.Equal(rec.Body.Bytes(), body) {
				t.Fatalf("a response not injected was changed")
			}
			for k, v := range h {
				if got := rec.Header()[k]; !equalStrings(got, v) {
					t.Fatalf("a response not injected had %s changed from %q to %q", k, v, got)
				}
			}
			return
		}
		if !htmlOK {
			t.Fatalf("injected into Content-Type %q", ct)
		}
		if noTransform {
			t.Fatalf("injected despite Cache-Control %q", h.Values("Cache-Control"))
		}
		if cd != "" {
			disp, _, err := mime.ParseMediaType(cd)
			first, _, _ := strings.Cut(cd, ";")
			if err != nil || disp != "inline" || !strings.EqualFold(strings.Trim(first, " \t"), "inline") {
				t.Fatalf("injected despite Content-Disposition %q", cd)
			}
		}
		if len(enc) > 1 || len(enc) == 1 && !gzipBody && !isIdentity(enc[0]) {
			t.Fatalf("injected into Content-Encoding %q", enc)
		}
		for _, v := range rec.Header().Values("Content-Encoding") {
			if !isIdentity(v) {
				t.Fatalf("injected response goes out with Content-Encoding %q", v)
			}
		}
		if got := rec.Body.String(); got != injectedPage {
			t.Fatalf("injected body %q, want %q", got, injectedPage)
		}
		if v := rec.Header().Values("Content-Length"); len(v) > 0 {
			n, err := strconv.ParseInt(v[0], 10, 64)
			if len(v) != 1 || err != nil || n < 0 {
				t.Fatalf("upstream Content-Length %q answered with Content-Length %q", h.Values("Content-Length"), v)
			}
			if contentLength(h) == int64(len(page)) && n != int64(rec.Body.Len()) {
				t.Fatalf("Content-Length %d for a body of %d bytes", n, rec.Body.Len())
			}
		}
	})
}

// checkInjectableHTML checks isInjectableHTML(ct) against mime.ParseMediaType and the WHATWG
// encoding labels, and returns it.
func checkInjectableHTML(t *testing.T, ct string) bool {
	t.Helper()
	got := isInjectableHTML(ct)
	mt, params, err := mime.ParseMediaType(ct)
	cs, hasCharset := params["charset"]
	if err == nil && mt == "text/html" && (!hasCharset || strings.EqualFold(strings.TrimSpace(cs), "utf-8")) && !got {
		t.Fatalf("isInjectableHTML(%q) = false for HTML in UTF-8", ct)
	}
	if !got {
		return false
	}
	if err != nil || mt != "text/html" {
		t.Fatalf("isInjectableHTML(%q) = true; mime.ParseMediaType says %q, %v", ct, mt, err)
	}
	if !hasCharset {
		return true
	}
	// A label browsers do not know is ignored, and the page's own declaration or the default
	// (both ASCII-compatible once a UTF-16 BOM is refused) decides; a known one must keep ASCII.
	e, lerr := htmlindex.Get(cs)
	if lerr != nil {
		return true
	}
	name, _ := htmlindex.Name(e)
	switch name {
	case "utf-16be", "utf-16le", "iso-2022-jp", "replacement":
		t.Fatalf("isInjectableHTML(%q) = true for the %s encoding", ct, name)
	}
	const ascii = `<script nonce="a1B2">window.capi={id:"0-9_az"};</script>`
	if out, err := e.NewEncoder().String(ascii); err != nil || out != ascii {
		t.Fatalf("isInjectableHTML(%q) = true, but %s does not keep ASCII: %q, %v", ct, name, out, err)
	}
	return true
}

// checkHasToken checks hasToken against a Cache-Control parse that honours quoted strings
// (RFC 9111 §5.2): a no-transform directive it finds must be found. hasToken may find more (a
// no-transform inside a quoted list refuses injection, the safe side). It returns hasToken's answer.
func checkHasToken(t *testing.T, values []string) bool {
	t.Helper()
	got := hasToken(values, "no-transform")
	for _, v := range values {
		for _, d := range cacheDirectives(v) {
			if strings.EqualFold(d, "no-transform") && !got {
				t.Fatalf("hasToken(%q) missed no-transform", values)
			}
		}
	}
	return got
}

// cacheDirectives returns the directive names of a Cache-Control value, skipping quoted arguments.
func cacheDirectives(v string) []string {
	var names []string
	for len(v) > 0 {
		i := strings.IndexAny(v, ",=")
		if i < 0 {
			names = append(names, strings.Trim(v, " \t"))
			break
		}
		names = append(names, strings.Trim(v[:i], " \t"))
		if v[i] == ',' {
			v = v[i+1:]
			continue
		}
		// An argument: a token up to the next comma, or a quoted string with \-escapes.
		v = strings.TrimLeft(v[i+1:], " \t")
		if strings.HasPrefix(v, `"`) {
			j := 1
			for j < len(v) && v[j] != '"' {
				if v[j] == '\\' {
					j++
				}
				j++
			}
			v = v[min(j+1, len(v)):]
		}
		if k := strings.IndexByte(v, ','); k >= 0 {
			v = v[k+1:]
		} else {
			v = ""
		}
	}
	return names
}

// checkContentLength checks contentLength against strconv.ParseInt on the single trimmed value:
// the number it keeps is the one the header states, written in canonical digits.
func checkContentLength(t *testing.T, h http.Header) {
	t.Helper()
	got := contentLength(h)
	want := int64(-1)
	if v := h.Values("Content-Length"); len(v) == 1 {
		if n, err := strconv.ParseInt(strings.TrimSpace(v[0]), 10, 64); err == nil && n >= 0 {
			want = n
		}
	}
	if got != want {
		t.Fatalf("contentLength(%q) = %d, want %d", h.Values("Content-Length"), got, want)
	}
	if got >= 0 {
		digits := strings.TrimLeft(strings.TrimPrefix(strings.TrimSpace(h.Get("Content-Length")), "+"), "0")
		if strconv.FormatInt(got, 10) != digits && !(got == 0 && digits == "") {
			t.Fatalf("contentLength(%q) = %d, not the number written", h.Get("Content-Length"), got)
		}
	}
}

func isIdentity(v string) bool {
	v = strings.TrimSpace(v)
	return v == "" || strings.EqualFold(v, "identity")
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzPrepareRequest runs PrepareRequest on arbitrary Accept, Sec-Fetch-Dest, method and Upgrade:
// the client's request is never changed (Caddy's access log reads it); a navigation that
// mime.ParseMediaType reads as accepting text/html, or a Sec-Fetch-Dest: document one, gets a copy
// asking for identity without Range or If-Range and with every other header as the client sent
// it; anything else (HEAD, upgrades, fetches, iframes, non-HTML Accept) is passed on as it is.
func FuzzPrepareRequest(f *testing.F) {
	for _, tc := range []struct {
		accept, dest string
		method       uint8
		upgrade      bool
	}{
		{"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "", 0, false},
		{"text/html", "document", 1, false},
		{"*/*", "", 0, false},
		{"application/json", "", 0, false},
		{"TEXT/HTML ; q=0.5", "", 0, false},
		{"text/html;q=0", "", 0, false},
		{"text/htmlx, xtext/html", "", 0, false},
		{"text/html", "iframe", 0, false},
		{"text/html", "empty", 0, false},
		{"text/html", "", 2, false},
		{"text/html", "", 0, true},
		{"", "document", 3, false},
		{",,,;", "", 0, false},
	} {
		f.Add(tc.accept, tc.dest, tc.method, tc.upgrade)
	}
	methods := []string{http.MethodGet, http.MethodPost, http.MethodHead, http.MethodPut, http.MethodOptions}
	f.Fuzz(func(t *testing.T, accept, dest string, m uint8, upgrade bool) {
		method := methods[int(m)%len(methods)]
		r := httptest.NewRequest(method, "/p", nil)
		if accept != "" {
			r.Header["Accept"] = strings.SplitAfterN(accept, "\n", 2) // sometimes two lines
		}
		if dest != "" {
			r.Header["Sec-Fetch-Dest"] = []string{dest}
		}
		if upgrade {
			r.Header.Set("Upgrade", "websocket")
		}
		r.Header.Set("Accept-Encoding", "gzip, br")
		r.Header.Set("Range", "bytes=0-99")
		r.Header.Set("If-Range", `"v1"`)
		r.Header.Set("Cookie", "_capi_vid=abc")
		sent := r.Header.Clone()

		got := acceptsHTML(r.Header.Values("Accept"))
		for _, v := range r.Header.Values("Accept") {
			for part := range strings.SplitSeq(v, ",") {
				if mt, _, err := mime.ParseMediaType(part); err == nil && mt == "text/html" && !got {
					t.Fatalf("acceptsHTML(%q) = false, but %q is text/html", r.Header.Values("Accept"), part)
				}
			}
		}
		if got && !strings.Contains(strings.ToLower(strings.Join(r.Header.Values("Accept"), ",")), "text/html") {
			t.Fatalf("acceptsHTML(%q) = true without text/html", r.Header.Values("Accept"))
		}

		r2 := PrepareRequest(r)
		if !equalHeaders(r.Header, sent) {
			t.Fatalf("PrepareRequest changed the client's request headers: %q, was %q", r.Header, sent)
		}
		navigation := (method == http.MethodGet || method == http.MethodPost) && !upgrade &&
			(dest == "document" || dest == "" && got)
		if !navigation {
			if r2 != r {
				t.Fatalf("%s Sec-Fetch-Dest %q Accept %q upgrade %v: request was rewritten", method, dest, accept, upgrade)
			}
			return
		}
		if r2 == r {
			t.Fatalf("%s Sec-Fetch-Dest %q Accept %q: navigation passed on unprepared", method, dest, accept)
		}
		if r2.Method != r.Method || r2.URL != r.URL || r2.Body != r.Body || r2.Host != r.Host {
			t.Fatalf("prepared request differs beyond its headers")
		}
		want := sent.Clone()
		want["Accept-Encoding"] = []string{"identity"}
		delete(want, "Range")
		delete(want, "If-Range")
		if !equalHeaders(r2.Header, want) {
			t.Fatalf("prepared headers %q, want %q", r2.Header, want)
		}
	})
}

func equalHeaders(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !equalStrings(v, b[k]) {
			return false
		}
	}
	return true
}
