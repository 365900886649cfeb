package browser

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The vendors' base codes as sites paste them (spec notes §6 for Meta, §A5 and §B4 for TikTok and
// Google), each firing an event with a deduplication ID.
const basePage = `<!doctype html><html><head><title>tags</title>
<script>
!function(f,b,e,v,n,t,s){if(f.fbq)return;n=f.fbq=function(){n.callMethod?
n.callMethod.apply(n,arguments):n.queue.push(arguments)};if(!f._fbq)f._fbq=n;n.push=n;n.loaded=!0;
n.version='2.0';n.queue=[];t=b.createElement(e);t.async=!0;t.src=v;s=b.getElementsByTagName(e)[0];
s.parentNode.insertBefore(t,s)}(window,document,'script','https://connect.facebook.net/en_US/fbevents.js');
fbq('init', '1234567890123456', {external_id: 'abc'});
fbq('track', 'PageView', {}, {eventID: 'x'});
</script>
<script>
!function (w, d, t) {
w.TiktokAnalyticsObject=t;var ttq=w[t]=w[t]||[];ttq.methods=["page","track","identify","instances","debug","on","off","once","ready","alias","group","enableCookie","disableCookie","holdConsent","revokeConsent","grantConsent"],ttq.setAndDefer=function(t,e){t[e]=function(){t.push([e].concat(Array.prototype.slice.call(arguments,0)))}};for(var i=0;i<ttq.methods.length;i++)ttq.setAndDefer(ttq,ttq.methods[i]);ttq.instance=function(t){for(var e=ttq._i[t]||[],n=0;n<ttq.methods.length;n++)ttq.setAndDefer(e,ttq.methods[n]);return e},ttq.load=function(e,n){var r="https://analytics.tiktok.com/i18n/pixel/events.js";ttq._i=ttq._i||{},ttq._i[e]=[],ttq._i[e]._u=r,ttq._t=ttq._t||{},ttq._t[e]=+new Date,ttq._o=ttq._o||{},ttq._o[e]=n||{};n=document.createElement("script");n.type="text/javascript",n.async=!0,n.src=r+"?sdkid="+e+"&lib="+t;e=document.getElementsByTagName("script")[0];e.parentNode.insertBefore(n,e)};
ttq.load('CAPITESTPIXEL0000001');
ttq.page();
ttq.track('Purchase', {value: 49.9, currency: 'USD'}, {event_id: 'tt-1'});
}(window, document, 'ttq');
</script>
<script async src="https://www.googletagmanager.com/gtag/js?id=AW-123456789"></script>
<script>
window.dataLayer = window.dataLayer || [];
function gtag(){dataLayer.push(arguments);}
gtag('js', new Date());
gtag('config', 'AW-123456789');
gtag('event', 'conversion', {send_to: 'AW-123456789/AbCdEf', value: 49.9, currency: 'USD', transaction_id: 'T-1'});
</script>
</head><body><p>shop</p></body></html>`

func TestStubScriptsRecordEveryTagCall(t *testing.T) {
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(basePage))
	}))
	defer site.Close()
	b := New(t)
	b.Navigate(site.URL + "/landing")

	pv := b.WaitEvent("fbq", "PageView", 10*time.Second)
	if pv.EventID() != "x" || !strings.HasSuffix(pv.Page, "/landing") {
		t.Errorf("fbq PageView call %v: want eventID x on /landing", pv)
	}
	tt := b.WaitEvent("ttq", "Purchase", 10*time.Second)
	if tt.EventID() != "tt-1" || tt.Param(1, "value") != 49.9 {
		t.Errorf("ttq track call %v: want event_id tt-1 and value 49.9", tt)
	}
	conv := b.WaitEvent("gtag", "conversion", 10*time.Second)
	if conv.EventID() != "T-1" || conv.Param(1, "send_to") != "AW-123456789/AbCdEf" {
		t.Errorf("gtag conversion call %v: want transaction_id T-1 to AW-123456789/AbCdEf", conv)
	}

	calls := b.WaitCalls(10*time.Second, "init, loads and page view", func(cs []Call) bool {
		return has(cs, "fbq", "init", "1234567890123456") && has(cs, "ttq", "load", "CAPITESTPIXEL0000001") &&
			has(cs, "ttq", "page", "") && has(cs, "gtag", "load", "AW-123456789") && has(cs, "gtag", "config", "AW-123456789")
	})
	for _, c := range calls {
		if c.Lib == "fbq" && c.Method == "init" && c.Param(1, "external_id") != "abc" {
			t.Errorf("fbq init lost its advanced matching: %v", c)
		}
	}
	loaded := strings.Join(b.CDN().Loaded(), " ")
	for _, want := range []string{"connect.facebook.net/en_US/fbevents.js", "analytics.tiktok.com/i18n/pixel/events.js?sdkid=CAPITESTPIXEL0000001&lib=ttq", "www.googletagmanager.com/gtag/js?id=AW-123456789"} {
		if !strings.Contains(loaded, want) {
			t.Errorf("scripts loaded %q, want %s among them", loaded, want)
		}
	}

	// Calls after the scripts loaded go straight to the stubs rather than through the queues.
	b.Exec("fbq('track', 'Lead', {}, {eventID: 'late'})")
	if c := b.WaitEvent("fbq", "Lead", 10*time.Second); c.EventID() != "late" {
		t.Errorf("late fbq call %v: want eventID late", c)
	}
}

func TestPagesCannotReachTheInternet(t *testing.T) {
	b := New(t)
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<!doctype html><p>x</p>"))
	}))
	defer site.Close()
	b.Navigate(site.URL)
	got := Eval[string](b, `fetch("https://example.org/", {mode: "no-cors"}).then(() => "reached", e => "blocked")`)
	if got != "blocked" {
		t.Errorf("a fetch to example.org was %s; every unmapped host must fail to resolve", got)
	}
}

func has(calls []Call, lib, method, firstArg string) bool {
	for _, c := range calls {
		if c.Lib != lib || c.Method != method {
			continue
		}
		var s string
		if firstArg == "" || (c.Arg(0, &s) && s == firstArg) {
			return true
		}
	}
	return false
}

func TestMapHostServesANamedSiteFromLoopback(t *testing.T) {
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "seen", Value: "1", Domain: "example.com", Path: "/"})
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<!doctype html><title>" + r.Host + "</title>"))
	}))
	defer site.Close()
	b := New(t, MapHost("shop.example.com", site.Listener.Addr().String()))
	b.Navigate("http://shop.example.com/")
	if title := Eval[string](b, "document.title"); title != "shop.example.com" {
		t.Errorf("the site saw Host %q, want shop.example.com", title)
	}
	if c := b.Cookie("seen"); c == nil || c.Domain != ".example.com" {
		t.Errorf("cookie for the registrable domain: %+v", c)
	}
}
