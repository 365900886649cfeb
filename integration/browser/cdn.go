package browser

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// VendorHosts are the hosts the platforms' browser tags load from (DESIGN §5). The browser maps
// them to the fake CDN.
var VendorHosts = []string{"connect.facebook.net", "analytics.tiktok.com", "www.googletagmanager.com"}

// recordPath is where the stub scripts post the calls they see.
const recordPath = "/__capi/record"

// CDN stands in for the vendors' script hosts: it serves stub versions of fbevents.js, TikTok's
// events.js and gtag.js over HTTPS (self-signed) and plain HTTP, and collects the tag calls the
// stubs report.
type CDN struct {
	tlsSrv, plainSrv *httptest.Server

	mu      sync.Mutex
	calls   []Call
	loaded  []string
	changed chan struct{}
}

// NewCDN starts a fake CDN for the test.
func NewCDN(t testing.TB) *CDN {
	c := &CDN{changed: make(chan struct{})}
	h := http.HandlerFunc(c.serve)
	c.tlsSrv = httptest.NewTLSServer(h)
	c.plainSrv = httptest.NewServer(h)
	t.Cleanup(func() {
		c.tlsSrv.Close()
		c.plainSrv.Close()
	})
	return c
}

// hostRules maps each vendor host's HTTPS and HTTP ports to the CDN's servers, in Chromium's
// --host-resolver-rules syntax.
func (c *CDN) hostRules() []string {
	var rules []string
	for _, h := range VendorHosts {
		rules = append(rules,
			fmt.Sprintf("MAP %s:443 %s", h, c.tlsSrv.Listener.Addr()),
			fmt.Sprintf("MAP %s:80 %s", h, c.plainSrv.Listener.Addr()))
	}
	return rules
}

// Loaded returns the URLs (host, path and query) of the scripts the browser fetched from the CDN,
// e.g. "connect.facebook.net/en_US/fbevents.js".
func (c *CDN) Loaded() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.loaded...)
}

// Calls returns every tag call recorded so far, in arrival order.
func (c *CDN) Calls() []Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Call(nil), c.calls...)
}

func (c *CDN) serve(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if i := strings.LastIndex(host, ":"); i > 0 && !strings.HasSuffix(host, "]") {
		host = host[:i]
	}
	if r.URL.Path == recordPath && r.Method == http.MethodPost {
		c.record(w, r)
		return
	}
	var script string
	switch {
	case host == "connect.facebook.net" && r.URL.Path == "/en_US/fbevents.js":
		script = fbqStub
	case host == "analytics.tiktok.com" && r.URL.Path == "/i18n/pixel/events.js":
		script = ttqStub
	case host == "www.googletagmanager.com" && r.URL.Path == "/gtag/js":
		script = gtagStub
	default:
		http.NotFound(w, r)
		return
	}
	c.mu.Lock()
	c.loaded = append(c.loaded, host+r.URL.RequestURI())
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, "(function(){\n"+recorderJS+script+"\n})();\n")
}

