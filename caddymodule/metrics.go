package caddymodule

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/signal"
)

// deliveryMetrics are the collectors of the delivery pipeline. They are created once per process
// and registered into every config's registry, so counters keep their values across reloads and
// stay visible on /metrics after one. Labels are platform, one of meta, tiktok, google, and for
// signals the platform's fixed signal names, so cardinality stays bounded (at most 36 series).
type deliveryMetrics struct {
	enqueued     *prometheus.CounterVec
	delivered    *prometheus.CounterVec
	retried      *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
	queueDepth   *prometheus.GaugeVec
	latency      *prometheus.HistogramVec
	// signals counts, among the events a platform accepted, those carrying each of its matching
	// signals (signal.MetaSignals, TikTokSignals, GoogleSignals); delivered is the denominator.
	signals *prometheus.CounterVec
}

var (
	metricsOnce sync.Once
	metrics     *deliveryMetrics
)

func initMetrics() { metrics = newDeliveryMetrics() }

func newDeliveryMetrics() *deliveryMetrics {
	const ns, sub = "caddy", "capi"
	platform := []string{"platform"}
	return &deliveryMetrics{
		enqueued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "events_enqueued_total",
			Help: "Events appended to the delivery queue, by platform.",
		}, platform),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "events_delivered_total",
			Help: "Events the platform accepted, by platform.",
		}, platform),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "events_retried_total",
			Help: "Delivery attempts that failed transiently and were scheduled again, by platform.",
		}, platform),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "events_dead_lettered_total",
			Help: "Events moved to the dead letters after a permanent failure or giving up, by platform.",
		}, platform),
		queueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "queue_depth",
			Help: "Events waiting in the delivery queue, by platform.",
		}, platform),
		// From 100ms to about 5 days: an event is delivered in seconds when the platform is up, and
		// hours or days later after an outage.
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "delivery_latency_seconds",
			Help:    "Time from enqueue to the platform accepting an event, by platform.",
			Buckets: prometheus.ExponentialBuckets(0.1, 4, 12),
		}, platform),
		signals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "event_signals_total",
			Help: "Events the platform accepted that carried a matching signal, by platform and signal; " +
				"divide by caddy_capi_events_delivered_total for the signal's coverage.",
		}, []string{"platform", "signal"}),
	}
}

func (m *deliveryMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.enqueued, m.delivered, m.retried, m.deadLettered, m.queueDepth, m.latency, m.signals}
}

// registerMetrics registers the collectors into a config's registry. Each config load brings a new
// registry, so this runs on every Provision; a collector already registered there is fine.
func registerMetrics(reg prometheus.Registerer, logger *zap.Logger) {
	metricsOnce.Do(initMetrics)
	if reg == nil {
		return
	}
	for _, c := range metrics.collectors() {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				logger.Error("registering capi metrics", zap.Error(err))
			}
		}
	}
}

// deliveryObserver feeds the collectors from the delivery engine's callbacks: it has the method sets
// of delivery.Observer and delivery.EventObserver. Its methods take the platform name and counts,
// or accepted events of which they keep only which signals were present, never a value that
// identifies a visitor or an event, and never block.
type deliveryObserver struct{ m *deliveryMetrics }

func newDeliveryObserver() deliveryObserver {
	metricsOnce.Do(initMetrics)
	return deliveryObserver{m: metrics}
}

// Enqueued counts n events appended to the queue for a platform.
func (o deliveryObserver) Enqueued(platform string, n int) {
	o.m.enqueued.WithLabelValues(platform).Add(float64(n))
}

// Delivered counts n events a platform accepted.
func (o deliveryObserver) Delivered(platform string, n int) {
	o.m.delivered.WithLabelValues(platform).Add(float64(n))
}

// Retried counts n events scheduled again after a transient failure.
func (o deliveryObserver) Retried(platform string, n int) {
	o.m.retried.WithLabelValues(platform).Add(float64(n))
}

// DeadLettered counts n events moved to the dead letters.
func (o deliveryObserver) DeadLettered(platform string, n int) {
	o.m.deadLettered.WithLabelValues(platform).Add(float64(n))
}

// QueueDepth records how many events wait for a platform.
func (o deliveryObserver) QueueDepth(platform string, depth int) {
	o.m.queueDepth.WithLabelValues(platform).Set(float64(depth))
}

// DeliveryLatency records the time from enqueue to acceptance of one delivered event.
func (o deliveryObserver) DeliveryLatency(platform string, d time.Duration) {
	o.m.latency.WithLabelValues(platform).Observe(d.Seconds())
}

// DeliveredEvents counts, for the events a platform accepted, which of the platform's signals each
// carried. The engine calls it right after Delivered for the same events, so every signal's count
// stays at or below the delivered count. Every signal of the platform gets a series, zero or not,
// so that a signal never seen reads as 0% rather than as missing.
func (o deliveryObserver) DeliveredEvents(platformName string, events []*event.Event) {
	names, _ := signal.PresenceOf(platformName, event.User{})
	if len(names) == 0 {
		return
	}
	var counts [32]int
	for _, e := range events {
		_, present := signal.PresenceOf(platformName, e.User)
		for i := range names {
			if present.Has(i) {
				counts[i]++
			}
		}
	}
	for i, name := range names {
		o.m.signals.WithLabelValues(platformName, name).Add(float64(counts[i]))
	}
}
