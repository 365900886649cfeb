// Package browser drives a headless Chromium (Debian's /usr/bin/chromium, through chromedp) for
// end-to-end tests of what the module injects into pages.
//
// The vendors' script hosts (connect.facebook.net, analytics.tiktok.com, www.googletagmanager.com)
// are mapped with --host-resolver-rules to a local fake CDN whose stub scripts record every fbq,
// ttq and gtag call, so a test can compare the event IDs the browser fires with those the server
// sends. Every other name fails to resolve, so a page under test never reaches the internet.
//
// It owns the browser process and its fresh profile; it must not depend on the module's internals.
package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/caddy-capi/caddy-capi/integration/harness"
)

// DefaultPath is where Debian installs Chromium; CAPI_CHROMIUM overrides it.
const DefaultPath = "/usr/bin/chromium"

// ActionTimeout bounds each navigation or evaluation.
const ActionTimeout = 30 * time.Second

// Browser is one headless Chromium with one tab.
type Browser struct {
	t   testing.TB
	ctx context.Context
	cdn *CDN
}

// Option changes how New starts the browser.
type Option func(*config)

type config struct {
	maps []string
}

// MapHost makes host resolve to addr (host:port), e.g. MapHost("shop.example.com", c.Addr()) to
// test cookie domains on a real-looking name against a loopback Caddy.
func MapHost(host, addr string) Option {
	return func(c *config) { c.maps = append(c.maps, fmt.Sprintf("MAP %s %s", host, addr)) }
}

// Path returns the Chromium binary to use, or an error saying why there is none.
func Path() (string, error) {
	p := os.Getenv("CAPI_CHROMIUM")
	if p == "" {
		p = DefaultPath
	}
	return exec.LookPath(p)
}

// New starts a headless Chromium with a fresh profile and a fake CDN for the vendor hosts, and
// closes both when the test ends. Without Chromium the test is skipped loudly, or fails when
// CAPI_REQUIRE_SERVICES=1.
func New(t testing.TB, opts ...Option) *Browser {
	t.Helper()
	path, err := Path()
	harness.RequireService(t, "chromium", err)
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	cdn := NewCDN(t)
	rules := append(cdn.hostRules(), cfg.maps...)
	// Nothing else may resolve: tests stay on this machine.
	rules = append(rules, "MAP * ~NOTFOUND", "EXCLUDE localhost", "EXCLUDE 127.0.0.1")

	allocOpts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.Flag("host-resolver-rules", strings.Join(rules, ", ")),
		// Plain-HTTP test sites on mapped names must not be upgraded to HTTPS behind our back.
		chromedp.Flag("disable-features", "Translate,BlinkGenPropertyTrees,HttpsUpgrades,HttpsFirstBalancedModeAutoEnable"),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), allocOpts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
	})
	// The first run starts the browser; a timeout on it would end the browser with it.
	if err := chromedp.Do(ctx); err != nil {
		harness.RequireService(t, "chromium", fmt.Errorf("start %s: %w", path, err))
	}
	return &Browser{t: t, ctx: ctx, cdn: cdn}
}

// Context is the tab's context, for chromedp actions the helpers below do not cover (run them
// with chromedp.Run or chromedp.Do under a timeout).
func (b *Browser) Context() context.Context { return b.ctx }

// CDN is the fake vendor CDN the browser loads tags from.
func (b *Browser) CDN() *CDN { return b.cdn }

// Do runs chromedp steps in the tab, bounded by ActionTimeout.
func (b *Browser) Do(steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.ctx, ActionTimeout)
	defer cancel()
	return chromedp.Do(ctx, steps...)
}

// Run runs one chromedp action that returns a value in the browser's tab, bounded by
// ActionTimeout.
func Run[T any](b *Browser, action chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, ActionTimeout)
	defer cancel()
	return chromedp.Run(ctx, action)
}

// Navigate loads url and waits for it to finish loading; it fails the test on error.
func (b *Browser) Navigate(url string) {
	b.t.Helper()
	if err := b.Do(chromedp.Navigate(url)); err != nil {
		b.t.Fatalf("browser: navigate to %s: %v", url, err)
	}
}

// Eval evaluates a JavaScript expression in the browser's page, awaiting it if it is a promise,
// and returns its value as T; it fails the test on error.
func Eval[T any](b *Browser, js string) T {
	b.t.Helper()
	v, err := Run(b, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("browser: evaluate %q: %v", js, err)
	}
	return v
}

// Exec runs JavaScript in the page for its effect; it fails the test on error.
func (b *Browser) Exec(js string) {
	b.t.Helper()
	Eval[chromedp.Void](b, js)
}

// Location is the URL of the page the tab shows.
func (b *Browser) Location() string {
	b.t.Helper()
	loc, err := Run(b, chromedp.Location())
	if err != nil {
		b.t.Fatalf("browser: location: %v", err)
	}
	return loc
}

