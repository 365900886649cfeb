package caddymodule

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// postbacksTotal counts postback requests by source (clickbank, jvzoo, shopify, woocommerce, stripe,
// generic) and outcome: recorded (events enqueued), duplicate, not_conversion (a refund,
// chargeback or cancellation, recorded and not sent), unrouted (recorded, no platform takes it,
// such as a test without a test event code), ping, unauthorized, malformed, too_large, unreadable,
// method_not_allowed, unavailable (not recorded, answered 503). Both label sets are fixed, so
// cardinality stays bounded. Like the delivery metrics it is created once per process and
// registered into every config's registry.
var (
	postbackMetricsOnce sync.Once
	postbacksTotal      *prometheus.CounterVec
)

func postbackStats() *prometheus.CounterVec {
	postbackMetricsOnce.Do(func() {
		postbacksTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "caddy", Subsystem: "capi", Name: "postbacks_total",
			Help: "Postback and webhook requests, by source and outcome.",
		}, []string{"source", "outcome"})
	})
	return postbacksTotal
}

// registerPostbackMetrics registers the postback counter into a config's registry; a collector
// already registered there is fine.
func registerPostbackMetrics(reg prometheus.Registerer, logger *zap.Logger) {
	c := postbackStats()
	if reg == nil {
		return
	}
	if err := reg.Register(c); err != nil {
		var already prometheus.AlreadyRegisteredError
		if !errors.As(err, &already) {
			logger.Error("registering capi postback metrics", zap.Error(err))
		}
	}
}
