package caddymodule

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-capi/caddy-capi/capi/store"
)

// Why the edge writes visitor records in the background:
//
// A navigation's identity (click IDs, browser cookies, IP, user agent, last page) belongs in the
// visitor record, but a bbolt write is an fsync, and a request must not wait for the disk on every
// page. So the request path only hands a job to a background writer: one goroutine per storage
// (bbolt serializes writers anyway) behind a bounded channel. The job reads the record (from the
// store's in-memory cache, usually) and writes only when something changed: a new visitor, a new
// click ID, new cookie values, a new IP, user agent or locale, a new cart token, a new page when the
// last write is older than pageURLRefresh, or a record older than visitorRefresh, which keeps the
// visitor_ttl sliding for a visitor who returns unchanged. A full channel drops the job and counts
// it (caddy_capi_background_writes_dropped_total); nothing is dropped silently.
//
// A new visitor always writes, so a burst of them (a campaign's landing page) is a burst of writes,
// and at one fsync each the writer would fall behind and drop. So the writer takes what is waiting
// (up to backgroundGroup jobs) at once, and a store that implements store.Batcher gets the visitor
// records of the group in one transaction, one fsync: the more jobs wait, the more share a sync, and
// the backlog cannot grow at the rate of the disk. While the groups come out large (a burst), the
// writer also lingers a few milliseconds for more jobs before it commits, since each transaction's
// cost is mostly per commit: a lone job is never delayed. A record whose change fails does not fail
// the others.
//
// What must be in the record before the response goes out is written on the request path instead:
// a captured form (the thank-you page that follows reads it), and the idempotency key of a
// conversion. Server-side PageViews go through the same writer: the page is already sent, and a
// PageView lost in a crash costs less than making every page wait for a queue commit.

// edgeWriters holds one backgroundWriter per storage identity (the storage's pool key), shared by
// the handlers of every config on that storage, so a reload hands pending jobs over instead of
// dropping them. A handler takes a reference in Provision and releases it in Cleanup.
var edgeWriters = caddy.NewUsagePool()

const (
	// backgroundQueueSize bounds the jobs waiting for the writer: at about a millisecond per
	// write, a second or two of backlog.
	backgroundQueueSize = 1024
	// backgroundGroup bounds the jobs the writer takes at once, and so the visitor records one
	// transaction carries.
	backgroundGroup = 256
	// backgroundBusy is the group size from which the writer counts as busy: the next group
	// lingers for more jobs (see linger).
	backgroundBusy = 8
	// backgroundLinger is how long a busy writer waits to fill a group: short against anything
	// that reads a visitor record (a postback, a conversion on a later page), long against a
	// commit.
	backgroundLinger = 25 * time.Millisecond
	// backgroundJobTimeout bounds one group of jobs, storage wait included.
	backgroundJobTimeout = 10 * time.Second
	// backgroundDrain is how long the last release lets waiting jobs finish.
	backgroundDrain = 3 * time.Second

	jobVisitor  = "visitor"
	jobPageView = "page_view"
)

// backgroundJob is either a job of its own (run) or a visitor record change to write with the others
// waiting (visit).
type backgroundJob struct {
	kind  string
	run   func(ctx context.Context) error
	visit func(ctx context.Context) (visitorWrite, error)
}

// visitorWrite is what a visitor job decided to write: one change to a record of visitors, or
// nothing when visitors is nil.
type visitorWrite struct {
	visitors store.Store
	change   store.Change
	// written, if set, runs once the change is durable.
	written func()
}

// backgroundWriter runs jobs off the request path, a group at a time, on its own lifetime: it ends
// in Destruct, never with a config's context.
type backgroundWriter struct {
	jobs   chan backgroundJob
	recent *recentVisits
	// accepted counts the jobs handed to the writer: what a page that skips it does not add to.
	accepted atomic.Uint64
	logger   *zap.Logger
	done     chan struct{}

	mu      sync.RWMutex
	stopped bool
	stop    context.CancelFunc
	ctx     context.Context
}

// newBackgroundWriter starts a writer. Its logger is Caddy's default one, not a config's: the writer
// outlives the config that created it.
func newBackgroundWriter() *backgroundWriter {
	ctx, cancel := context.WithCancel(context.Background())
	w := &backgroundWriter{
		jobs:   make(chan backgroundJob, backgroundQueueSize),
		recent: newRecentVisits(recentVisitsSize),
		logger: caddy.Log().Named("http.handlers.capi"),
		done:   make(chan struct{}),
		stop:   cancel,
		ctx:    ctx,
	}
	go w.loop()
	return w
}

// submit hands a job to the writer without waiting; a full queue or a stopped writer drops it and
// counts the drop.
func (w *backgroundWriter) submit(kind string, run func(ctx context.Context) error) bool {
	return w.enqueue(backgroundJob{kind: kind, run: run})
}

// submitVisitor hands the writer a visitor job: decide reads the record and returns the change to
// write, if any, which the writer writes together with the other visitor changes waiting. Like
// submit it never waits.
func (w *backgroundWriter) submitVisitor(decide func(ctx context.Context) (visitorWrite, error)) bool {
	return w.enqueue(backgroundJob{kind: jobVisitor, visit: decide})
}

