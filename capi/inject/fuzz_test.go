package inject

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// oracle computes the insertion point with golang.org/x/net/html's Tokenizer, applying the rules
// documented on Injector to whole tokens. It returns -1 when nothing should be inserted. It ignores
// the scan limit; callers keep inputs below it.
func oracle(input []byte) int {
	if len(input) > 0 && (input[0] == 0xFE || input[0] == 0xFF) {
		return -1
	}
	z := html.NewTokenizer(bytes.NewReader(input))
	off := 0
	afterHead, docSeen := false, false
	for {
		tt := z.Next()
		raw := z.Raw()
		start := off
		off += len(raw)
		if tt == html.ErrorToken {
			// The stream ended inside a token. The Injector decides on a tag from its name, before
			// the tag is complete, so a truncated tag can still be an anchor.
			if end, name, ended, ok := truncatedTag(input[start:]); ok {
				switch {
				case afterHead && (end || !strings.HasPrefix("meta", name) || ended && name != "meta"):
					return start
				case !afterHead && ended && (!end && name == "body" || end && (name == "head" || name == "body" || name == "html")):
					return start
				}
			}
			if afterHead || docSeen {
				return len(input)
			}
			return -1
		}
		name, _ := z.TagName()
		tag := string(name)
		if afterHead {
			switch tt {
			case html.TextToken:
				if i := bytes.IndexFunc(raw, func(r rune) bool { return !strings.ContainsRune(" \t\n\f\r", r) }); i >= 0 {
					return start + i
				}
			case html.StartTagToken, html.SelfClosingTagToken:
				if tag != "meta" {
					return start
				}
			case html.EndTagToken:
				return start
			}
			continue
		}
		switch tt {
		case html.DoctypeToken:
			docSeen = true
		case html.StartTagToken, html.SelfClosingTagToken:
			switch tag {
			case "head":
				afterHead = true
			case "body":
				return start
			case "html":
				docSeen = true
			}
		case html.EndTagToken:
			switch tag {
			case "head", "body", "html":
				return start
			}
		}
	}
}

func TestInjectorAgreesWithXNetHTML(t *testing.T) {
	for _, in := range []string{
		`<!doctype html><html><head><meta charset=utf-8><title>x</title></head><body><p>x</p></body></html>`,
		`<!-- <head> --><script>if (a<b) document.write("<head>")</script><HEAD class="a>b"><META x><link>`,
		`<textarea></textarea ><title>&lt;head></title><body>`,
		`<p>no document markers</p>`,
		`<!DOCTYPE html><p>x`,
		`<head>  text`,
		`<style><!-- </style><head>`,
	} {
		got, inj := run(t, in, 3, 0)
		if want := oracle([]byte(in)); int(inj.InsertedAt()) != want {
			t.Errorf("%q: inserted at %d, x/net/html says %d (output %q)", in, inj.InsertedAt(), want, got)
		}
	}
}

// FuzzInjector checks, for any input and any split into writes, that the output is the input with
// exactly one snippet inserted (or none), that the point does not depend on the split, and that it is
// where x/net/html's tokenizer puts it.
func FuzzInjector(f *testing.F) {
	for _, s := range []string{
		`<!doctype html><html><head><meta charset="utf-8"><title>x</title></head><body></body></html>`,
		`<script>var s="<head>"</script><!-- <body> --><HEAD data-x=">">`,
		`<script><!--<script></script>--></script><body>`,
		"\xEF\xBB\xBF<!DOCTYPE html><p>x</HTML >",
		`<textarea><body></textarea><title></title x><xmp></xmp>`,
	} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, input []byte, chunk uint8) {
		snippet := []byte("\x00SNIPPET\x00")
		var whole, split bytes.Buffer
		a := NewInjector(&whole, snippet, 0)
		a.Write(input)
		a.Close()
		b := NewInjector(&split, snippet, 0)
		for rest := input; len(rest) > 0; {
			n := min(int(chunk%16)+1, len(rest))
			b.Write(rest[:n])
			rest = rest[n:]
			if n%2 == 0 {
				b.Flush()
			}
		}
		b.Close()
		if !bytes.Equal(whole.Bytes(), split.Bytes()) || a.InsertedAt() != b.InsertedAt() {
			t.Fatalf("output depends on the split: at %d vs %d", a.InsertedAt(), b.InsertedAt())
		}
		out, at := whole.Bytes(), int(a.InsertedAt())
		if at < 0 {
			if !bytes.Equal(out, input) {
				t.Fatalf("nothing inserted but output differs from input")
			}
		} else {
			want := append(append(append([]byte{}, input[:at]...), snippet...), input[at:]...)
			if !bytes.Equal(out, want) {
				t.Fatalf("output is not the input with the snippet at %d", at)
			}
		}
		// x/net/html leaves the escaped state of a script on "<" plus a non-letter (it goes back
		// to plain script data, where the HTML standard, §13.2.5.20, stays escaped), so it is no
		// oracle for escaped scripts; TestInjectorInsertionPoint covers them against the standard.
		if len(input) < DefaultScanLimit && !(bytes.Contains(input, []byte("<!--")) && bytes.Contains(bytes.ToLower(input), []byte("<script"))) {
			if want := oracle(input); at != want {
				t.Fatalf("%q: inserted at %d, x/net/html says %d", input, at, want)
			}
		}
	})
}

