package pixel

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

const (
	testEventID    = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
	testExternalID = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
	testPurchaseID = "purchase-a1001-2c5f"
)

var (
	allPlatforms = Config{
		MetaPixelID:       "1234567890",
		TikTokPixelCode:   "CABCDEF0123456789",
		GoogleTagID:       "AW-987654321",
		GoogleConversions: map[string]string{"Purchase": "AbC-dEf_123", "Lead": ""},
		CollectPath:       "/capi/collect",
	}
	purchase = Conversion{
		Name: "Purchase", EventID: testPurchaseID, Value: "49.90", Currency: "EUR", OrderID: "A-1001",
		ContentIDs: []string{"SKU-1", "SKU-2"},
	}
)

func TestSnippetGolden(t *testing.T) {
	tiktokLegacy := allPlatforms
	tiktokLegacy.TikTokEventNames = map[string]string{"Purchase": "CompletePayment"}
	cases := []struct {
		name  string
		cfg   Config
		page  Page
		nonce string
	}{
		{"all_platforms", allPlatforms, Page{EventID: testEventID, ExternalID: testExternalID}, ""},
		{"meta_only", Config{MetaPixelID: "1234567890"}, Page{EventID: testEventID, ExternalID: testExternalID}, ""},
		{"purchase", tiktokLegacy, Page{EventID: testEventID, ExternalID: testExternalID, Conversions: []Conversion{purchase}}, ""},
		{"limited_data_use", allPlatforms, Page{EventID: testEventID, ExternalID: testExternalID, LimitedDataUse: true}, ""},
		{"nonce", Config{TikTokPixelCode: "CABCDEF0123456789"}, Page{EventID: testEventID, ExternalID: testExternalID}, "rAnd0m+/Nonce_-=="},
		{"collect_only", Config{CollectPath: "/capi/collect"}, Page{EventID: testEventID}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Snippet(tc.cfg, tc.page, tc.nonce)
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("snippet differs from %s (go test -update rewrites it):\n%s", path, got)
			}
			if _, _, err := parseSnippet(got); err != nil {
				t.Errorf("golden snippet does not parse as one script: %v", err)
			}
		})
	}
}

func TestSnippetIncludesOnlyConfiguredPlatforms(t *testing.T) {
	page := Page{EventID: testEventID}
	markers := map[string]string{"meta": metaScriptURL, "tiktok": tiktokScriptURL, "google": googleScriptURL}
	cases := []struct {
		cfg  Config
		want []string
	}{
		{Config{MetaPixelID: "1"}, []string{"meta"}},
		{Config{TikTokPixelCode: "C1"}, []string{"tiktok"}},
		{Config{GoogleTagID: "AW-1"}, []string{"google"}},
		{Config{MetaPixelID: "1", GoogleTagID: "AW-1"}, []string{"meta", "google"}},
		{Config{CollectPath: "/c"}, nil},
	}
	for _, tc := range cases {
		s := string(Snippet(tc.cfg, page, ""))
		for platform, marker := range markers {
			want := false
			for _, p := range tc.want {
				want = want || p == platform
			}
			if got := strings.Contains(s, marker); got != want {
				t.Errorf("config %+v: snippet contains %s code = %v; want %v", tc.cfg, platform, got, want)
			}
		}
		if !strings.Contains(s, "w.capi={") {
			t.Errorf("config %+v: snippet lacks window.capi", tc.cfg)
		}
	}
	if s := Snippet(Config{}, page, ""); s != nil {
		t.Errorf("snippet with nothing configured = %q; want nil", s)
	}
}

func TestSnippetNonceAttribute(t *testing.T) {
	cases := []struct {
		nonce     string
		wantNonce bool
	}{
		{"abc123", true},
		{"a+b/c=_-", true},
		{"", false},
		{`x" onload="alert(1)`, false},
		{"abc def", false},
		{"abc>", false},
		{"é", false},
		{strings.Repeat("a", 257), false},
	}
	for _, tc := range cases {
		nonce, has, err := parseSnippet(Snippet(allPlatforms, Page{EventID: "e"}, tc.nonce))
		if err != nil {
			t.Fatalf("nonce %q: %v", tc.nonce, err)
		}
		if has != tc.wantNonce || has && nonce != tc.nonce {
			t.Errorf("nonce %q: element nonce %q (present %v); want present %v", tc.nonce, nonce, has, tc.wantNonce)
		}
	}
}

