package pixel

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const chromiumPath = "/usr/bin/chromium"

// newBrowser starts headless Chromium with every host but 127.0.0.1 unresolvable, so the vendors'
// libraries never load and their stubs keep the calls queued where the test can read them.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CAPI_REQUIRE_SERVICES") == "1" {
			t.Fatalf("Chromium is required (CAPI_REQUIRE_SERVICES=1) but %s is missing: %v", chromiumPath, err)
		}
		t.Skipf("SKIPPING browser test: Chromium not found at %s (install it, or set CAPI_REQUIRE_SERVICES=1 to make this a failure)", chromiumPath)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// pageState is what the vendors' stubs queued, as the browser holds it.
type pageState struct {
	Capi       *struct{ EventID string } `json:"capi"`
	Fbq        []any                     `json:"fbq"`
	Ttq        []any                     `json:"ttq"`
	TtqLoaded  []string                  `json:"ttqLoaded"`
	TtqOptions map[string]any            `json:"ttqOptions"`
	DataLayer  []any                     `json:"dataLayer"`
	Scripts    []string                  `json:"scripts"`
}

const readState = `(function(){
function args(a){return Array.prototype.slice.call(a).map(function(x){return x instanceof Date?'DATE':x;});}
var w=window;
return {
capi: w.capi ? {EventID: w.capi.eventId} : null,
fbq: w.fbq && w.fbq.queue ? w.fbq.queue.map(args) : null,
ttq: w.ttq ? Array.prototype.slice.call(w.ttq).map(args) : null,
ttqLoaded: w.ttq && w.ttq._i ? Object.keys(w.ttq._i) : null,
ttqOptions: w.ttq && w.ttq._o ? w.ttq._o : null,
dataLayer: w.dataLayer ? w.dataLayer.map(args) : null,
scripts: Array.prototype.map.call(document.querySelectorAll('script[src]'), function(s){return s.src;})
};})()`

// fixture serves the test pages and records what window.capi.track posts.
type fixture struct {
	srv     *httptest.Server
	pages   map[string]func(w http.ResponseWriter)
	collect chan collected
}

type collected struct {
	body        map[string]any
	contentType string
	cookie      string
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{pages: map[string]func(http.ResponseWriter){}, collect: make(chan collected, 16)}
	mux := http.NewServeMux()
	mux.HandleFunc("/page/", func(w http.ResponseWriter, r *http.Request) {
		serve, ok := f.pages[strings.TrimPrefix(r.URL.Path, "/page/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "_capi_vid", Value: "visitor123", Path: "/"})
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		serve(w)
	})
	mux.HandleFunc("POST /capi/collect", func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Errorf("collect body %q: %v", raw, err)
		}
		c, _ := r.Cookie("_capi_vid")
		cookie := ""
		if c != nil {
			cookie = c.Value
		}
		f.collect <- collected{body: body, contentType: r.Header.Get("Content-Type"), cookie: cookie}
		w.WriteHeader(http.StatusNoContent)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func htmlPage(head string) string {
	return "<!doctype html><html><head><title>shop</title>" + head + "</head><body><p>shop</p></body></html>"
}

// page registers a page whose head holds head, after letting prepare adapt the headers.
func (f *fixture) page(name, head string, headers http.Header) string {
	f.pages[name] = func(w http.ResponseWriter) {
		for k, v := range headers {
			w.Header()[k] = v
		}
		io.WriteString(w, htmlPage(head))
	}
	return f.srv.URL + "/page/" + name
}

func load(t *testing.T, browser context.Context, url string) pageState {
	t.Helper()
	tab, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	if err := chromedp.Do(tab, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigate %s: %v", url, err)
	}
	return state(t, tab)
}

func state(t *testing.T, tab context.Context) pageState {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 10*time.Second)
	defer cancel()
	st, err := chromedp.Run(ctx, chromedp.Evaluate[pageState](readState))
	if err != nil {
		t.Fatalf("read page state: %v", err)
	}
	return st
}

// jsonEqual compares a decoded browser value with the expected JSON.
func jsonEqual(t *testing.T, what string, got any, want string) {
	t.Helper()
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation for %s: %v", what, err)
	}
	raw, _ := json.Marshal(got)
	var g any
	_ = json.Unmarshal(raw, &g)
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %s\nwant %s", what, raw, want)
	}
}