// truncatedTag parses the start of a tag that the input ends in: "<name" or "</name", and whether a
// delimiter ended the name.
func truncatedTag(rest []byte) (end bool, name string, ended, ok bool) {
	if len(rest) < 2 || rest[0] != '<' {
		return false, "", false, false
	}
	rest = rest[1:]
	if rest[0] == '/' {
		end, rest = true, rest[1:]
	}
	if len(rest) == 0 || !isAlpha(rest[0]) {
		return false, "", false, false
	}
	i := bytes.IndexAny(rest, " \t\n\f\r/>")
	if i < 0 {
		return end, strings.ToLower(string(rest)), false, true
	}
	return end, strings.ToLower(string(rest[:i])), true, true
}

var _ io.Writer = (*Injector)(nil)

// FuzzWriterGzip feeds arbitrary bytes as a gzip body: the Writer never panics or hangs, reports a
// broken stream as an error, and for a valid stream writes exactly what the Injector makes of the
// decoded page.
func FuzzWriterGzip(f *testing.F) {
	f.Add([]byte(page), true, uint8(5))
	f.Add([]byte("\x1f\x8b\x08\x00garbage"), false, uint8(1))
	f.Add([]byte{}, false, uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, compress bool, chunk uint8) {
		body := data
		if compress {
			body = gzipBytes(data)
		}
		rec := httptest.NewRecorder()
		iw := NewWriter(rec, httptest.NewRequest("GET", "/", nil), markSnippet)
		defer iw.Close()
		iw.Header().Set("Content-Type", "text/html")
		iw.Header().Set("Content-Encoding", "gzip")
		var err error
		for rest := body; len(rest) > 0 && err == nil; {
			n := min(int(chunk)+1, len(rest))
			_, err = iw.Write(rest[:n])
			rest = rest[n:]
		}
		if err == nil {
			err = iw.Finish()
		}
		if !compress {
			return // anything goes but a panic or a hang
		}
		if err != nil {
			t.Fatalf("valid gzip stream refused: %v", err)
		}
		var want bytes.Buffer
		in := NewInjector(&want, []byte(mark), 0)
		in.Write(data)
		in.Close()
		if !bytes.Equal(rec.Body.Bytes(), want.Bytes()) {
			t.Fatalf("decoded output differs")
		}
	})
}

// FuzzWriterContentLength writes any page, in chunks, with its true Content-Length, sometimes
// flushing after the first chunk: when the answer carries a Content-Length it is exactly the length
// of the body written, and the body is what the Injector makes of the page.
func FuzzWriterContentLength(f *testing.F) {
	f.Add([]byte(page), uint8(200), false)
	f.Add([]byte(page), uint8(3), false)
	f.Add([]byte(page), uint8(20), true)
	f.Add([]byte("<div>fragment</div>"), uint8(255), false)
	f.Add([]byte("<!doctype html>no anchor"), uint8(255), false)
	f.Add([]byte{}, uint8(0), false)
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8, flush bool) {
		rec := httptest.NewRecorder()
		iw := NewWriter(rec, httptest.NewRequest("GET", "/", nil), markSnippet)
		defer iw.Close()
		iw.Header().Set("Content-Type", "text/html")
		iw.Header().Set("Content-Length", strconv.Itoa(len(data)))
		iw.WriteHeader(http.StatusOK)
		for i, rest := 0, data; len(rest) > 0; i++ {
			n := min(int(chunk)+1, len(rest))
			if _, err := iw.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			if i == 0 && flush {
				iw.Flush()
			}
			rest = rest[n:]
		}
		if err := iw.Finish(); err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		in := NewInjector(&want, []byte(mark), 0)
		in.Write(data)
		in.Close()
		if !bytes.Equal(rec.Body.Bytes(), want.Bytes()) {
			t.Fatalf("body differs from the Injector's output")
		}
		if cl := rec.Header().Get("Content-Length"); cl != "" && cl != strconv.Itoa(rec.Body.Len()) {
			t.Fatalf("Content-Length %s for a body of %d bytes", cl, rec.Body.Len())
		}
	})
}