// HTML is the current document's serialized HTML.
func (b *Browser) HTML() string {
	b.t.Helper()
	return Eval[string](b, "document.documentElement.outerHTML")
}

// Cookies returns the cookies the browser would send to urls (default: the current page).
func (b *Browser) Cookies(urls ...string) []*network.Cookie {
	b.t.Helper()
	cookies, err := Run(b, func(ctx context.Context, t *chromedp.Target) ([]*network.Cookie, error) {
		r, err := cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{URLs: urls})
		if err != nil {
			return nil, err
		}
		return r.Cookies, nil
	})
	if err != nil {
		b.t.Fatalf("browser: cookies: %v", err)
	}
	return cookies
}

// Cookie returns the named cookie the current page would receive, or nil.
func (b *Browser) Cookie(name string) *network.Cookie {
	b.t.Helper()
	for _, c := range b.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Calls returns every fbq/ttq/gtag call the stub scripts have reported, across all pages loaded
// so far, in arrival order.
func (b *Browser) Calls() []Call { return b.cdn.Calls() }

// WaitCalls waits until cond holds for the recorded calls and returns them; it fails the test after
// timeout. Calls travel to the recorder asynchronously, so wait rather than look once.
func (b *Browser) WaitCalls(timeout time.Duration, what string, cond func([]Call) bool) []Call {
	b.t.Helper()
	calls, ok := b.cdn.waitCalls(timeout, cond)
	if !ok {
		b.t.Fatalf("browser: no %s after %v; calls: %v; scripts loaded: %v", what, timeout, calls, b.cdn.Loaded())
	}
	return calls
}

// WaitEvent waits for a tag call that fires the named event (fbq track, ttq track or gtag event)
// from lib ("fbq", "ttq", "gtag") and returns it.
func (b *Browser) WaitEvent(lib, event string, timeout time.Duration) Call {
	b.t.Helper()
	var found Call
	b.WaitCalls(timeout, fmt.Sprintf("%s event %q", lib, event), func(calls []Call) bool {
		for _, c := range calls {
			if c.Lib == lib && c.EventName() == event {
				found = c
				return true
			}
		}
		return false
	})
	return found
}

// Call is one call of a tag function in the page, as a stub script saw it.
type Call struct {
	// Lib is "fbq", "ttq" or "gtag".
	Lib string
	// Method is the command: fbq's first argument ("init", "track", "trackCustom",
	// "trackSingle"), ttq's method ("page", "track", "identify", or "load" when events.js loads
	// for a pixel), gtag's first argument ("js", "config", "event", or "load" when gtag.js loads
	// for an ID).
	Method string
	// Args are the arguments after Method, as JSON.
	Args []json.RawMessage
	// Page is location.href when the call was made.
	Page string
	// Instance is the pixel of a ttq.instance(pixel) call, empty otherwise.
	Instance string
	// Time is when the recorder received it.
	Time time.Time
}

func (c Call) String() string {
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		args[i] = string(a)
	}
	return fmt.Sprintf("%s(%q, %s) on %s", c.Lib, c.Method, strings.Join(args, ", "), c.Page)
}

// Arg decodes argument i (after Method) into v; it reports whether there was one to decode.
func (c Call) Arg(i int, v any) bool {
	if i >= len(c.Args) {
		return false
	}
	return json.Unmarshal(c.Args[i], v) == nil
}

// Param returns key of the object argument i, or nil.
func (c Call) Param(i int, key string) any {
	var m map[string]any
	if !c.Arg(i, &m) {
		return nil
	}
	return m[key]
}

// eventArgs is where an event call's name and ID live: the index of the name and of the object
// holding the ID, and the ID's key.
func (c Call) eventArgs() (name, idArg int, idKey string, ok bool) {
	switch {
	case c.Lib == "fbq" && (c.Method == "track" || c.Method == "trackCustom"):
		return 0, 2, "eventID", true
	case c.Lib == "fbq" && (c.Method == "trackSingle" || c.Method == "trackSingleCustom"):
		return 1, 3, "eventID", true
	case c.Lib == "ttq" && c.Method == "track":
		return 0, 2, "event_id", true
	case c.Lib == "gtag" && c.Method == "event":
		// Google deduplicates on the order ID, sent as transaction_id.
		return 0, 1, "transaction_id", true
	}
	return 0, 0, "", false
}

// EventName is the event an event call fires ("Purchase", "conversion"), or "".
func (c Call) EventName() string {
	name, _, _, ok := c.eventArgs()
	var s string
	if ok {
		c.Arg(name, &s)
	}
	return s
}

// EventID is the deduplication key an event call carries: fbq's eventID, ttq's event_id, or
// gtag's transaction_id; "" when it carries none.
func (c Call) EventID() string {
	_, idArg, key, ok := c.eventArgs()
	if !ok {
		return ""
	}
	s, _ := c.Param(idArg, key).(string)
	return s
}
