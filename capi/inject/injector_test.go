package inject

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

const mark = "<!--S-->"

// run feeds input to an Injector in chunks of the given size (0: one write) and returns the output.
func run(t testing.TB, input string, chunk, limit int) (string, *Injector) {
	t.Helper()
	var out bytes.Buffer
	in := NewInjector(&out, []byte(mark), limit)
	b := []byte(input)
	if chunk <= 0 {
		chunk = len(b) + 1
	}
	for len(b) > 0 {
		n := min(chunk, len(b))
		if _, err := in.Write(b[:n]); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	return out.String(), in
}

func TestInjectorInsertionPoint(t *testing.T) {
	tests := []struct {
		name, in, want string // want marks the insertion point with "|"; no "|" means none
	}{
		{"after head start tag", `<!doctype html><html><head>|<title>x</title></head><body></body></html>`, ""},
		{"after leading metas", "<html><head>\n <meta charset=\"utf-8\">\n<meta name=viewport content=\"w\">\n|<title>t</title>", ""},
		{"comment among metas", `<head><meta charset=utf-8><!-- c --><meta x>|<link rel=x>`, ""},
		{"text after head", `<head>|hello`, ""},
		{"end tag after head", `<head>|</head><body>`, ""},
		{"head at end of stream", `<head><meta charset=utf-8>|`, ""},
		{"uppercase head", `<HTML><HEAD>|<TITLE>x</TITLE>`, ""},
		{"head with attribute holding >", `<head data-x=">">|<script></script>`, ""},
		{"head with single-quoted >", `<head data-x='a>b'>|<p>`, ""},
		{"unquoted attribute ends at >", `<head a=b>|<p>x`, ""},
		{"self-closing head", `<head/>|<p>`, ""},
		{"header is not head", `<!doctype html><header>x</header><body>`, "<!doctype html><header>x</header>|<body>"},
		{"commented head", `<!-- <head> --><html><head>|<p>`, ""},
		{"head in script", `<script>var s="<head>"</script><head>|<p>`, ""},
		{"head in style", `<style>/*<head>*/</style ><head>|<p>`, ""},
		{"head in title", `<title><head></title><head>|<p>`, ""},
		{"head in textarea", `<textarea><head><body></textarea><head>|<p>`, ""},
		{"head in escaped script", `<script><!--<script>"</script>"<head></script>--></script><head>|<x>`, ""},
		{"script end inside escape", `<script><!--</script><head>|<p>`, ""},
		{"escaped script stays escaped after < and a digit", `<script><!--<1<script></script><body></script><head>|<p>`, ""},
		{"double-escaped script ends", `<script><!--<script>--></script><head>|<p>`, ""},
		{"script end with attrs", `<script></script a=">"><head>|<p>`, ""},
		{"body when no head", `<!doctype html><title>x</title>|<body class="a">`, ""},
		{"uppercase body", `<HTML>|<BODY>`, ""},
		{"end head without start", `<html><title>x</title>|</HEAD ><body>`, ""},
		{"end body", `<!doctype html><p>x|</body></html>`, ""},
		{"end html", `<!doctype html><p>x|</html>`, ""},
		{"document without anchors", `<!DOCTYPE html><p>hi|`, ""},
		{"html tag without anchors", `<html lang=en><p>hi|`, ""},
		{"fragment gets nothing", `<div class="product">x</div>`, ""},
		{"empty", ``, ""},
		{"bom then doctype", "\xEF\xBB\xBF<!DOCTYPE html><head>|<p>", ""},
		{"utf-16 bom", "\xFF\xFE<\x00h\x00e\x00a\x00d\x00>\x00", ""},
		{"doctype with quoted >", `<!DOCTYPE html PUBLIC "a>b"><head>|<p>`, ""},
		{"processing instruction", `<?xml version="1.0"?><head>|<p>`, ""},
		{"bogus comment", `<!x <head> ><head>|<p>`, ""},
		{"abrupt comment", `<!--><head>|<p>`, ""},
		{"abrupt comment dash", `<!---><head>|<p>`, ""},
		{"comment ended by bang", `<!-- x --!><head>|<p>`, ""},
		{"less-than as text", `a < b <<head>|<p>`, ""},
		{"lt before text in head", `<head>|< p`, ""},
		{"end tag open then >", `</><head>|<p>`, ""},
		{"plaintext hides everything", `<!doctype html><plaintext><head><body>|`, ""},
		{"noscript raw", `<noscript><head></noscript><head>|<p>`, ""},
		{"attribute named =", `<head ="x>"`, "<head =\"x>|\""},
		{"meta-like name", `<head><metadata>`, "<head>|<metadata>"},
		{"long tag name", `<head><metamorphosis>`, "<head>|<metamorphosis>"},
		{"body after head", `<head></head><body>`, "<head>|</head><body>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == "" {
				want = tt.in
			}
			input := strings.Replace(tt.in, "|", "", 1)
			if tt.want != "" {
				input = tt.in
			}
			expect := strings.Replace(want, "|", mark, 1)
			for _, chunk := range []int{0, 1, 2, 3, 7} {
				got, inj := run(t, input, chunk, 0)
				if got != expect {
					t.Fatalf("chunk %d:\n got %q\nwant %q", chunk, got, expect)
				}
				if inj.Injected() != strings.Contains(want, "|") {
					t.Fatalf("chunk %d: Injected() = %v", chunk, inj.Injected())
				}
			}
		})
	}
}

