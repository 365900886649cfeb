package pixel

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestCSPNonce(t *testing.T) {
	cases := []struct {
		name      string
		csp, ro   []string
		wantNonce string
	}{
		{"no policy", nil, nil, ""},
		{"script-src nonce", []string{"script-src 'nonce-abc123' 'strict-dynamic'; object-src 'none'"}, nil, "abc123"},
		{"default-src nonce", []string{"default-src 'self' 'nonce-xyz'"}, nil, "xyz"},
		{"script-src-elem wins", []string{"script-src-elem 'nonce-elem'; script-src 'nonce-other'"}, nil, "elem"},
		{"script-src hides default-src", []string{"default-src 'nonce-def'; script-src 'self'"}, nil, ""},
		{"style nonce is not a script nonce", []string{"script-src 'self'; style-src 'nonce-st'"}, nil, ""},
		{"no script restriction", []string{"img-src *"}, nil, ""},
		{"prefix is case-insensitive", []string{"SCRIPT-SRC 'NONCE-AbC'"}, nil, "AbC"},
		{"invalid nonce skipped", []string{`script-src 'nonce-a"b' 'nonce-ok'`}, nil, "ok"},
		{"second policy in one header", []string{"img-src 'self', script-src 'nonce-two'"}, nil, "two"},
		{"second header value", []string{"img-src 'self'", "script-src 'nonce-v2'"}, nil, "v2"},
		{"report-only when enforced has none", []string{"script-src 'self'"}, []string{"script-src 'nonce-ro'"}, "ro"},
		{"enforced first", []string{"script-src 'nonce-enf'"}, []string{"script-src 'nonce-ro'"}, "enf"},
		{"empty nonce", []string{"script-src 'nonce-'"}, nil, ""},
	}
	for _, tc := range cases {
		h := http.Header{}
		for _, v := range tc.csp {
			h.Add("Content-Security-Policy", v)
		}
		for _, v := range tc.ro {
			h.Add("Content-Security-Policy-Report-Only", v)
		}
		if got := CSPNonce(h); got != tc.wantNonce {
			t.Errorf("%s: CSPNonce = %q; want %q", tc.name, got, tc.wantNonce)
		}
	}
}

// scriptHash is the CSP hash source of the snippet's text, computed from the parsed element.
func scriptHash(t *testing.T, snippet []byte) string {
	t.Helper()
	_, _, text, err := parseScript(snippet)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(text))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

func TestAllowScript(t *testing.T) {
	plain := Snippet(allPlatforms, Page{EventID: testEventID}, "")
	nonced := Snippet(allPlatforms, Page{EventID: testEventID}, "abc")
	H := scriptHash(t, plain)
	Hn := scriptHash(t, nonced)
	cases := []struct {
		name    string
		snippet []byte
		in      []string
		want    []string
	}{
		{"no policy", plain, nil, nil},
		{"no script restriction untouched", plain, []string{"img-src 'self'; frame-ancestors 'none'"}, []string{"img-src 'self'; frame-ancestors 'none'"}},
		{"hash added to script-src", plain, []string{"script-src 'self'; img-src *"}, []string{"script-src 'self' " + H + "; img-src *"}},
		{"script-src created from default-src", plain, []string{"default-src 'self'; img-src *"},
			[]string{"default-src 'self'; img-src *; script-src 'self' " + H}},
		{"nonce reused", nonced, []string{"script-src 'nonce-abc' 'strict-dynamic'"}, []string{"script-src 'nonce-abc' 'strict-dynamic'"}},
		{"other nonce gets hash", nonced, []string{"script-src 'nonce-zzz'"}, []string{"script-src 'nonce-zzz' " + Hn}},
		{"unsafe-inline kept working", plain, []string{"script-src 'self' 'unsafe-inline'"}, []string{"script-src 'self' 'unsafe-inline'"}},
		{"unsafe-inline already off by a nonce", plain, []string{"script-src 'unsafe-inline' 'nonce-x'"}, []string{"script-src 'unsafe-inline' 'nonce-x' " + H}},
		{"unsafe-inline off by strict-dynamic", plain, []string{"script-src 'unsafe-inline' 'strict-dynamic'"}, []string{"script-src 'unsafe-inline' 'strict-dynamic' " + H}},
		{"none respected", plain, []string{"script-src 'none'"}, []string{"script-src 'none'"}},
		{"hash already there", plain, []string{"script-src " + H}, []string{"script-src " + H}},
		{"hash prefix case-insensitive", plain, []string{"script-src " + strings.Replace(H, "sha256", "SHA256", 1)}, []string{"script-src " + strings.Replace(H, "sha256", "SHA256", 1)}},
		// Browsers without script-src-elem read script-src, so both get the hash.
		{"script-src-elem and script-src", plain, []string{"script-src-elem 'self'; script-src 'self'"}, []string{"script-src-elem 'self' " + H + "; script-src 'self' " + H}},
		{"script-src-elem over default-src", plain, []string{"script-src-elem 'self'; default-src 'self'"},
			[]string{"script-src-elem 'self' " + H + "; default-src 'self'; script-src 'self' " + H}},
		{"each policy of a header", plain, []string{"script-src 'self', img-src 'none',script-src https://cdn.example"},
			[]string{"script-src 'self' " + H + ", img-src 'none', script-src https://cdn.example " + H}},
		{"each header value", plain, []string{"script-src 'self'", "object-src 'none'"}, []string{"script-src 'self' " + H, "object-src 'none'"}},
		{"upper-case directive", plain, []string{"SCRIPT-SRC 'self'"}, []string{"script-src 'self' " + H}},
		{"not a snippet", []byte("<div>"), []string{"script-src 'self'"}, []string{"script-src 'self'"}},
	}
	for _, tc := range cases {
		for _, header := range []string{"Content-Security-Policy", "Content-Security-Policy-Report-Only"} {
			h := http.Header{}
			for _, v := range tc.in {
				h.Add(header, v)
			}
			h.Set("Content-Type", "text/html")
			AllowScript(h, tc.snippet)
			if got := h.Values(header); !reflect.DeepEqual(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Errorf("%s (%s):\n got %q\nwant %q", tc.name, header, got, tc.want)
			}
			if h.Get("Content-Type") != "text/html" {
				t.Errorf("%s: other headers changed", tc.name)
			}
		}
	}
}

