package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/integration/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// Environment variables that drive the benchmarks.
const (
	// benchEnv must be 1 for anything here to run: the normal suite does not load the machine.
	benchEnv = "CAPI_BENCH"
	// reportEnv names a file the markdown report is written to (run.sh prints it).
	reportEnv = "CAPI_BENCH_REPORT"
	// strictEnv=1 makes a missed throughput target fail the test; by default it is reported,
	// because on a shared machine a ratio can miss by noise alone. Missed large-page targets
	// (streaming, memory) always fail: they do not depend on the machine's load.
	strictEnv = "CAPI_BENCH_STRICT"
	// roundsEnv, durationEnv, connectionsEnv and threadsEnv change the load shape.
	roundsEnv      = "CAPI_BENCH_ROUNDS"
	durationEnv    = "CAPI_BENCH_DURATION"
	connectionsEnv = "CAPI_BENCH_CONNECTIONS"
	threadsEnv     = "CAPI_BENCH_THREADS"
	// profileEnv names a directory: the capi site's CPU profile (the admin endpoint's
	// /debug/pprof/profile) is taken during its run in the middle round of each workload and
	// written there as <workload>.pprof, for `go tool pprof`.
	profileEnv = "CAPI_BENCH_PROFILE"
)

// largeHeapLimit is the target for the large page: the Caddy process's live heap may grow by less
// than this while it streams a 10 MB page with injection.
const largeHeapLimit = 1 << 20

// benchCaddyfile has the two sites under comparison, identical but for the capi directive, in
// front of the same upstream. The platforms record to a sink file, so no credentials are needed
// and nothing leaves the machine; the handler injects all three pixels.
const benchCaddyfile = `{
	capi {
		sink file ./events.jsonl

		meta {
			pixel_id 1234567890123456
			access_token bench-meta-access-token
		}
		tiktok {
			pixel_code CAPIBENCHPIXEL000001
			access_token bench-tiktok-access-token
		}
		google_ads {
			tag_id AW-123456789
			customer_id 1234567890
			developer_token bench-developer-token
			client_id bench-client-id
			client_secret bench-client-secret
			refresh_token bench-refresh-token
			conversion Purchase 987654321 BenchPurchaseLabel
		}
	}
}

# The baseline: the store behind a plain reverse proxy.
{{.Site}} {
	bind 127.0.0.1
	reverse_proxy {{.Vars.upstream}}
}

# The same store behind caddy-capi.
http://127.0.0.1:{{port "capi"}} {
	bind 127.0.0.1
	capi {
		pixels meta tiktok google
	}
	reverse_proxy {{.Vars.upstream}}
}
`

// Request headers of the two kinds of request measured: what a browser sends for a script and
// for a page it navigates to.
var (
	assetHeaders = []string{"Accept: */*", "Sec-Fetch-Dest: script", "Sec-Fetch-Mode: no-cors"}
	pageHeaders  = []string{"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
		"Sec-Fetch-Dest: document", "Sec-Fetch-Mode: navigate", "User-Agent: Mozilla/5.0 (X11; Linux x86_64) bench"}
)

// snippetMarkers are what each injected tag's base code calls; a page without all of them was not
// injected into.
var snippetMarkers = []string{"fbq(", "ttq.", "gtag("}

// bench is one run: Caddy with both sites, the upstream, and what was measured.
type bench struct {
	caddy    *harness.Caddy
	up       *upstream
	plain    string // base URL of the plain reverse_proxy site
	capi     string // base URL of the capi site
	wrk      string
	load     wrkLoad
	rounds   int
	strict   bool
	profile  string // directory for CPU profiles, "" for none
	started  time.Time
	loadAvg0 string

	mu         sync.Mutex
	throughput []*throughputRow
	large      []largeResult
}