func TestSnippetHostileValuesStayInside(t *testing.T) {
	hostile := []string{
		"</script><script>alert(1)</script>",
		`"');alert(1);//`,
		"order \"42\" 'quoted'",
		"line\u2028separator\u2029paragraph",
		"<!--<script>",
		"]]>&amp;&lt;",
		"\\\"\\u0022",
		"`${alert(1)}`",
	}
	for _, v := range hostile {
		cfg := Config{
			MetaPixelID: v, TikTokPixelCode: v, GoogleTagID: v, CollectPath: v,
			GoogleConversions: map[string]string{v: v},
			TikTokEventNames:  map[string]string{v: v + "x"},
		}
		page := Page{EventID: v, ExternalID: v, Conversions: []Conversion{{
			Name: v, EventID: v, Value: v, Currency: v, OrderID: v, ContentIDs: []string{v, v},
		}}}
		got := Snippet(cfg, page, v)
		_, _, rt, err := decodeSnippet(got)
		if err != nil {
			t.Fatalf("value %q: %v\n%s", v, err, got)
		}
		want := runtime{
			EventID: v, ExternalID: v, Collect: v,
			Meta:   &metaRuntime{Pixel: v},
			TikTok: &tiktokRuntime{Code: v, Names: map[string]string{v: v + "x", "PageView": "Pageview"}},
			Google: &googleRuntime{ID: v, Labels: map[string]string{v: v}},
			Conversions: []conversionJSON{{Name: v, EventID: v, Data: conversionData{
				Currency: v, OrderID: v, ContentIDs: []string{v, v},
			}}},
		}
		if !reflect.DeepEqual(rt, want) {
			t.Errorf("value %q did not round-trip:\n got %+v\nwant %+v", v, rt, want)
		}
		body := bytes.TrimSuffix(got, []byte("</script>"))
		for _, bad := range []string{"\u2028", "\u2029", "</", "<!--"} {
			if bytes.Contains(body, []byte(bad)) {
				t.Errorf("value %q: snippet contains %q raw", v, bad)
			}
		}
	}
}

func TestSnippetValueIsANumberOnlyWhenDecimal(t *testing.T) {
	cases := map[string]string{
		"49.90": "49.90", "0": "0", "-3.5": "-3.5", "1000000": "1000000",
		"": "", "49,90": "", "1e3": "", "01": "", ".5": "", "5.": "", "NaN": "", "Infinity": "", "0x10": "",
	}
	for in, want := range cases {
		_, _, rt, err := decodeSnippet(Snippet(Config{MetaPixelID: "1"}, Page{Conversions: []Conversion{{Name: "Purchase", Value: in}}}, ""))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(rt.Conversions[0].Data.Value); got != want {
			t.Errorf("value %q embedded as %q; want %q", in, got, want)
		}
	}
}

func TestSnippetTikTokNames(t *testing.T) {
	cfg := Config{TikTokPixelCode: "C1", TikTokEventNames: map[string]string{"Lead": "SubmitForm", "Same": "Same", "Empty": ""}}
	_, _, rt, err := decodeSnippet(Snippet(cfg, Page{Conversions: []Conversion{{Name: "Purchase"}, {Name: "Custom"}}}, ""))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"Lead": "SubmitForm", "PageView": "Pageview"}
	if !reflect.DeepEqual(rt.TikTok.Names, want) {
		t.Errorf("TikTok names = %v; want %v (only names that differ)", rt.TikTok.Names, want)
	}
}