func TestInjectorGivesUpAfterLimit(t *testing.T) {
	page := "<!doctype html>" + strings.Repeat("<p>x</p>", 100) + "<head>"
	got, inj := run(t, page, 5, 64)
	if got != page || inj.Injected() {
		t.Fatalf("injected after the scan limit: %q", got)
	}
	got, _ = run(t, page, 5, len(page))
	if !strings.HasSuffix(got, "<head>"+mark) {
		t.Fatalf("anchor within the limit not found: %q", got[len(got)-40:])
	}
}

// TestInjectorForwardsBeforeAnchor checks that bytes are written as soon as they cannot be part of
// an anchor: a long text arrives without waiting for the rest of the page.
func TestInjectorForwardsBeforeAnchor(t *testing.T) {
	var out bytes.Buffer
	in := NewInjector(&out, []byte(mark), 0)
	in.Write([]byte("<!doctype html><html><p>some text <b>bold</b> <bo"))
	if got, want := out.String(), "<!doctype html><html><p>some text <b>bold</b> "; got != want {
		t.Fatalf("forwarded %q, want %q (only the partial tag held)", got, want)
	}
	in.Write([]byte("dy>rest"))
	in.Close()
	if got, want := out.String(), "<!doctype html><html><p>some text <b>bold</b> "+mark+"<body>rest"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("broken pipe")
	}
	f.n--
	return len(p), nil
}

func TestInjectorWriteErrorIsSticky(t *testing.T) {
	in := NewInjector(&failWriter{}, []byte(mark), 0)
	if _, err := in.Write([]byte("<head><p>")); err == nil {
		t.Fatal("want error")
	}
	if _, err := in.Write([]byte("x")); err == nil {
		t.Fatal("want sticky error")
	}
	if err := in.Close(); err == nil {
		t.Fatal("want sticky error from Close")
	}
}

// writeLog records every call its Injector makes, to see how the output is split.
type writeLog struct {
	calls []string
	err   error
}

func (w *writeLog) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	w.calls = append(w.calls, string(p))
	return len(p), nil
}

// An http.ResponseWriter turns each call into a chunk and often a system call: the bytes before the
// anchor, the snippet and the rest of one write must leave in one call, and the bytes must not
// wait for a later write.
func TestInjectorWritesEachInputWriteInOneCall(t *testing.T) {
	head := "<!doctype html><html><head><meta charset=utf-8><title>t</title>"
	small := head + strings.Repeat("<p>x</p>", 100)
	large := head + strings.Repeat("<p>x</p>", maxGathered/8+1)
	title := strings.Index(head, "<title>")
	tests := []struct {
		name   string
		writes []string
		calls  []string // want
	}{
		{"page in one write", []string{small},
			[]string{strings.Replace(small, "<title>", mark+"<title>", 1)}},
		{"anchor in the second write", []string{"<!doctype html><ht", "ml><head><p>a</p>", "<p>b</p>"},
			[]string{"<!doctype html><ht", "ml><head>" + mark + "<p>a</p>", "<p>b</p>"}},
		// The tag start the snippet goes before ("<t", held while its name decided) leaves with it.
		{"large rest written as it is", []string{large},
			[]string{head[:title] + mark + "<t", large[title+2:]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log writeLog
			in := NewInjector(&log, []byte(mark), 0)
			for _, w := range tt.writes {
				if n, err := in.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if err := in.Close(); err != nil {
				t.Fatal(err)
			}
			if len(log.calls) != len(tt.calls) {
				t.Fatalf("%d calls to the destination, want %d:\n%q", len(log.calls), len(tt.calls), log.calls)
			}
			for i := range tt.calls {
				if log.calls[i] != tt.calls[i] {
					t.Errorf("call %d = %.80q…, want %.80q…", i, log.calls[i], tt.calls[i])
				}
			}
		})
	}
}

func TestInjectorGatheredWriteReportsDestinationError(t *testing.T) {
	broken := errors.New("connection reset")
	in := NewInjector(&writeLog{err: broken}, []byte(mark), 0)
	if n, err := in.Write([]byte("<html><head><title>t</title>")); n != 0 || !errors.Is(err, broken) {
		t.Fatalf("Write = %d, %v; want 0 and the destination's error", n, err)
	}
	if _, err := in.Write([]byte("more")); !errors.Is(err, broken) {
		t.Fatalf("second Write error = %v, want the sticky destination error", err)
	}
}