func TestEdgeProxyOverhead(t *testing.T) {
	if os.Getenv(benchEnv) != "1" {
		t.Skipf("end-to-end benchmarks run only with %s=1 (see integration/bench/run.sh)", benchEnv)
	}
	wrk, err := exec.LookPath("wrk")
	harness.RequireService(t, "wrk (Debian package wrk)", err)

	up := newUpstream(t)
	c := harness.Start(t, benchCaddyfile, harness.Var("upstream", up.URL))
	b := &bench{
		caddy:   c,
		up:      up,
		plain:   c.URL(""),
		capi:    "http://127.0.0.1:" + strconv.Itoa(c.Port("capi")),
		wrk:     wrk,
		rounds:  envInt(t, roundsEnv, 5),
		strict:  os.Getenv(strictEnv) == "1",
		profile: os.Getenv(profileEnv),
		load: wrkLoad{
			Threads:     envInt(t, threadsEnv, 1),
			Connections: envInt(t, connectionsEnv, 16),
			Duration:    time.Duration(envInt(t, durationEnv, 6)) * time.Second,
		},
		started:  time.Now(),
		loadAvg0: loadAverage(),
	}

	// The large page first, while the process is fresh and its heap small.
	t.Run("large page streams in bounded memory", b.largePage)

	t.Run("20 KB JS asset", func(t *testing.T) {
		b.throughputRun(t, throughputCase{
			name: "20 KB JS asset (not HTML: passed through)", slug: "asset", path: assetPath, headers: assetHeaders,
			target: 0.95, check: b.checkAssetUntouched,
		})
	})
	cookie := b.returningVisitor(t)
	t.Run("50 KB HTML returning visitor", func(t *testing.T) {
		b.throughputRun(t, throughputCase{
			name: "50 KB HTML page, injected, returning visitor from an ad click (its cookies sent), browsing inside the shop (Sec-Fetch-Site: same-origin)", slug: "html-returning", path: pagePath,
			headers: append(slices.Clone(pageHeaders), "Cookie: "+cookie, "Sec-Fetch-Site: same-origin"), target: 0.85, html: true,
			check: b.checkPageInjected,
		})
	})
	t.Run("50 KB HTML returning visitor starting a visit", func(t *testing.T) {
		b.throughputRun(t, throughputCase{
			name: "50 KB HTML page, injected, the same returning visitor starting a visit (Sec-Fetch-Site: cross-site: its six cookies renewed)", slug: "html-returning-visit", path: pagePath,
			headers: append(slices.Clone(pageHeaders), "Cookie: "+cookie, "Sec-Fetch-Site: cross-site"), target: 0.85, html: true,
			check: b.checkPageInjected,
		})
	})
	t.Run("50 KB HTML new visitor", func(t *testing.T) {
		b.throughputRun(t, throughputCase{
			name: "50 KB HTML page, injected, new cookie-less visitor on every request", slug: "html-new-visitor", path: pagePath,
			headers: pageHeaders, target: 0.85, html: true, check: b.checkPageInjected,
		})
	})
	t.Run("50 KB HTML new visitor from an ad click", func(t *testing.T) {
		b.throughputRun(t, throughputCase{
			name: "50 KB HTML page, injected, new visitor from an ad click (fbclid, gclid, ttclid) on every request: a visitor record written each time",
			slug: "html-ad-click", path: pagePath + adClickQuery,
			headers: pageHeaders, target: 0.85, html: true, check: b.checkPageInjected,
		})
	})

	for msg, n := range logMessages(c, "warn") {
		t.Logf("caddy logged %d× at level warn: %s", n, msg)
	}
	report := b.markdown()
	t.Logf("report:\n%s", report)
	if path := os.Getenv(reportEnv); path != "" {
		if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
			t.Errorf("write report: %v", err)
		}
	}
	if errs := errorLines(c.Log()); len(errs) > 0 {
		t.Errorf("caddy logged %d errors during the benchmarks; the first: %s", len(errs), errs[0])
	}
}

