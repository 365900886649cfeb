package delivery

import "time"

// Backoff exposes the backoff computation to the tests.
func (e *Engine) Backoff(attempts int, retryAfter time.Duration, jitter float64) time.Duration {
	return e.backoff(attempts, retryAfter, jitter)
}