// FuzzSnippet: whatever the values, the snippet parses as exactly one script element, the nonce
// attribute appears only when valid, and the embedded JSON gives back the values.
func FuzzSnippet(f *testing.F) {
	f.Add("e1", "x1", "Purchase", "49.90", "EUR", "A-1", "SKU", "nonce", "/c", true)
	f.Add("</script>", "\u2028", "<!--", "1", "<b>", `"'`, "]]>", `" x="`, "", false)
	f.Fuzz(func(t *testing.T, eventID, externalID, name, value, currency, orderID, contentID, nonce, collect string, ldu bool) {
		cfg := Config{MetaPixelID: name, TikTokPixelCode: orderID, GoogleTagID: currency, CollectPath: collect,
			GoogleConversions: map[string]string{name: contentID}}
		page := Page{EventID: eventID, ExternalID: externalID, LimitedDataUse: ldu, Conversions: []Conversion{{
			Name: name, EventID: eventID, Value: value, Currency: currency, OrderID: orderID, ContentIDs: []string{contentID},
		}}}
		got := Snippet(cfg, page, nonce)
		if name == "" && orderID == "" && currency == "" && collect == "" {
			if got != nil {
				t.Fatalf("snippet with nothing configured: %q", got)
			}
			return
		}
		gotNonce, hasNonce, rt, err := decodeSnippet(got)
		if err != nil {
			t.Fatalf("%v\n%s", err, got)
		}
		if hasNonce != ValidNonce(nonce) || hasNonce && gotNonce != nonce {
			t.Fatalf("nonce %q gave attribute %q (present %v)", nonce, gotNonce, hasNonce)
		}
		// encoding/json replaces invalid UTF-8; what must round-trip is the text a browser would see.
		s := func(v string) string {
			b, _ := json.Marshal(v)
			var out string
			_ = json.Unmarshal(b, &out)
			return out
		}
		c := rt.Conversions[0]
		if rt.EventID != s(eventID) || rt.ExternalID != s(externalID) || rt.LDU != ldu || rt.Collect != s(collect) ||
			c.Name != s(name) || c.EventID != s(eventID) || c.Data.Currency != s(currency) || c.Data.OrderID != s(orderID) ||
			len(c.Data.ContentIDs) != 1 || c.Data.ContentIDs[0] != s(contentID) {
			t.Fatalf("values did not round-trip: %+v", rt)
		}
		if decimal.MatchString(value) != (string(c.Data.Value) == value) {
			t.Fatalf("value %q embedded as %q", value, c.Data.Value)
		}
		// A page without conversions takes the spliced path: the same bytes as encoding the whole.
		plain := Page{EventID: eventID, ExternalID: externalID, LimitedDataUse: ldu}
		tp := Compile(cfg)
		if got, want := tp.Snippet(plain, nonce), encodedWhole(tp, plain, nonce); !bytes.Equal(got, want) {
			t.Fatalf("spliced snippet differs from the whole encoding:\n got %q\nwant %q", got, want)
		}
	})
}

// encodedWhole is the snippet with the page's JSON literal encoded in one piece by encoding/json,
// the reference the spliced literal of Template.Snippet must equal byte for byte.
func encodedWhole(tp *Template, page Page, nonce string) []byte {
	b := []byte("<script")
	if ValidNonce(nonce) {
		b = append(b, ` nonce="`+nonce+`"`...)
	}
	b = append(b, ">\n"...)
	b = append(b, tp.script...)
	b = append(b, tp.pageLiteral(page)...)
	return append(b, ");\n</script>"...)
}

func TestTemplateSnippetEqualsTheWholeEncoding(t *testing.T) {
	configs := map[string]Config{
		"all platforms": allPlatforms,
		"tiktok names":  {TikTokPixelCode: "C1", TikTokEventNames: map[string]string{"Lead": "SubmitForm", "Custom": "Custom"}},
		"collect only":  {CollectPath: "/capi/collect"},
		"hostile IDs":   {MetaPixelID: "</script><!--", GoogleTagID: "\u2028&", GoogleConversions: map[string]string{"<x>": "\xff"}},
	}
	pages := map[string]Page{
		"returning visitor": {EventID: testEventID, ExternalID: testExternalID},
		"no external ID":    {EventID: testEventID},
		"no event ID":       {ExternalID: testExternalID},
		"limited data use":  {EventID: testEventID, ExternalID: testExternalID, LimitedDataUse: true},
		"hostile values":    {EventID: "</script>\u2029\"\\", ExternalID: "\xff\x00<!--&"},
	}
	for cname, cfg := range configs {
		tp := Compile(cfg)
		for pname, page := range pages {
			for _, nonce := range []string{"", "rAnd0m+/=", `bad"nonce`} {
				got, want := tp.Snippet(page, nonce), encodedWhole(tp, page, nonce)
				if !bytes.Equal(got, want) {
					t.Errorf("%s, %s, nonce %q:\n got %q\nwant %q", cname, pname, nonce, got, want)
				}
				if !bytes.Equal(Snippet(cfg, page, nonce), got) {
					t.Errorf("%s, %s: Snippet and Compile(cfg).Snippet differ", cname, pname)
				}
			}
		}
	}
}

func TestCompileKeepsItsOwnCopyOfTheConfig(t *testing.T) {
	cfg := Config{GoogleTagID: "AW-1", GoogleConversions: map[string]string{"Purchase": "label"}}
	tp := Compile(cfg)
	before := tp.Snippet(Page{EventID: "e", Conversions: []Conversion{{Name: "Purchase"}}}, "")
	cfg.GoogleConversions["Purchase"] = "changed"
	if after := tp.Snippet(Page{EventID: "e", Conversions: []Conversion{{Name: "Purchase"}}}, ""); !bytes.Equal(before, after) {
		t.Fatalf("changing the caller's map changed the template's snippet:\n%s\n%s", before, after)
	}
}

func TestCompileNothingConfigured(t *testing.T) {
	if tp := Compile(Config{}); tp != nil {
		t.Fatalf("Compile(Config{}) = %+v, want nil", tp)
	}
	var tp *Template
	if s := tp.Snippet(Page{EventID: "e"}, ""); s != nil {
		t.Fatalf("nil Template's snippet = %q, want nil", s)
	}
}

