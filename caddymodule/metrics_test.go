package caddymodule

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
)

// TestMetricsSurviveReload registers into two registries, as two config loads do, and checks that
// the second one serves the counts recorded before it existed.
func TestMetricsSurviveReload(t *testing.T) {
	first := prometheus.NewPedanticRegistry()
	registerMetrics(first, zap.NewNop())
	registerMetrics(first, zap.NewNop()) // a second provision in one config

	obs := newDeliveryObserver()
	before := value(t, metrics.enqueued.WithLabelValues("meta"))
	obs.Enqueued("meta", 3)
	obs.Delivered("meta", 2)
	obs.Retried("meta", 1)
	obs.DeadLettered("meta", 1)
	obs.QueueDepth("meta", 7)
	obs.DeliveryLatency("meta", 120*time.Millisecond)

	second := prometheus.NewPedanticRegistry()
	registerMetrics(second, zap.NewNop())
	families, err := second.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	for _, want := range []string{
		"caddy_capi_events_enqueued_total", "caddy_capi_events_delivered_total",
		"caddy_capi_events_retried_total", "caddy_capi_events_dead_lettered_total",
		"caddy_capi_queue_depth", "caddy_capi_delivery_latency_seconds",
	} {
		if !names[want] {
			t.Errorf("%s missing from the new registry", want)
		}
	}
	if got := value(t, metrics.enqueued.WithLabelValues("meta")); got != before+3 {
		t.Errorf("enqueued = %v, want %v", got, before+3)
	}
	if got := value(t, metrics.queueDepth.WithLabelValues("meta")); got != 7 {
		t.Errorf("queue depth = %v", got)
	}
}

// value reads the current value of a counter or gauge.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}
