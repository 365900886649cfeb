package caddymodule

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// edgeMetrics count what the request path refuses, drops or fires. Like deliveryMetrics they are
// created once per process and registered into every config's registry. Labels take values from
// small fixed sets named beside each collector; never an ID, a URL or a value from the request.
type edgeMetrics struct {
	// clickIDsRejected counts click-ID query values refused as malformed (DESIGN §4).
	clickIDsRejected prometheus.Counter
	// cookiesRefused counts identity cookies whose values were malformed and so treated as absent.
	cookiesRefused prometheus.Counter
	// backgroundDropped counts background writes dropped because their queue was full or the
	// storage was gone, by kind: visitor, page_view.
	backgroundDropped *prometheus.CounterVec
	// backgroundFailed counts background writes that ran and failed, by kind.
	backgroundFailed *prometheus.CounterVec
	// conversions counts conversion rules that matched a completed request, by outcome: fired,
	// duplicate (the order was already counted), failed (not enqueued).
	conversions *prometheus.CounterVec
	// captures counts posts on capture paths, by outcome: captured, empty, oversized,
	// unsupported, failed.
	captures *prometheus.CounterVec
	// collected counts posts to the collect endpoint, by outcome: accepted or the refusal reason.
	collected *prometheus.CounterVec
	// valuesDropped counts values left out of events and visitor records, by field (value,
	// currency, content_ids, email, …, the conversion and signal packages' fixed field names).
	valuesDropped *prometheus.CounterVec
}

var (
	edgeMetricsOnce sync.Once
	edgeCounters    *edgeMetrics
)

func initEdgeMetrics() {
	const ns, sub = "caddy", "capi"
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	vec := func(name, help, label string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, []string{label})
	}
	edgeCounters = &edgeMetrics{
		clickIDsRejected:  counter("click_ids_rejected_total", "Click-ID query values refused as malformed or oversized."),
		cookiesRefused:    counter("cookies_refused_total", "Identity cookies whose values were malformed and treated as absent."),
		backgroundDropped: vec("background_writes_dropped_total", "Visitor-record writes and page events dropped before running, by kind.", "kind"),
		backgroundFailed:  vec("background_writes_failed_total", "Visitor-record writes and page events that failed, by kind.", "kind"),
		conversions:       vec("conversions_total", "Conversion rules matched by a completed request, by outcome.", "outcome"),
		captures:          vec("captures_total", "Posts on capture paths, by outcome.", "outcome"),
		collected:         vec("collect_requests_total", "Posts to the collect endpoint, by outcome.", "outcome"),
		valuesDropped:     vec("values_dropped_total", "Values left out of events and visitor records as invalid, by field.", "field"),
	}
}

// edgeStats returns the edge collectors, creating them on first use.
func edgeStats() *edgeMetrics {
	edgeMetricsOnce.Do(initEdgeMetrics)
	return edgeCounters
}

// registerEdgeMetrics registers the edge collectors into a config's registry; a collector already
// registered there is fine.
func registerEdgeMetrics(reg prometheus.Registerer, logger *zap.Logger) {
	m := edgeStats()
	if reg == nil {
		return
	}
	for _, c := range []prometheus.Collector{m.clickIDsRejected, m.cookiesRefused, m.backgroundDropped,
		m.backgroundFailed, m.conversions, m.captures, m.collected, m.valuesDropped} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				logger.Error("registering capi edge metrics", zap.Error(err))
			}
		}
	}
}
