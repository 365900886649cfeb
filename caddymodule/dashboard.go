package caddymodule

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"math"
	"mime"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/platform"
	"github.com/caddy-capi/caddy-capi/capi/signal"
)

// The dashboard (GET /capi/dashboard) shows, per platform, the queue, the delivery counters, the
// delivery latency and the signal coverage of delivered events. It reads the process's Prometheus
// collectors and the storages' queue stats, so everything on it is a count, a duration or a fixed
// name (platforms, signals) beside the storage and sink paths from the config: no event, visitor
// or platform answer reaches it, which keeps personal data and tokens off the page. The platforms'
// failure reasons are left out for the same reason: they quote the platform, and GET /capi/queue
// has them.

// dashboardPlatforms are the platforms in the order the dashboard shows them, with their names as
// people write them.
var dashboardPlatforms = []struct{ name, label string }{
	{platform.Meta, "Meta"},
	{platform.TikTok, "TikTok"},
	{platform.Google, "Google Ads"},
}

// dashboardView is the dashboard, as the HTML page renders it and the JSON twin returns it.
type dashboardView struct {
	GeneratedAt time.Time `json:"generated_at"`
	// Storages are the storages in use, as GET /capi/status shows them.
	Storages []storageStatus `json:"storages"`
	// Platforms are those configured on a running storage, or with queued or counted events.
	Platforms []platformView `json:"platforms"`
}

// platformView is one platform's delivery and coverage. The queue fields add up every storage's
// queue; the counters, latency and coverage are the process's since it started (they survive
// config reloads, not restarts).
type platformView struct {
	Platform string `json:"platform"`
	Label    string `json:"label"`

	// Depth counts events waiting for delivery, in-flight ones (Leased) included.
	Depth       int `json:"depth"`
	Leased      int `json:"leased"`
	DeadLetters int `json:"dead_letters"`

	Enqueued     uint64 `json:"enqueued"`
	Delivered    uint64 `json:"delivered"`
	Retried      uint64 `json:"retried"`
	DeadLettered uint64 `json:"dead_lettered"`

	// Latency is absent until an event is delivered.
	Latency  *latencyView `json:"latency,omitempty"`
	Coverage coverageView `json:"coverage"`
}

// latencyView is the delivery latency (enqueue to acceptance), estimated from the histogram's
// buckets by linear interpolation inside the bucket that holds the quantile, as Prometheus'
// histogram_quantile does: the true value lies in the same bucket, not necessarily at the estimate.
type latencyView struct {
	Observed uint64        `json:"observed"`
	P50      quantileValue `json:"p50"`
	P95      quantileValue `json:"p95"`
}

// quantileValue is an estimated quantile in seconds. Beyond reports that it lies past the last
// bucket, so that all that is known is that it exceeds Seconds.
type quantileValue struct {
	Seconds float64 `json:"seconds"`
	Beyond  bool    `json:"beyond_last_bucket,omitempty"`
}

// coverageView is which of the platform's signals delivered events carried. Events is the
// denominator, the platform's delivered counter; PerEvent and each Percent are absent while it is
// zero, rather than NaN.
type coverageView struct {
	Events   uint64        `json:"events"`
	Of       int           `json:"of"`
	PerEvent *float64      `json:"per_event,omitempty"`
	Signals  []signalShare `json:"signals"`
}

// signalShare is one signal's coverage: how many delivered events carried it, and their percentage.
type signalShare struct {
	Signal  string   `json:"signal"`
	Events  uint64   `json:"events"`
	Percent *float64 `json:"percent,omitempty"`
}

