package caddymodule

import (
	"context"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
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
	// backgroundJobTimeout bounds one job, storage wait included.
	backgroundJobTimeout = 10 * time.Second
	// backgroundDrain is how long the last release lets waiting jobs finish.
	backgroundDrain = 3 * time.Second

	jobVisitor  = "visitor"
	jobPageView = "page_view"
)

type backgroundJob struct {
	kind string
	run  func(ctx context.Context) error
}

// backgroundWriter runs jobs one at a time, off the request path, on its own lifetime: it ends in
// Destruct, never with a config's context.
type backgroundWriter struct {
	jobs   chan backgroundJob
	logger *zap.Logger
	done   chan struct{}

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
	w.mu.RLock()
	defer w.mu.RUnlock()
	if !w.stopped {
		select {
		case w.jobs <- backgroundJob{kind: kind, run: run}:
			return true
		default:
		}
	}
	edgeStats().backgroundDropped.WithLabelValues(kind).Inc()
	return false
}

func (w *backgroundWriter) loop() {
	defer close(w.done)
	for {
		select {
		case j := <-w.jobs:
			w.runJob(context.Background(), j)
		case <-w.ctx.Done():
			// No job can be submitted any more; finish the waiting ones within the drain time.
			drain, cancel := context.WithTimeout(context.Background(), backgroundDrain)
			defer cancel()
			for {
				select {
				case j := <-w.jobs:
					if drain.Err() != nil {
						edgeStats().backgroundDropped.WithLabelValues(j.kind).Inc()
						continue
					}
					w.runJob(drain, j)
				default:
					return
				}
			}
		}
	}
}

func (w *backgroundWriter) runJob(parent context.Context, j backgroundJob) {
	ctx, cancel := context.WithTimeout(parent, backgroundJobTimeout)
	defer cancel()
	if err := j.run(ctx); err != nil {
		edgeStats().backgroundFailed.WithLabelValues(j.kind).Inc()
		if c := w.logger.Check(zap.WarnLevel, "capi background write failed"); c != nil {
			c.Write(zap.String("kind", j.kind), zap.Error(err))
		}
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
	return nil
}

// Interface guards
var _ caddy.Destructor = (*backgroundWriter)(nil)