// throughputCase is one workload measured on both sites.
type throughputCase struct {
	name    string
	slug    string // the workload's file name, for its profile
	path    string
	headers []string
	target  float64
	// html says the capi site's answer carries the snippet: its mean response must be larger.
	html bool
	// check looks at one answer of the capi site and returns the size of what capi added.
	check func(t *testing.T, path string, headers []string) int
}

// throughputRow is what a case measured: wrk's results per round on each site.
type throughputRow struct {
	throughputCase
	plain, capi []wrkResult
	added       int
}

func (r *throughputRow) ratios() []float64 {
	var out []float64
	for i := range min(len(r.plain), len(r.capi)) {
		out = append(out, r.capi[i].RequestsPerSec/r.plain[i].RequestsPerSec)
	}
	return out
}

// cpuRatios are, per round, Caddy's CPU time per request on the plain site over that on the capi
// site: the throughput ratio the two would have if Caddy had the CPUs to itself. Other processes'
// load changes it much less than it changes requests per second.
func (r *throughputRow) cpuRatios() []float64 {
	var out []float64
	for i := range min(len(r.plain), len(r.capi)) {
		out = append(out, float64(r.plain[i].cpuPerRequest())/float64(r.capi[i].cpuPerRequest()))
	}
	return out
}

// throughputRun measures one case: a warm-up on each site, then rounds of one run on each,
// alternating which site goes first (ABBA…), so that a drift in the machine's load favours
// neither. The ratio of each round is capi's requests per second over plain's.
func (b *bench) throughputRun(t *testing.T, tc throughputCase) {
	row := &throughputRow{throughputCase: tc}
	row.added = tc.check(t, tc.path, tc.headers)
	if t.Failed() {
		return
	}
	ctx := t.Context()
	warm := b.load
	warm.Duration = 2 * time.Second
	for _, base := range []string{b.plain, b.capi} {
		if _, err := runWrk(ctx, b.wrk, warm, base+tc.path, tc.headers); err != nil {
			t.Fatal(err)
		}
	}
	for round := range b.rounds {
		order := []string{b.plain, b.capi}
		if round%2 == 1 {
			order = []string{b.capi, b.plain}
		}
		for _, base := range order {
			site := "plain"
			if base == b.capi {
				site = "capi"
			}
			var profiled chan error
			if b.profile != "" && round == b.rounds/2 {
				profiled = make(chan error, 1)
				go func() { profiled <- b.cpuProfile(ctx, tc.slug+"-"+site) }()
			}
			cpu0, err := cpuSeconds(ctx, b.caddy.AdminURL)
			if err != nil {
				t.Fatal(err)
			}
			res, err := runWrk(ctx, b.wrk, b.load, base+tc.path, tc.headers)
			if err != nil {
				t.Fatal(err)
			}
			cpu1, err := cpuSeconds(ctx, b.caddy.AdminURL)
			if err != nil {
				t.Fatal(err)
			}
			res.CaddyCPU = time.Duration((cpu1 - cpu0) * float64(time.Second))
			if profiled != nil {
				if err := <-profiled; err != nil {
					t.Errorf("CPU profile of the %s site: %v", site, err)
				}
			}
			if res.Non2xx > 0 || res.SocketErrors > 0 || res.Requests == 0 {
				t.Fatalf("%s%s: %d requests, %d non-2xx/3xx, %d socket errors", base, tc.path, res.Requests, res.Non2xx, res.SocketErrors)
			}
			if base == b.plain {
				row.plain = append(row.plain, res)
			} else {
				row.capi = append(row.capi, res)
			}
		}
		t.Logf("round %d: plain %.0f req/s, capi %.0f req/s, ratio %.3f; Caddy CPU per request plain %v, capi %v, ratio %.3f", round+1,
			row.plain[round].RequestsPerSec, row.capi[round].RequestsPerSec, row.ratios()[round],
			row.plain[round].cpuPerRequest(), row.capi[round].cpuPerRequest(), row.cpuRatios()[round])
	}
	// Every answer under load carried the snippet, not just the one checked: the capi site's mean
	// response is larger by at least (most of) the snippet. Its Set-Cookie lines only add to that.
	if tc.html {
		extra := medianOf(row.capi, wrkResult.bytesPerRequest) - medianOf(row.plain, wrkResult.bytesPerRequest)
		if extra < 0.9*float64(row.added) {
			t.Errorf("under load the capi site's answers were only %.0f bytes larger than plain's; the snippet is %d bytes: not every page was injected", extra, row.added)
		}
	}
	// And still does after the load.
	tc.check(t, tc.path, tc.headers)

	b.mu.Lock()
	b.throughput = append(b.throughput, row)
	b.mu.Unlock()
	ratio := median(row.ratios())
	if ratio < tc.target {
		msg := fmt.Sprintf("%s: capi/plain throughput %.3f, below the target %.2f (ratios %v)", tc.name, ratio, tc.target, fmtRatios(row.ratios()))
		if b.strict {
			t.Error(msg)
		} else {
			t.Log("TARGET MISSED: " + msg)
		}
	}
}

