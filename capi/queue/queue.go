// Package queue owns the durable store of events waiting for delivery: one partition per platform,
// ordered by (not-before time, sequence), with leases for the delivery workers, dead letters, and
// the 48-hour deduplication of (platform, event name, event ID).
//
// It must not talk to an ad platform, decide retry policy or know a platform's rules: the delivery
// package leases events, sends them and settles each one here (acknowledged, rescheduled with a
// not-before time, or dead-lettered with the platform's reason). An event leaves the queue only when
// it is settled as delivered or dropped from the dead letters, so a crash between lease and
// settlement delivers it again: at-least-once, with the event ID unchanged.
//
// Bolt implements Queue: embedded, on a bbolt file shared with the visitor store, with a write-ahead
// log beside it that makes an enqueue durable in one shared fdatasync and in which events wait for
// delivery; bbolt holds the partitions' positions in the log, the events that wait longer (retries,
// replays, a log grown too long) and the dead letters (resident.go). The interface is kept small
// enough for a second implementation on Redis for cluster mode (not built yet: `storage redis` is
// refused at provision); the suite in package queuetest is what any implementation must pass.
package queue

import (
	"context"
	"errors"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/event"
)

// DedupWindow is how long the same (platform, event name, event ID) is refused by Enqueue. It is
// longer than any page reload, webhook retry or postback delay that carries one conversion twice.
const DedupWindow = 48 * time.Hour

// ErrClosed is returned by every method called after Close.
var ErrClosed = errors.New("queue: closed")

// Queue is the durable event queue the request path appends to and the delivery workers drain.
// Implementations are safe for concurrent use.
type Queue interface {
	// Enqueue appends events for one platform and returns how many were new, the others being
	// duplicates of a (platform, event name, event ID) enqueued within DedupWindow. When it returns
	// without error the new events are durable (on disk, fsync'd). It never waits on a platform.
	// An event without a name or an ID is refused with an error and nothing of the call is stored.
	Enqueue(ctx context.Context, platformName string, events ...event.Event) (int, error)

	// Lease takes up to max events of the platform that are due (not-before at or before now) and
	// not leased already, oldest due first. A leased event stays in the queue until it is settled
	// or released; leases do not survive a restart, so events leased by a process that died are
	// due again when the queue is reopened.
	Lease(ctx context.Context, platformName string, max int) ([]Item, error)
	// Settle records what became of leased events, all in one durable write, and ends their
	// leases. Settling an event that is no longer in the queue is a no-op.
	Settle(ctx context.Context, platformName string, settlements ...Settlement) error
	// Release ends leases without changing the events, which are due again at once. Workers use
	// it for a batch they abandon (shutdown in the middle of a send).
	Release(platformName string, receipts ...string)

	// Stats reports the depth of every platform's partition.
	Stats(ctx context.Context) (map[string]PartitionStats, error)
	// DeadLetters lists up to limit dead letters of the platform whose ID sorts after the given
	// one ("" for the first page), oldest first.
	DeadLetters(ctx context.Context, platformName, after string, limit int) ([]DeadLetter, error)
	// Replay moves dead letters back into the queue, due now with their attempts reset, and returns
	// how many it moved. Without IDs it replays all of the platform's dead letters.
	Replay(ctx context.Context, platformName string, ids ...string) (int, error)
	// Drop deletes dead letters for good and returns how many it deleted. Without IDs it deletes all
	// of the platform's dead letters.
	Drop(ctx context.Context, platformName string, ids ...string) (int, error)

	// Close finishes pending writes and stops the queue's goroutines. It does not close the
	// storage it was given.
	Close() error
}

// Item is a leased event.
type Item struct {
	// Receipt identifies this lease of the event to Settle and Release.
	Receipt string
	// Event is the event as it was enqueued.
	Event event.Event
	// Enqueued is when the event entered the queue (or was last replayed).
	Enqueued time.Time
	// Attempts counts the sends that failed so far.
	Attempts int
	// LastReason is the platform's explanation of the last failed send, empty before the first.
	LastReason string
}

// Outcome is how a leased event is settled.
type Outcome int

const (
	// Ack removes a delivered event from the queue.
	Ack Outcome = iota
	// Reschedule keeps the event, due again at NotBefore.
	Reschedule
	// Bury moves the event to the dead letters with Reason.
	Bury
)

// Settlement says what became of one leased event.
type Settlement struct {
	// Receipt is the Item's.
	Receipt string
	Outcome Outcome
	// NotBefore is when a rescheduled event is due again.
	NotBefore time.Time
	// Attempts is the event's failed sends including this one (Reschedule and Bury).
	Attempts int
	// Reason is the platform's explanation (Reschedule and Bury), with no secret in it.
	Reason string
}

// DeadLetter is an event that will not be sent again unless replayed.
type DeadLetter struct {
	// ID identifies the dead letter to Replay and Drop.
	ID       string      `json:"id"`
	Platform string      `json:"platform"`
	Event    event.Event `json:"event"`
	// Reason is the platform's explanation, or why the event was not sent.
	Reason string `json:"reason"`
	// Attempts counts the sends that failed.
	Attempts int `json:"attempts"`
	// Enqueued is when the event entered the queue; Buried when it became a dead letter.
	Enqueued time.Time `json:"enqueued"`
	Buried   time.Time `json:"buried"`
}

// PartitionStats is the state of one platform's partition.
type PartitionStats struct {
	// Depth counts events waiting for delivery, leased ones included.
	Depth int `json:"depth"`
	// Leased counts events this process is sending right now.
	Leased int `json:"leased"`
	// DeadLetters counts the dead letters.
	DeadLetters int `json:"dead_letters"`
}