func TestAllowScriptLeavesBothPoliciesConsistent(t *testing.T) {
	snippet := Snippet(allPlatforms, Page{EventID: testEventID}, "")
	H := scriptHash(t, snippet)
	h := http.Header{}
	h.Set("Content-Security-Policy", "script-src 'self'")
	h.Set("Content-Security-Policy-Report-Only", "default-src 'self'; report-uri /csp")
	AllowScript(h, snippet)
	if got, want := h.Get("Content-Security-Policy"), "script-src 'self' "+H; got != want {
		t.Errorf("enforced policy = %q; want %q", got, want)
	}
	if got, want := h.Get("Content-Security-Policy-Report-Only"), "default-src 'self'; report-uri /csp; script-src 'self' "+H; got != want {
		t.Errorf("report-only policy = %q; want %q", got, want)
	}
}

func TestAllowVendors(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		in   string
		want string
	}{
		{"no restriction", allPlatforms, "frame-ancestors 'self'", "frame-ancestors 'self'"},
		{"default-src only: specific directives created", Config{MetaPixelID: "1", CollectPath: "/capi/collect"}, "default-src 'self'",
			"default-src 'self'; script-src 'self' https://connect.facebook.net; " +
				"connect-src 'self' https://www.facebook.com https://connect.facebook.net; img-src 'self' https://www.facebook.com"},
		{"existing directives widened", Config{TikTokPixelCode: "C1"}, "script-src 'self'; connect-src 'self'; img-src data:",
			"script-src 'self' https://analytics.tiktok.com; connect-src 'self' https://analytics.tiktok.com; img-src data: https://analytics.tiktok.com"},
		{"https: and * already allow", Config{MetaPixelID: "1"}, "script-src https:; connect-src *; img-src *", "script-src https:; connect-src *; img-src *"},
		{"none respected", Config{MetaPixelID: "1"}, "script-src 'self'; connect-src 'none'; img-src 'none'",
			"script-src 'self' https://connect.facebook.net; connect-src 'none'; img-src 'none'"},
		{"google frames", Config{GoogleTagID: "AW-1"}, "frame-src 'self'; script-src 'self'",
			"frame-src 'self' https://www.googletagmanager.com https://td.doubleclick.net; script-src 'self' https://www.googletagmanager.com https://www.googleadservices.com https://www.google.com https://googleads.g.doubleclick.net"},
		{"collect needs self", Config{CollectPath: "/capi/collect"}, "connect-src https://api.example", "connect-src https://api.example 'self'"},
		{"no duplicates", Config{MetaPixelID: "1"}, "script-src 'self' https://connect.facebook.net", "script-src 'self' https://connect.facebook.net"},
		{"nothing configured", Config{}, "default-src 'self'", "default-src 'self'"},
	}
	for _, tc := range cases {
		for _, header := range []string{"Content-Security-Policy", "Content-Security-Policy-Report-Only"} {
			h := http.Header{}
			h.Set(header, tc.in)
			AllowVendors(h, tc.cfg)
			if got := h.Get(header); got != tc.want {
				t.Errorf("%s (%s):\n got %q\nwant %q", tc.name, header, got, tc.want)
			}
		}
	}
}

func FuzzCSP(f *testing.F) {
	f.Add("script-src 'self' 'nonce-abc'; img-src *", "abc")
	f.Add("default-src 'none', script-src 'unsafe-inline'", "")
	f.Add(";;, ,'nonce-';script-src", "x")
	f.Fuzz(func(t *testing.T, policy, nonce string) {
		h := http.Header{}
		h.Set("Content-Security-Policy", policy)
		got := CSPNonce(h)
		if got != "" && (!ValidNonce(got) || !strings.Contains(policy, got)) {
			t.Fatalf("CSPNonce(%q) = %q", policy, got)
		}
		snippet := Snippet(allPlatforms, Page{EventID: "e"}, nonce)
		AllowVendors(h, allPlatforms)
		AllowScript(h, snippet)
		after := h.Get("Content-Security-Policy")
		// Every policy that restricted scripts now accepts the snippet, or was 'none' or had
		// 'unsafe-inline' in effect; nothing is ever removed.
		_, body, _ := splitSnippet(snippet)
		sum := sha256.Sum256(body)
		hash := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
		attr, _, _ := splitSnippet(snippet)
		for _, p := range parsePolicies(after) {
			d := p.effective(scriptElemChain)
			if d != nil && !d.isNone() && !d.allowsInline(attr, hash) {
				t.Fatalf("policy %q still blocks the snippet (from %q)", after, policy)
			}
		}
		for _, field := range strings.Fields(strings.NewReplacer(";", " ", ",", " ").Replace(policy)) {
			if !strings.Contains(strings.ToLower(after), strings.ToLower(field)) {
				t.Fatalf("source %q lost: %q → %q", field, policy, after)
			}
		}
	})
}
