package delivery_test

import (
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/delivery"
)

func TestBackoffIsExponentialWithFullJitterAndHonoursRetryAfter(t *testing.T) {
	e, _ := newEngine(t, delivery.Options{BackoffBase: time.Second, BackoffCap: 10 * time.Minute})
	tests := []struct {
		name       string
		attempts   int
		retryAfter time.Duration
		jitter     float64
		want       time.Duration
	}{
		{"first retry, full jitter", 1, 0, 0.999999, 999999 * time.Microsecond},
		{"first retry, no jitter left", 1, 0, 0, 0},
		{"doubles per attempt", 4, 0, 0.5, 4 * time.Second},
		{"capped", 12, 0, 1, 10 * time.Minute},
		{"no overflow after many attempts", 500, 0, 0.5, 5 * time.Minute},
		{"Retry-After longer than the backoff wins", 1, 30 * time.Second, 0.5, 30 * time.Second},
		{"backoff longer than Retry-After wins", 10, 30 * time.Second, 0.5, 256 * time.Second},
	}
	for _, tt := range tests {
		if got := e.Backoff(tt.attempts, tt.retryAfter, tt.jitter); got != tt.want {
			t.Errorf("%s: backoff(%d, %v, %v) = %v, want %v", tt.name, tt.attempts, tt.retryAfter, tt.jitter, got, tt.want)
		}
	}
}