func (AdminAPI) handleDashboard(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodGet); err != nil {
		return err
	}
	metricsOnce.Do(initMetrics)
	statuses, err := storageStatuses(r.Context())
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	view := buildDashboard(metrics, statuses, time.Now())
	w.Header().Set("Vary", "Accept")
	w.Header().Set("Cache-Control", "no-store")
	if strings.HasSuffix(r.URL.Path, ".json") || wantsJSON(r.Header.Get("Accept")) {
		return writeJSON(w, view)
	}
	// Rendered whole before anything is written, so that a template error is a clean 500.
	var page bytes.Buffer
	if err := dashboardPage.Execute(&page, view); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("rendering the dashboard: %v", err)}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// The page needs its inline stylesheet and nothing else: no script, image, frame or form.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, err = page.WriteTo(w)
	return err
}

// storageStatuses reports every storage in use, by path.
func storageStatuses(ctx context.Context) ([]storageStatus, error) {
	out := []storageStatus{}
	var statusErr error
	storages.Range(func(_, val any) bool {
		st, err := val.(*sharedStorage).status(ctx)
		if err != nil {
			statusErr = err
			return false
		}
		out = append(out, st)
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, statusErr
}

// buildDashboard reads m and the storages' statuses into the dashboard.
func buildDashboard(m *deliveryMetrics, statuses []storageStatus, now time.Time) dashboardView {
	// Signals are read before the delivered counters: the engine counts an event as delivered
	// before it counts its signals, so in this order no share can exceed 100%.
	signals := map[string]map[string]uint64{}
	for _, mt := range collected(m.signals) {
		p, s := labelValue(mt, "platform"), labelValue(mt, "signal")
		if signals[p] == nil {
			signals[p] = map[string]uint64{}
		}
		signals[p][s] = uint64(mt.GetCounter().GetValue())
	}
	latencies := map[string]*dto.Histogram{}
	for _, mt := range collected(m.latency) {
		latencies[labelValue(mt, "platform")] = mt.GetHistogram()
	}
	enqueued, delivered := counterValues(m.enqueued), counterValues(m.delivered)
	retried, deadLettered := counterValues(m.retried), counterValues(m.deadLettered)

	view := dashboardView{GeneratedAt: now.UTC(), Storages: statuses, Platforms: []platformView{}}
	for _, p := range dashboardPlatforms {
		v := platformView{
			Platform: p.name, Label: p.label,
			Enqueued: enqueued[p.name], Delivered: delivered[p.name],
			Retried: retried[p.name], DeadLettered: deadLettered[p.name],
		}
		shown := v.Enqueued+v.Delivered+v.Retried+v.DeadLettered > 0
		for _, st := range statuses {
			if q, ok := st.Queue[p.name]; ok {
				v.Depth += q.Depth
				v.Leased += q.Leased
				v.DeadLetters += q.DeadLetters
				shown = shown || q.Depth+q.DeadLetters > 0
			}
			for _, configured := range st.Platforms {
				shown = shown || configured == p.name
			}
		}
		if !shown {
			continue
		}
		if h := latencies[p.name]; h.GetSampleCount() > 0 {
			v.Latency = &latencyView{
				Observed: h.GetSampleCount(),
				P50:      bucketQuantile(0.5, h),
				P95:      bucketQuantile(0.95, h),
			}
		}
		v.Coverage = coverage(p.name, v.Delivered, signals[p.name])
		view.Platforms = append(view.Platforms, v)
	}
	return view
}

// coverage turns a platform's signal counts into shares of its delivered events.
func coverage(platformName string, delivered uint64, counts map[string]uint64) coverageView {
	names, _ := signal.PresenceOf(platformName, event.User{})
	c := coverageView{Events: delivered, Of: len(names), Signals: make([]signalShare, 0, len(names))}
	var carried uint64
	for _, name := range names {
		s := signalShare{Signal: name, Events: counts[name]}
		carried += s.Events
		if delivered > 0 {
			pct := 100 * float64(s.Events) / float64(delivered)
			s.Percent = &pct
		}
		c.Signals = append(c.Signals, s)
	}
	if delivered > 0 {
		avg := float64(carried) / float64(delivered)
		c.PerEvent = &avg
	}
	return c
}

// bucketQuantile estimates the q-quantile of h. An empty histogram gives zero.
func bucketQuantile(q float64, h *dto.Histogram) quantileValue {
	total := float64(h.GetSampleCount())
	if total == 0 {
		return quantileValue{}
	}
	rank := q * total
	var lower, below float64
	for _, b := range h.GetBucket() {
		upper, cum := b.GetUpperBound(), float64(b.GetCumulativeCount())
		if math.IsInf(upper, +1) {
			break
		}
		if cum >= rank {
			if cum == below {
				return quantileValue{Seconds: upper}
			}
			return quantileValue{Seconds: lower + (upper-lower)*(rank-below)/(cum-below)}
		}
		lower, below = upper, cum
	}
	return quantileValue{Seconds: lower, Beyond: true}
}

// collected returns the current series of a collector without creating any: reading a vector
// through WithLabelValues would make a platform that never counted anything appear on /metrics.
func collected(c prometheus.Collector) []*dto.Metric {
	ch := make(chan prometheus.Metric)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	var out []*dto.Metric
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) == nil {
			out = append(out, &d)
		}
	}
	return out
}