func (w *backgroundWriter) enqueue(j backgroundJob) bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if !w.stopped {
		select {
		case w.jobs <- j:
			w.accepted.Add(1)
			return true
		default:
		}
	}
	edgeStats().backgroundDropped.WithLabelValues(j.kind).Inc()
	return false
}

func (w *backgroundWriter) loop() {
	defer close(w.done)
	group := make([]backgroundJob, 0, backgroundGroup)
	busy := false
	for {
		select {
		case j := <-w.jobs:
			group = w.gather(append(group[:0], j))
			if busy {
				group = w.linger(group)
			}
			busy = len(group) >= backgroundBusy
			w.runGroup(context.Background(), group)
		case <-w.ctx.Done():
			// No job can be submitted any more; finish the waiting ones within the drain time.
			drain, cancel := context.WithTimeout(context.Background(), backgroundDrain)
			defer cancel()
			for {
				group = w.gather(group[:0])
				if len(group) == 0 {
					return
				}
				if drain.Err() != nil {
					for _, j := range group {
						edgeStats().backgroundDropped.WithLabelValues(j.kind).Inc()
					}
					continue
				}
				w.runGroup(drain, group)
			}
		}
	}
}

// gather adds the jobs already waiting to group, up to backgroundGroup, without waiting for more.
func (w *backgroundWriter) gather(group []backgroundJob) []backgroundJob {
	for len(group) < backgroundGroup {
		select {
		case j := <-w.jobs:
			group = append(group, j)
		default:
			return group
		}
	}
	return group
}

// linger adds the jobs that arrive within backgroundLinger to group, up to backgroundGroup. The
// loop calls it only while jobs arrive faster than groups commit (the last group was large): then
// waiting a little makes the next group larger, and each visitor record cheaper, while a lone job
// is never delayed.
func (w *backgroundWriter) linger(group []backgroundJob) []backgroundJob {
	if len(group) >= backgroundGroup {
		return group
	}
	t := time.NewTimer(backgroundLinger)
	defer t.Stop()
	for len(group) < backgroundGroup {
		select {
		case j := <-w.jobs:
			group = append(group, j)
		case <-t.C:
			return group
		case <-w.ctx.Done():
			return group
		}
	}
	return group
}

// runGroup runs the jobs of a group: each visitor job decides its change, then the changes are
// written per store, in one UpdateMany where the store has it; the other jobs run after, in order.
func (w *backgroundWriter) runGroup(parent context.Context, group []backgroundJob) {
	ctx, cancel := context.WithTimeout(parent, backgroundJobTimeout)
	defer cancel()
	var writes []visitorWrite
	for _, j := range group {
		if j.visit == nil {
			continue
		}
		vw, err := j.visit(ctx)
		if err != nil {
			w.failed(j.kind, err)
			continue
		}
		if vw.visitors != nil {
			writes = append(writes, vw)
		}
	}
	for len(writes) > 0 {
		// One storage per writer in practice; grouping by store keeps a mixed group correct.
		visitors := writes[0].visitors
		var changes []store.Change
		var mine []visitorWrite
		rest := writes[:0]
		for _, vw := range writes {
			if vw.visitors == visitors {
				changes = append(changes, vw.change)
				mine = append(mine, vw)
			} else {
				rest = append(rest, vw)
			}
		}
		writes = rest
		for i, err := range writeVisitors(ctx, visitors, changes) {
			if err != nil {
				w.failed(jobVisitor, err)
			} else if mine[i].written != nil {
				mine[i].written()
			}
		}
	}
	for _, j := range group {
		if j.run == nil {
			continue
		}
		if err := j.run(ctx); err != nil {
			w.failed(j.kind, err)
		}
	}
}

// writeVisitors writes the changes in one transaction when the store can, else one Update each.
func writeVisitors(ctx context.Context, visitors store.Store, changes []store.Change) []error {
	if b, ok := visitors.(store.Batcher); ok && len(changes) > 1 {
		return b.UpdateMany(ctx, changes)
	}
	errs := make([]error, len(changes))
	for i, c := range changes {
		_, errs[i] = visitors.Update(ctx, c.ID, c.Fn)
	}
	return errs
}

func (w *backgroundWriter) failed(kind string, err error) {
	edgeStats().backgroundFailed.WithLabelValues(kind).Inc()
	if c := w.logger.Check(zap.WarnLevel, "capi background write failed"); c != nil {
		c.Write(zap.String("kind", kind), zap.Error(err))
	}
}

// Destruct stops taking jobs, lets the waiting ones finish within backgroundDrain, and returns once
// the goroutine has exited. The pool calls it when the last handler on the storage is cleaned up.
func (w *backgroundWriter) Destruct() error {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	w.stop()
	<-w.done
	w.recent.close()
	return nil
}

// Interface guards
var _ caddy.Destructor = (*backgroundWriter)(nil)