// parseSnippet parses b as HTML the way a browser would and requires exactly one element, a
// script, with nothing around it. It returns the nonce attribute.
func parseSnippet(b []byte) (nonce string, hasNonce bool, err error) {
	nonce, hasNonce, _, err = parseScript(b)
	return nonce, hasNonce, err
}

func parseScript(b []byte) (nonce string, hasNonce bool, text string, err error) {
	doc, err := html.Parse(bytes.NewReader(b))
	if err != nil {
		return "", false, "", err
	}
	var scripts []*html.Node
	var stray []string
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		switch {
		case n.Type == html.ElementNode && n.DataAtom == atom.Script:
			scripts = append(scripts, n)
		case n.Type == html.ElementNode && n.DataAtom != atom.Html && n.DataAtom != atom.Head && n.DataAtom != atom.Body:
			stray = append(stray, "<"+n.Data+">")
		case n.Type == html.TextNode && (n.Parent == nil || n.Parent.DataAtom != atom.Script) && strings.TrimSpace(n.Data) != "":
			stray = append(stray, fmt.Sprintf("text %q", n.Data))
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if len(scripts) != 1 || len(stray) > 0 {
		return "", false, "", fmt.Errorf("want exactly one script element and nothing else; got %d scripts and %v", len(scripts), stray)
	}
	s := scripts[0]
	for _, a := range s.Attr {
		if a.Key == "nonce" {
			nonce, hasNonce = a.Val, true
		} else {
			return "", false, "", fmt.Errorf("unexpected attribute %s=%q", a.Key, a.Val)
		}
	}
	if s.FirstChild == nil || s.FirstChild != s.LastChild {
		return "", false, "", errors.New("script has no single text child")
	}
	return nonce, hasNonce, s.FirstChild.Data, nil
}

// decodeSnippet parses the snippet and decodes the JSON literal the script receives.
func decodeSnippet(b []byte) (nonce string, hasNonce bool, rt runtime, err error) {
	nonce, hasNonce, text, err := parseScript(b)
	if err != nil {
		return "", false, rt, err
	}
	const call = "})(window,document,"
	i := strings.LastIndex(text, call)
	if i < 0 || !strings.HasSuffix(text, ");\n") {
		return "", false, rt, errors.New("script does not end with the config literal")
	}
	literal := text[i+len(call) : len(text)-len(");\n")]
	if strings.ContainsAny(literal, "\n\r\u2028\u2029") {
		return "", false, rt, errors.New("config literal spans lines")
	}
	dec := json.NewDecoder(strings.NewReader(literal))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rt); err != nil {
		return "", false, rt, fmt.Errorf("config literal %q: %w", literal, err)
	}
	if dec.More() {
		return "", false, rt, errors.New("trailing data after the config literal")
	}
	return nonce, hasNonce, rt, nil
}

func BenchmarkSnippet(b *testing.B) {
	page := Page{EventID: testEventID, ExternalID: testExternalID, Conversions: []Conversion{purchase}}
	b.ReportAllocs()
	for b.Loop() {
		Snippet(allPlatforms, page, "rAnd0m")
	}
}

// BenchmarkTemplateSnippet is the per-page cost as the edge pays it: the Config compiled once,
// a plain page (spliced) and a thank-you page with a conversion (encoded whole).
func BenchmarkTemplateSnippet(b *testing.B) {
	tp := Compile(allPlatforms)
	for _, bc := range []struct {
		name string
		page Page
	}{
		{"page", Page{EventID: testEventID, ExternalID: testExternalID}},
		{"purchase", Page{EventID: testEventID, ExternalID: testExternalID, Conversions: []Conversion{purchase}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tp.Snippet(bc.page, "")
			}
		})
	}
}

func BenchmarkAllowNoCSP(b *testing.B) {
	snippet := Snippet(allPlatforms, Page{EventID: testEventID}, "")
	h := http.Header{"Content-Type": {"text/html"}, "Cache-Control": {"no-cache"}}
	b.ReportAllocs()
	for b.Loop() {
		_ = CSPNonce(h)
		AllowVendors(h, allPlatforms)
		AllowScript(h, snippet)
	}
}

func BenchmarkAllowScript(b *testing.B) {
	snippet := Snippet(allPlatforms, Page{EventID: testEventID}, "")
	b.ReportAllocs()
	for b.Loop() {
		h := http.Header{}
		h.Set("Content-Security-Policy", "default-src 'self'; img-src * data:; object-src 'none'")
		AllowVendors(h, allPlatforms)
		AllowScript(h, snippet)
	}
}