// counterValues reads a counter vector labelled by platform.
func counterValues(c *prometheus.CounterVec) map[string]uint64 {
	out := map[string]uint64{}
	for _, m := range collected(c) {
		out[labelValue(m, "platform")] = uint64(m.GetCounter().GetValue())
	}
	return out
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// wantsJSON reports whether an Accept header asks for JSON rather than the HTML page: it names
// application/json with a higher quality than text/html (absent: 0). Wildcards pick the page, so
// a browser, or curl without -H, gets HTML; malformed entries are ignored.
func wantsJSON(accept string) bool {
	var qJSON, qHTML float64
	for part := range strings.SplitSeq(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || !(f >= 0 && f <= 1) {
				continue
			}
			q = f
		}
		switch mt {
		case "application/json":
			qJSON = max(qJSON, q)
		case "text/html":
			qHTML = max(qHTML, q)
		}
	}
	return qJSON > qHTML
}

// humanSeconds writes a duration in seconds with a unit that keeps it short: 350 ms, 4.2 s,
// 6.4 min, 2.5 h, 1.2 d.
func humanSeconds(s float64) string {
	switch {
	case s < 1:
		return strconv.FormatFloat(s*1000, 'f', 0, 64) + " ms"
	case s < 60:
		return strconv.FormatFloat(s, 'f', 1, 64) + " s"
	case s < 3600:
		return strconv.FormatFloat(s/60, 'f', 1, 64) + " min"
	case s < 86400:
		return strconv.FormatFloat(s/3600, 'f', 1, 64) + " h"
	}
	return strconv.FormatFloat(s/86400, 'f', 1, 64) + " d"
}

// dashboardPage is the dashboard's HTML. html/template escapes everything it inserts for its
// context; the only strings from outside the code are the storage and sink paths of the config.
var dashboardPage = template.Must(template.New("dashboard").Funcs(template.FuncMap{
	"duration": func(q quantileValue) string {
		if q.Beyond {
			return "more than " + humanSeconds(q.Seconds)
		}
		return humanSeconds(q.Seconds)
	},
	"percent": func(p *float64) string { return strconv.FormatFloat(*p, 'f', 1, 64) + "%" },
	"decimal": func(p *float64) string { return strconv.FormatFloat(*p, 'f', 1, 64) },
	"stamp":   func(t time.Time) string { return t.Format(time.RFC3339) },
}).Parse(dashboardHTML))

const dashboardHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>caddy-capi: delivery and signal coverage</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 64em; padding: 0 1em; color: #1d1d1f; }
h1 { font-size: 1.5em; margin-bottom: .2em; }
h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
h3 { font-size: 1em; margin: 1.2em 0 .4em; }
p.note, td.note { color: #666; }
table { border-collapse: collapse; margin: .4em 0; }
th, td { text-align: left; padding: .25em .9em .25em 0; vertical-align: middle; }
th { font-weight: 600; color: #444; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th { white-space: nowrap; }
tr + tr td { border-top: 1px solid #f0f0f0; }
meter { width: 12em; }
code { font-size: .95em; }
.empty { color: #888; font-style: italic; }
</style>
</head>
<body>
<h1>caddy-capi</h1>
<p class="note">Generated {{stamp .GeneratedAt}}. Queue figures are now; counts, latencies and coverage
are since this Caddy process started (config reloads keep them). JSON: <code>GET /capi/dashboard.json</code>.</p>

<h2>Storage</h2>
{{- if .Storages}}
<table>
<tr><th>path</th><th>backend</th><th>state</th><th>delivery</th><th>platforms</th></tr>
{{- range .Storages}}
<tr><td><code>{{.Path}}</code></td><td>{{.Backend}}</td>
<td>{{if .Started}}running{{else if .Open}}open, no config running{{else}}not opened yet{{end}}</td>
<td>{{if .Sink}}records to <code>{{.Sink}}</code> instead of sending{{else}}sends to the platforms{{end}}</td>
<td>{{range $i, $p := .Platforms}}{{if $i}}, {{end}}{{$p}}{{else}}none{{end}}</td></tr>
{{- end}}
</table>
{{- else}}
<p class="empty">No storage in use: the capi app is not configured.</p>
{{- end}}

{{- range $p := .Platforms}}
<h2 id="{{.Platform}}">{{.Label}}</h2>
<h3>Delivery</h3>
<table>
<tr><th>waiting in queue</th><td class="n">{{.Depth}}</td><td class="note">{{.Leased}} being sent now</td></tr>
<tr><th>dead letters waiting</th><td class="n">{{.DeadLetters}}</td><td class="note">replay or drop them through <code>/capi/dead-letters</code></td></tr>
<tr><th>enqueued</th><td class="n">{{.Enqueued}}</td><td></td></tr>
<tr><th>delivered</th><td class="n">{{.Delivered}}</td><td></td></tr>
<tr><th>retried</th><td class="n">{{.Retried}}</td><td class="note">attempts that failed transiently</td></tr>
<tr><th>dead-lettered</th><td class="n">{{.DeadLettered}}</td><td></td></tr>
{{- with .Latency}}
<tr><th>latency p50</th><td class="n">{{duration .P50}}</td><td class="note" rowspan="2">enqueue to acceptance, over {{.Observed}} events;
estimated from the histogram buckets (exponential, &times;4 from 100 ms), so exact only to within its bucket</td></tr>
<tr><th>latency p95</th><td class="n">{{duration .P95}}</td></tr>
{{- else}}
<tr><th>latency</th><td class="empty" colspan="2">no events yet</td></tr>
{{- end}}
</table>
<h3>Signal coverage</h3>
{{- with .Coverage}}
{{- if .PerEvent}}
<p><strong>{{$p.Label}}: {{decimal .PerEvent}} of {{.Of}}</strong> signals per delivered event, over {{.Events}} events.</p>
<table>
<tr><th>signal</th><th>events</th><th>share</th><th></th></tr>
{{- range .Signals}}
<tr><td><code>{{.Signal}}</code></td><td class="n">{{.Events}}</td><td class="n">{{percent .Percent}}</td><td><meter min="0" max="100" value="{{decimal .Percent}}">{{percent .Percent}}</meter></td></tr>
{{- end}}
</table>
{{- else}}
<p class="empty">No events yet: coverage is counted when {{$p.Label}} accepts an event.</p>
<p class="note">Signals counted: {{range $i, $s := .Signals}}{{if $i}}, {{end}}<code>{{$s.Signal}}</code>{{end}}.</p>
{{- end}}
{{- end}}
{{- else}}
<h2>Platforms</h2>
<p class="empty">No platform is configured and no event was counted yet.</p>
{{- end}}
</body>
</html>
`