// cpuProfile saves a CPU profile of Caddy taken over most of one wrk run.
func (b *bench) cpuProfile(ctx context.Context, slug string) error {
	secs := max(int(b.load.Duration.Seconds())-1, 1)
	data, err := fetchText(ctx, b.caddy.AdminURL("/debug/pprof/profile?seconds="+strconv.Itoa(secs)))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(b.profile, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(b.profile, slug+".pprof"), []byte(data), 0o644)
}

// get fetches url with headers (one "Name: value" each) and returns the answer and its body.
func get(t *testing.T, url string, headers []string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ":")
		req.Header.Set(name, strings.TrimSpace(value))
	}
	resp, err := noCompression.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return resp, body
}

// noCompression is a client that sees bodies as sent.
var noCompression = &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 2 * time.Minute}

// checkAssetUntouched asserts that the capi site answers a script request exactly as the plain
// one does: the same bytes, no cookies.
func (b *bench) checkAssetUntouched(t *testing.T, path string, headers []string) int {
	t.Helper()
	resp, body := get(t, b.capi+path, headers)
	if !bytes.Equal(body, b.up.asset) {
		t.Errorf("capi site changed the script: %d bytes, upstream sent %d", len(body), len(b.up.asset))
	}
	if sc := resp.Header.Values("Set-Cookie"); len(sc) > 0 {
		t.Errorf("capi site set cookies on a script: %q", sc)
	}
	return 0
}

// checkPageInjected asserts that the capi site's page is the upstream's page plus exactly one
// inserted snippet carrying all three pixels, and returns the snippet's size.
func (b *bench) checkPageInjected(t *testing.T, path string, headers []string) int {
	t.Helper()
	_, plain := get(t, b.plain+path, headers)
	if !bytes.Equal(plain, b.up.page) {
		t.Fatalf("the plain site changed the page: %d bytes, upstream sent %d", len(plain), len(b.up.page))
	}
	_, body := get(t, b.capi+path, headers)
	snippet, _, err := insertion(b.up.page, body)
	if err != nil {
		t.Fatalf("capi site's page: %v", err)
	}
	return len(snippet)
}

// insertion returns what was inserted into page to make body, and where, when body is page with
// one contiguous insertion that carries every pixel's base code.
func insertion(page, body []byte) (snippet []byte, at int, err error) {
	added := len(body) - len(page)
	if added <= 0 {
		return nil, 0, fmt.Errorf("not injected: %d bytes, the upstream's page has %d", len(body), len(page))
	}
	p := 0
	for p < len(page) && page[p] == body[p] {
		p++
	}
	s := 0
	for s < len(page)-p && page[len(page)-1-s] == body[len(body)-1-s] {
		s++
	}
	if p+s < len(page) {
		return nil, 0, fmt.Errorf("not a single insertion: the page differs from the upstream's from byte %d to %d", p, len(page)-s)
	}
	snippet = body[p : p+added]
	for _, m := range snippetMarkers {
		if !bytes.Contains(snippet, []byte(m)) {
			return nil, 0, fmt.Errorf("the %d bytes inserted at %d lack %q: %.200q", added, p, m, snippet)
		}
	}
	return snippet, p, nil
}

