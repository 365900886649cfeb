// Package platform defines what the delivery workers need of an ad platform: a Sender that turns a
// batch of neutral events into one request and classifies the answer. The meta, tiktok and google
// packages implement it; the queue's workers use it. It holds no platform's specifics.
package platform

import (
	"context"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/event"
)

// Names of the platforms, used as queue partitions, metric labels and config keys.
const (
	Meta   = "meta"
	TikTok = "tiktok"
	Google = "google"
)

// Outcome classifies what became of an event or a batch.
type Outcome int

const (
	// Delivered: the platform accepted it.
	Delivered Outcome = iota
	// Retry: a transient failure (network, timeout, 5xx, 429, throttling); send again later with the
	// same event ID.
	Retry
	// Permanent: the platform refused it for a reason that retrying will not fix (invalid payload,
	// bad credentials); it goes to the dead letters with Reason.
	Permanent
)

func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "delivered"
	case Retry:
		return "retry"
	case Permanent:
		return "permanent"
	}
	return "unknown"
}

// Result is what one Send of a batch came to.
type Result struct {
	// Outcome applies to every event of the batch not listed in Events.
	Outcome Outcome
	// RetryAfter is the platform's hint (Retry-After) for Outcome Retry; 0 when it gave none.
	RetryAfter time.Duration
	// Reason is the platform's explanation, with no secret in it (tokens are redacted).
	Reason string
	// WholeBatch reports that the platform refused the batch as a whole for a reason that may lie in
	// one event (Meta rejects a whole batch for one invalid event): the worker splits the batch to
	// isolate it rather than dead-lettering every event.
	WholeBatch bool
	// Events holds per-event outcomes that differ from Outcome, by index into the batch (Google's
	// partial failures, or the event a platform named as the offender).
	Events map[int]EventResult
}

// EventResult is the outcome of one event of a batch.
type EventResult struct {
	Outcome Outcome
	Reason  string
}

// Sender sends batches of events to one platform. Implementations are safe for concurrent use.
type Sender interface {
	// Platform is one of Meta, TikTok, Google.
	Platform() string
	// MaxBatch is the largest batch the platform accepts in one request.
	MaxBatch() int
	// MaxAge is the oldest event the platform accepts; older events are dead-lettered unsent.
	MaxAge() time.Duration
	// Send delivers one batch (at most MaxBatch events) and classifies the answer. It never returns
	// an error: network errors and timeouts are Outcome Retry.
	Send(ctx context.Context, events []event.Event) Result
}