func countScripts(scripts []string, prefix string) int {
	n := 0
	for _, s := range scripts {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

func TestSnippetInBrowser(t *testing.T) {
	browser := newBrowser(t)
	f := newFixture(t)
	cfg := allPlatforms
	cfg.TikTokEventNames = map[string]string{"Purchase": "CompletePayment"}
	page := Page{EventID: testEventID, ExternalID: testExternalID, Conversions: []Conversion{purchase}}
	snippet := string(Snippet(cfg, page, ""))

	t.Run("PageViewAndConversionCarryEventIDs", func(t *testing.T) {
		tab, cancel := chromedp.NewContext(browser)
		defer cancel()
		url := f.page("all", snippet, nil)
		if err := chromedp.Do(tab, chromedp.Navigate(url)); err != nil {
			t.Fatal(err)
		}
		st := state(t, tab)
		if st.Capi == nil || st.Capi.EventID != testEventID {
			t.Fatalf("window.capi = %+v; want eventId %s", st.Capi, testEventID)
		}
		jsonEqual(t, "fbq queue", st.Fbq, `[
			["init","1234567890",{"external_id":"`+testExternalID+`"}],
			["track","PageView",{},{"eventID":"`+testEventID+`"}],
			["track","Purchase",{"value":49.9,"currency":"EUR","content_ids":["SKU-1","SKU-2"],"order_id":"A-1001","content_type":"product"},{"eventID":"`+testPurchaseID+`"}]]`)
		jsonEqual(t, "ttq queue", st.Ttq, `[
			["identify",{"external_id":"`+testExternalID+`"}],
			["page"],
			["track","CompletePayment",{"value":49.9,"currency":"EUR","order_id":"A-1001","contents":[{"content_id":"SKU-1"},{"content_id":"SKU-2"}],"content_type":"product"},{"event_id":"`+testPurchaseID+`"}]]`)
		jsonEqual(t, "ttq loaded pixels", st.TtqLoaded, `["CABCDEF0123456789"]`)
		jsonEqual(t, "ttq load options", st.TtqOptions, `{"CABCDEF0123456789":{"limited_data_use":false}}`)
		jsonEqual(t, "dataLayer", st.DataLayer, `[
			["js","DATE"],
			["config","AW-987654321"],
			["event","conversion",{"send_to":"AW-987654321/AbC-dEf_123","value":49.9,"currency":"EUR","transaction_id":"A-1001"}]]`)
		for _, u := range []string{metaScriptURL, tiktokScriptURL + "?sdkid=CABCDEF0123456789&lib=ttq", googleScriptURL + "?id=AW-987654321"} {
			if n := countScripts(st.Scripts, u); n != 1 {
				t.Errorf("vendor script %s inserted %d times; want 1 (scripts %v)", u, n, st.Scripts)
			}
		}

		// window.capi.track fires every pixel with a fresh ID and posts the same event.
		ctx, cancel2 := context.WithTimeout(tab, 10*time.Second)
		defer cancel2()
		id, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.capi.track('Lead', {value: 5, currency: 'USD'})`))
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
			t.Fatalf("track returned event ID %q; want 32 hex characters", id)
		}
		after := state(t, tab)
		jsonEqual(t, "fbq after track", after.Fbq[len(after.Fbq)-1], `["track","Lead",{"value":5,"currency":"USD"},{"eventID":"`+id+`"}]`)
		jsonEqual(t, "ttq after track", after.Ttq[len(after.Ttq)-1], `["track","Lead",{"value":5,"currency":"USD"},{"event_id":"`+id+`"}]`)
		if len(after.DataLayer) != len(st.DataLayer) {
			t.Errorf("Lead has no Google label but the dataLayer grew: %v", after.DataLayer)
		}
		select {
		case c := <-f.collect:
			jsonEqual(t, "collect body", c.body, `{"name":"Lead","event_id":"`+id+`","data":{"value":5,"currency":"USD"},"url":"`+url+`","referrer":""}`)
			if c.contentType != "application/json" || c.cookie != "visitor123" {
				t.Errorf("collect request Content-Type %q, visitor cookie %q; want application/json and the cookie", c.contentType, c.cookie)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("window.capi.track posted nothing to the collect endpoint")
		}

		id2, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.capi.track('Purchase', {value: 10, currency: 'EUR', order_id: 'B-2'})`))
		if err != nil {
			t.Fatal(err)
		}
		if id2 == id {
			t.Fatal("two track calls returned the same event ID")
		}
		<-f.collect
		custom, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.capi.track('Wishlisted')`))
		if err != nil {
			t.Fatal(err)
		}
		<-f.collect
		last := state(t, tab)
		jsonEqual(t, "gtag conversion from track", last.DataLayer[len(last.DataLayer)-1],
			`["event","conversion",{"send_to":"AW-987654321/AbC-dEf_123","value":10,"currency":"EUR","transaction_id":"B-2"}]`)
		jsonEqual(t, "ttq name mapping from track", last.Ttq[len(last.Ttq)-2],
			`["track","CompletePayment",{"value":10,"currency":"EUR","order_id":"B-2"},{"event_id":"`+id2+`"}]`)
		jsonEqual(t, "custom event on Meta", last.Fbq[len(last.Fbq)-1], `["trackCustom","Wishlisted",{},{"eventID":"`+custom+`"}]`)
	})

	t.Run("LimitedDataUse", func(t *testing.T) {
		ldu := string(Snippet(allPlatforms, Page{EventID: testEventID, LimitedDataUse: true}, ""))
		st := load(t, browser, f.page("ldu", ldu, nil))
		jsonEqual(t, "fbq queue", st.Fbq, `[["dataProcessingOptions",["LDU"],0,0],["init","1234567890",{}],["track","PageView",{},{"eventID":"`+testEventID+`"}]]`)
		jsonEqual(t, "ttq load options", st.TtqOptions, `{"CABCDEF0123456789":{"limited_data_use":true}}`)
		jsonEqual(t, "dataLayer", st.DataLayer, `[["consent","default",{"ad_user_data":"denied"}],["js","DATE"],["config","AW-987654321"]]`)
	})

	t.Run("SecondCopyIsANoOp", func(t *testing.T) {
		one := string(Snippet(allPlatforms, Page{EventID: testEventID}, ""))
		two := string(Snippet(allPlatforms, Page{EventID: "other"}, ""))
		st := load(t, browser, f.page("twice", one+two, nil))
		jsonEqual(t, "fbq queue", st.Fbq, `[["init","1234567890",{}],["track","PageView",{},{"eventID":"`+testEventID+`"}]]`)
		jsonEqual(t, "ttq queue", st.Ttq, `[["page"]]`)
		jsonEqual(t, "dataLayer", st.DataLayer, `[["js","DATE"],["config","AW-987654321"]]`)
	})

	t.Run("PagesOwnPixelsNotInitializedAgain", func(t *testing.T) {
		st := load(t, browser, f.page("existing", pagesOwnTags+string(Snippet(allPlatforms, Page{EventID: testEventID, ExternalID: testExternalID}, "")), nil))
		jsonEqual(t, "fbq queue", st.Fbq, `[["init","1234567890"],["track","PageView"]]`)
		jsonEqual(t, "ttq queue", st.Ttq, `[["page"],["identify",{"external_id":"`+testExternalID+`"}]]`)
		jsonEqual(t, "dataLayer", st.DataLayer, `[["js","DATE"],["config","AW-987654321"]]`)
		for _, u := range []string{metaScriptURL, tiktokScriptURL, googleScriptURL} {
			if n := countScripts(st.Scripts, u); n != 1 {
				t.Errorf("vendor script %s inserted %d times; want 1 (scripts %v)", u, n, st.Scripts)
			}
		}
		if st.Capi == nil || st.Capi.EventID != testEventID {
			t.Errorf("window.capi = %+v", st.Capi)
		}
	})

	csp := []struct {
		name, policy string
		adapt        bool
		wantRun      bool
	}{
		{"CSPNonceReused", "script-src 'nonce-R4nd0m/+='; object-src 'none'", true, true},
		{"CSPHashAdded", "default-src 'self'", true, true},
		// The hash of the empty script: the policy has hashes but none of ours and no nonce.
		{"CSPHashAddedUnderStrictDynamic", "script-src 'strict-dynamic' 'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='", true, true},
		{"CSPWithoutScriptRestriction", "img-src 'self'", true, true},
		// The control: without AllowScript the same policy blocks the snippet, so the cases above
		// prove the adaptation works.
		{"CSPBlocksUnadapted", "default-src 'self'", false, false},
	}
	for _, tc := range csp {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			h.Set("Content-Security-Policy", tc.policy)
			s := Snippet(allPlatforms, Page{EventID: testEventID}, CSPNonce(h))
			if tc.adapt {
				AllowVendors(h, allPlatforms)
				AllowScript(h, s)
			}
			st := load(t, browser, f.page(tc.name, string(s), h))
			if ran := st.Capi != nil; ran != tc.wantRun {
				t.Fatalf("policy %q (sent as %q): snippet ran = %v; want %v", tc.policy, h.Get("Content-Security-Policy"), ran, tc.wantRun)
			}
			if tc.wantRun {
				jsonEqual(t, "fbq queue", st.Fbq, `[["init","1234567890",{}],["track","PageView",{},{"eventID":"`+testEventID+`"}]]`)
			}
		})
	}
}

// pagesOwnTags is a page that already carries the three vendors' base codes for the same IDs, as a
// shop that installed them by hand would.
const pagesOwnTags = `<script>
!function(f,b,e,v,n,t,s){if(f.fbq)return;n=f.fbq=function(){n.callMethod?
n.callMethod.apply(n,arguments):n.queue.push(arguments)};if(!f._fbq)f._fbq=n;
n.push=n;n.loaded=!0;n.version='2.0';n.queue=[];t=b.createElement(e);t.async=!0;
t.src=v;s=b.getElementsByTagName(e)[0];s.parentNode.insertBefore(t,s)}(window, document,'script',
'https://connect.facebook.net/en_US/fbevents.js');
fbq('init', '1234567890');
fbq('track', 'PageView');
</script>
<script>
!function (w, d, t) {
w.TiktokAnalyticsObject=t;var ttq=w[t]=w[t]||[];ttq.methods=["page","track","identify","instances","debug","on","off","once","ready","alias","group","enableCookie","disableCookie","holdConsent","revokeConsent","grantConsent"],ttq.setAndDefer=function(t,e){t[e]=function(){t.push([e].concat(Array.prototype.slice.call(arguments,0)))}};for(var i=0;i<ttq.methods.length;i++)ttq.setAndDefer(ttq,ttq.methods[i]);ttq.instance=function(t){for(var e=ttq._i[t]||[],n=0;n<ttq.methods.length;n++)ttq.setAndDefer(e,ttq.methods[n]);return e},ttq.load=function(e,n){var r="https://analytics.tiktok.com/i18n/pixel/events.js",o=n&&n.partner;ttq._i=ttq._i||{},ttq._i[e]=[],ttq._i[e]._u=r,ttq._t=ttq._t||{},ttq._t[e]=+new Date,ttq._o=ttq._o||{},ttq._o[e]=n||{};n=document.createElement("script");n.type="text/javascript",n.async=!0,n.src=r+"?sdkid="+e+"&lib="+t;e=document.getElementsByTagName("script")[0];e.parentNode.insertBefore(n,e)};
ttq.load('CABCDEF0123456789');
ttq.page();
}(window, document, 'ttq');
</script>
<script async src="https://www.googletagmanager.com/gtag/js?id=AW-987654321"></script>
<script>
window.dataLayer = window.dataLayer || [];
function gtag(){dataLayer.push(arguments);}
gtag('js', new Date());
gtag('config', 'AW-987654321');
</script>
`