// adClickQuery is what an ad click adds to a landing page's URL: one click ID of each platform.
const adClickQuery = "?fbclid=IwAR2xBench0fbclid1cH5x9mXh&gclid=Cj0KCQiBenchGclid_EAAYASAAEgK&ttclid=E.C.P.BenchTtclid0123456789"

// returningVisitor makes a first visit to the capi site from an ad click and returns the Cookie
// header a browser sends on its next pages: the visitor's identity cookies, click cookies included,
// as the handler set them.
func (b *bench) returningVisitor(t *testing.T) string {
	t.Helper()
	resp, _ := get(t, b.capi+pagePath+adClickQuery, pageHeaders)
	var pairs []string
	for _, c := range resp.Cookies() {
		pairs = append(pairs, c.Name+"="+c.Value)
	}
	if !slices.ContainsFunc(pairs, func(p string) bool { return strings.HasPrefix(p, "_capi_vid=") }) {
		t.Fatalf("the first visit set no _capi_vid cookie: %q", resp.Header.Values("Set-Cookie"))
	}
	return strings.Join(pairs, "; ")
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// logMessages counts the messages Caddy logged at level.
func logMessages(c *harness.Caddy, level string) map[string]int {
	out := map[string]int{}
	for _, e := range c.LogEntries() {
		if e["level"] == level {
			msg, _ := e["msg"].(string)
			out[msg]++
		}
	}
	return out
}

// errorLines are the log lines Caddy wrote at level error.
func errorLines(log string) []string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `"level":"error"`) {
			out = append(out, line)
		}
	}
	return out
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianOf(rs []wrkResult, f func(wrkResult) float64) float64 {
	var xs []float64
	for _, r := range rs {
		xs = append(xs, f(r))
	}
	return median(xs)
}

func fmtRatios(xs []float64) string {
	var s []string
	for _, x := range xs {
		s = append(s, strconv.FormatFloat(x, 'f', 3, 64))
	}
	return strings.Join(s, ", ")
}

// heapAfterGC returns Caddy's live heap: the admin endpoint's heap profile with gc=1 runs a
// collection first and then reports runtime.MemStats, whose HeapAlloc is then what is live.
func heapAfterGC(ctx context.Context, admin func(string) string) (uint64, error) {
	text, err := fetchText(ctx, admin("/debug/pprof/heap?gc=1&debug=1"))
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`(?m)^# HeapAlloc = (\d+)$`).FindStringSubmatch(text)
	if m == nil {
		return 0, errors.New("no HeapAlloc in the admin endpoint's heap profile")
	}
	return strconv.ParseUint(m[1], 10, 64)
}

// cpuSeconds returns the CPU time the Caddy process has used, from its Prometheus metrics.
func cpuSeconds(ctx context.Context, admin func(string) string) (float64, error) {
	text, err := fetchText(ctx, admin("/metrics"))
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`(?m)^process_cpu_seconds_total (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return 0, errors.New("no process_cpu_seconds_total in the admin endpoint's metrics")
	}
	return strconv.ParseFloat(m[1], 64)
}

// residentBytes returns the process's RSS from the admin endpoint's Prometheus metrics.
func residentBytes(ctx context.Context, admin func(string) string) (uint64, error) {
	text, err := fetchText(ctx, admin("/metrics"))
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`(?m)^process_resident_memory_bytes (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return 0, errors.New("no process_resident_memory_bytes in the admin endpoint's metrics")
	}
	f, err := strconv.ParseFloat(m[1], 64)
	return uint64(f), err
}

func fetchText(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := noCompression.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), nil
}
