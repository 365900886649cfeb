package delivery_test

import (
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/delivery"
	"github.com/caddy-capi/caddy-capi/capi/platform"
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

// TestBackoffFollowsTheInstalledRetrySettings: retry_base and retry_max of the installed settings
// replace the engine's defaults for retries scheduled after SetSenders, and unset ones keep them.
func TestBackoffFollowsTheInstalledRetrySettings(t *testing.T) {
	e, _ := newEngine(t, delivery.Options{BackoffBase: time.Second, BackoffCap: 10 * time.Minute})
	senders := map[string]platform.Sender{"meta": newFake("meta")}
	tests := []struct {
		name     string
		settings delivery.Settings
		attempts int
		want     time.Duration
	}{
		{"defaults when unset", delivery.Settings{}, 3, 4 * time.Second},
		{"base doubles per attempt", delivery.Settings{RetryBase: 5 * time.Second}, 3, 20 * time.Second},
		{"base alone keeps the default cap", delivery.Settings{RetryBase: 5 * time.Second}, 20, 10 * time.Minute},
		{"max caps", delivery.Settings{RetryBase: 5 * time.Second, RetryMax: 30 * time.Second}, 5, 30 * time.Second},
		{"max alone keeps the default base", delivery.Settings{RetryMax: time.Hour}, 2, 2 * time.Second},
		{"max alone raises the cap", delivery.Settings{RetryMax: time.Hour}, 20, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.settings.Validate(); err != nil {
				t.Fatal(err)
			}
			e.SetSenders(senders, tt.settings)
			if got := e.Backoff(tt.attempts, 0, 1); got != tt.want {
				t.Errorf("backoff(%d) = %v, want %v", tt.attempts, got, tt.want)
			}
		})
	}
}

func TestSettingsRefuseImpossibleRetryBounds(t *testing.T) {
	for name, s := range map[string]delivery.Settings{
		"negative base":         {RetryBase: -time.Second},
		"negative max":          {RetryMax: -time.Second},
		"max shorter than base": {RetryBase: time.Minute, RetryMax: time.Second},
	} {
		if err := s.Validate(); err == nil {
			t.Errorf("%s: %+v was accepted", name, s)
		}
	}
}