func (c *CDN) record(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	var raw struct {
		Lib      string            `json:"lib"`
		Args     []json.RawMessage `json:"args"`
		Page     string            `json:"page"`
		Instance string            `json:"instance"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&raw); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	call := Call{Lib: raw.Lib, Page: raw.Page, Instance: raw.Instance, Time: time.Now()}
	if len(raw.Args) > 0 {
		_ = json.Unmarshal(raw.Args[0], &call.Method)
		call.Args = raw.Args[1:]
	}
	c.mu.Lock()
	c.calls = append(c.calls, call)
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// waitCalls waits until cond holds for the recorded calls.
func (c *CDN) waitCalls(timeout time.Duration, cond func([]Call) bool) ([]Call, bool) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		c.mu.Lock()
		calls := append([]Call(nil), c.calls...)
		changed := c.changed
		c.mu.Unlock()
		if cond(calls) {
			return calls, true
		}
		select {
		case <-changed:
		case <-timer.C:
			return calls, false
		}
	}
}

// recorderJS defines rec(lib, args, instance), which every stub uses to report a call: to the
// CDN's recorder (keepalive, so a call made just before a navigation still arrives) and to
// window.__capiCalls for in-page inspection.
const recorderJS = `
var script = document.currentScript;
var origin = script ? new URL(script.src).origin : location.origin;
function rec(lib, args, instance) {
	var entry = {lib: lib, args: args, page: location.href, instance: instance || ""};
	var body;
	try {
		body = JSON.stringify(entry, function (k, v) { return typeof v === "function" ? undefined : v; });
	} catch (e) {
		body = JSON.stringify({lib: lib, args: [String(args[0])], page: location.href, instance: "unserializable: " + e});
	}
	(window.__capiCalls = window.__capiCalls || []).push(JSON.parse(body));
	try {
		fetch(origin + "` + recordPath + `", {method: "POST", body: body, keepalive: true, mode: "no-cors"});
	} catch (e) {
		if (navigator.sendBeacon) navigator.sendBeacon(origin + "` + recordPath + `", body);
	}
}
function slice(a) { return Array.prototype.slice.call(a); }
`

// fbqStub plays fbevents.js: it takes over the queue the Pixel base code left in window.fbq.
const fbqStub = `
var n = window.fbq;
if (!n) {
	n = window.fbq = function () { n.callMethod ? n.callMethod.apply(n, arguments) : n.queue.push(arguments); };
	n.queue = []; n.push = n; n.loaded = true; n.version = "2.0";
	if (!window._fbq) window._fbq = n;
}
if (n.__capiStub) return;
n.__capiStub = true;
n.callMethod = function () { rec("fbq", slice(arguments)); };
var q = n.queue || [];
n.queue = [];
for (var i = 0; i < q.length; i++) n.callMethod.apply(n, q[i]);
`

// ttqStub plays TikTok's events.js: the base code leaves window[TiktokAnalyticsObject] as an
// array of [method, ...args] and loads this script once per ttq.load(pixel) with ?sdkid=pixel.
const ttqStub = `
var sdkid = script ? new URL(script.src).searchParams.get("sdkid") : null;
if (sdkid) rec("ttq", ["load", sdkid]);
var name = window.TiktokAnalyticsObject || "ttq";
var ttq = window[name];
if (!ttq) ttq = window[name] = [];
if (ttq.__capiStub) return;
ttq.__capiStub = true;
var methods = ["page", "track", "identify", "instances", "debug", "on", "off", "once", "ready", "alias", "group", "enableCookie", "disableCookie", "holdConsent", "revokeConsent", "grantConsent"];
var queued = slice(ttq);
ttq.length = 0;
methods.forEach(function (m) {
	ttq[m] = function () { rec("ttq", [m].concat(slice(arguments))); return ttq; };
});
ttq.instance = function (id) {
	var inst = {};
	methods.forEach(function (m) {
		inst[m] = function () { rec("ttq", [m].concat(slice(arguments)), id); return inst; };
	});
	return inst;
};
queued.forEach(function (e) { rec("ttq", slice(e)); });
`

// gtagStub plays gtag.js: gtag() pushes its arguments object onto window.dataLayer.
const gtagStub = `
var id = script ? new URL(script.src).searchParams.get("id") : null;
if (id) rec("gtag", ["load", id]);
var dl = window.dataLayer = window.dataLayer || [];
if (dl.__capiStub) return;
dl.__capiStub = true;
function isArgs(x) { return Object.prototype.toString.call(x) === "[object Arguments]"; }
for (var i = 0; i < dl.length; i++) if (isArgs(dl[i])) rec("gtag", slice(dl[i]));
var push = dl.push;
dl.push = function () {
	for (var i = 0; i < arguments.length; i++) if (isArgs(arguments[i])) rec("gtag", slice(arguments[i]));
	return push.apply(dl, arguments);
};
`
