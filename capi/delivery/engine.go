// Package delivery owns the workers that drain the queue into the ad platforms: per-platform
// batching, retries with exponential backoff and full jitter (honouring Retry-After), splitting a
// batch a platform refused as a whole to isolate the bad event, dead-lettering events past the age a
// platform accepts, and the counters behind the admin routes and metrics.
//
// It must not know a platform's payloads or answers (platform.Sender classifies them), nor
// Prometheus or Caddy: an Observer receives the measurements and the Caddy glue maps them to
// metrics. Workers live on the Engine's own lifetime, never a request's or a config's context.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/platform"
	"github.com/caddy-capi/caddy-capi/capi/queue"
)

// ReasonTooOld is the dead-letter reason of an event older than its platform accepts.
const ReasonTooOld = "older than the platform accepts"

// Settings are the `delivery` options of the Caddyfile.
type Settings struct {
	// Workers is how many workers send to each platform concurrently. Default: 1.
	Workers int
	// Batch is the most events sent in one request, capped by each Sender's MaxBatch. Default: the
	// Sender's MaxBatch.
	Batch int
	// Flush is the longest an event waits for its batch to fill. Default: 1s.
	Flush time.Duration
	// GiveUp is, per platform, the age (since the event happened) after which an undelivered event
	// goes to the dead letters instead of being retried. Default, and upper bound: just under the
	// Sender's MaxAge.
	GiveUp map[string]time.Duration
	// RetryBase is the first retry's backoff ceiling, doubled on each later attempt (with full
	// jitter). Default: the Engine's Options.BackoffBase.
	RetryBase time.Duration
	// RetryMax caps the backoff between two attempts; a platform's Retry-After may still ask for
	// longer. Default: the Engine's Options.BackoffCap.
	RetryMax time.Duration
}

// Validate reports impossible settings without touching anything.
func (s Settings) Validate() error {
	if s.Workers < 0 {
		return fmt.Errorf("delivery: workers %d is negative", s.Workers)
	}
	if s.Batch < 0 {
		return fmt.Errorf("delivery: batch %d is negative", s.Batch)
	}
	if s.Flush < 0 {
		return fmt.Errorf("delivery: flush %v is negative", s.Flush)
	}
	for p, d := range s.GiveUp {
		if d <= 0 {
			return fmt.Errorf("delivery: give_up %v for %s must be positive", d, p)
		}
	}
	if s.RetryBase < 0 {
		return fmt.Errorf("delivery: retry_base %v is negative", s.RetryBase)
	}
	if s.RetryMax < 0 {
		return fmt.Errorf("delivery: retry_max %v is negative", s.RetryMax)
	}
	if s.RetryBase > 0 && s.RetryMax > 0 && s.RetryMax < s.RetryBase {
		return fmt.Errorf("delivery: retry_max %v is shorter than retry_base %v", s.RetryMax, s.RetryBase)
	}
	return nil
}

// Observer receives what the workers do, per platform, so the Caddy glue can map it to metrics.
// Its methods are called from the workers and must not block.
type Observer interface {
	// Enqueued counts new (not deduplicated) events appended to the queue.
	Enqueued(platformName string, n int)
	// Delivered counts events the platform accepted.
	Delivered(platformName string, n int)
	// Retried counts events rescheduled after a transient failure.
	Retried(platformName string, n int)
	// DeadLettered counts events moved to the dead letters.
	DeadLettered(platformName string, n int)
	// DeliveryLatency observes, for each delivered event, the time from enqueue to acceptance.
	DeliveryLatency(platformName string, d time.Duration)
	// QueueDepth reports how many events wait for the platform.
	QueueDepth(platformName string, depth int)
}

// EventObserver is optional for an Observer: one that implements it also receives the events a
// platform accepted, for measures that need their contents, such as which matching signals they
// carried. The engine calls DeliveredEvents after Delivered, once the acceptance is settled in the
// queue, so an event retried or dead-lettered never reaches it and an event whose settlement
// failed (and will be sent again) reaches it only when finally settled.
//
// The events are the engine's own, passed by pointer because an Event is about a kilobyte and a
// round may settle a thousand: the observer may read them during the call only, must not keep or
// modify them, and must not block.
type EventObserver interface {
	DeliveredEvents(platformName string, events []*event.Event)
}

// Options configure an Engine. The zero value is ready to use.
type Options struct {
	// Observer receives counters and latencies, and the accepted events when it also implements
	// EventObserver. Default: none.
	Observer Observer
	// Now returns the current time. Default: time.Now.
	Now func() time.Time
	// Rand returns a uniform number in [0, 1) for the backoff jitter. Default: math/rand/v2.
	Rand func() float64
	// BackoffBase and BackoffCap bound the exponential backoff. Default: 1s and 10m.
	BackoffBase, BackoffCap time.Duration
	// Poll is how often an idle worker looks for rescheduled events that became due. Default: 500ms.
	Poll time.Duration
	// DeadLetterSweep is how often dead letters past their platform's maximum event age, plus
	// DeadLetterGrace, are dropped (ExpireDeadLetters). Default: 1h.
	DeadLetterSweep time.Duration
}

// DeadLetterGrace is how long a dead letter is kept once its event is too old for its platform to
// accept (replaying it could only bury it again): a week to read why it failed. After that it is
// dropped, with the IP address, user agent and hashed customer data it carries: DESIGN §9 keeps
// those no longer than the visitor record that holds them, and a dead letter was never meant to
// be an archive.
const DeadLetterGrace = 7 * 24 * time.Hour

// Config is one installed set of senders and settings; SetSenders returns it so that a caller can
// restore the previous one with CompareAndSwap.
type Config struct {
	settings  Settings
	platforms map[string]*platformConfig
}

type platformConfig struct {
	sender platform.Sender
	batch  int
	flush  time.Duration
	maxAge time.Duration // the platform's
	giveUp time.Duration // from the settings; 0 when unset
}

// Engine runs the per-platform workers over one queue.
type Engine struct {
	q   queue.Queue
	obs Observer
	// eventObs is obs when it implements EventObserver, else nil, so that a round collects the
	// accepted events only for an observer that wants them.
	eventObs EventObserver
	now      func() time.Time
	rand     func() float64
	base     time.Duration
	cap      time.Duration
	poll     time.Duration

	cfg atomic.Pointer[Config]

	// ctx is the workers' lifetime, cancelled only when Close gives up waiting for in-flight sends.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex // guards workers and closed
	workers map[string][]*worker
	closed  bool
	wakeups sync.Map      // platform name → *wakeup
	exited  chan struct{} // signalled whenever a worker exits

	counters sync.Map // platform name → *counters

	depthDone chan struct{}
	sweep     time.Duration
}

type worker struct {
	platform string
	stop     atomic.Bool
}

type counters struct {
	enqueued, delivered, retried, deadLettered atomic.Uint64
	running                                    atomic.Int64

	mu            sync.Mutex
	lastDelivery  time.Time
	lastFailure   string
	lastFailureAt time.Time
}

// New returns an Engine over q with no senders; SetSenders starts the workers.
func New(q queue.Queue, opts Options) *Engine {
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Float64
	}
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = time.Second
	}
	if opts.BackoffCap <= 0 {
		opts.BackoffCap = 10 * time.Minute
	}
	if opts.Poll <= 0 {
		opts.Poll = 500 * time.Millisecond
	}
	if opts.DeadLetterSweep <= 0 {
		opts.DeadLetterSweep = time.Hour
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{
		q:         q,
		obs:       opts.Observer,
		now:       opts.Now,
		rand:      opts.Rand,
		base:      opts.BackoffBase,
		cap:       opts.BackoffCap,
		poll:      opts.Poll,
		ctx:       ctx,
		cancel:    cancel,
		workers:   make(map[string][]*worker),
		exited:    make(chan struct{}, 1),
		depthDone: make(chan struct{}),
		sweep:     opts.DeadLetterSweep,
	}
	e.eventObs, _ = opts.Observer.(EventObserver)
	e.cfg.Store(&Config{platforms: map[string]*platformConfig{}})
	go e.reportDepth()
	return e
}

// SetSenders installs senders (keyed by platform name) and settings while the workers run: each
// worker picks them up before its next batch, platforms gain or lose workers to match
// Settings.Workers, and platforms absent from senders stop being drained (their events stay
// queued). It returns the installed Config and the one it replaced.
func (e *Engine) SetSenders(senders map[string]platform.Sender, s Settings) (installed, previous *Config) {
	c := newConfig(senders, s)
	previous = e.cfg.Swap(c)
	e.reconcile()
	return c, previous
}

// CompareAndSwap installs next if old is still installed, as a config whose start failed puts the
// previous config back without undoing a newer one.
func (e *Engine) CompareAndSwap(old, next *Config) bool {
	if !e.cfg.CompareAndSwap(old, next) {
		return false
	}
	e.reconcile()
	return true
}

func newConfig(senders map[string]platform.Sender, s Settings) *Config {
	c := &Config{settings: s, platforms: make(map[string]*platformConfig, len(senders))}
	for name, snd := range senders {
		batch := snd.MaxBatch()
		if s.Batch > 0 && s.Batch < batch {
			batch = s.Batch
		}
		flush := s.Flush
		if flush <= 0 {
			flush = time.Second
		}
		c.platforms[name] = &platformConfig{
			sender: snd,
			batch:  max(batch, 1),
			flush:  flush,
			maxAge: snd.MaxAge(),
			giveUp: s.GiveUp[name],
		}
	}
	return c
}

// reconcile makes the running workers match the installed config: no platform ever has more
// workers alive than the larger of its old and new counts, because a worker told to stop counts
// until it has exited (it finishes its send first) and is asked to carry on if wanted again.
func (e *Engine) reconcile() {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.cfg.Load()
	for name := range e.workers {
		if _, ok := c.platforms[name]; !ok || e.closed {
			e.resize(name, 0)
		}
	}
	if e.closed {
		return
	}
	workers := max(c.settings.Workers, 1)
	for name := range c.platforms {
		e.resize(name, workers)
	}
}

// resize is called with e.mu held.
func (e *Engine) resize(name string, want int) {
	ws := e.workers[name]
	for i, w := range ws {
		w.stop.Store(i >= want)
	}
	for range want - len(ws) {
		w := &worker{platform: name}
		ws = append(ws, w)
		e.count(name).running.Add(1)
		go e.work(w)
	}
	e.workers[name] = ws
	e.notify(name)
}

// wakeup lets an Enqueue wake the platform's idle workers without a lock on the request path
// when none is waiting.
type wakeup struct {
	mu    sync.Mutex
	ch    chan struct{}
	armed atomic.Bool // a worker holds ch, so the next broadcast must close it
}

func (e *Engine) wakeup(name string) *wakeup {
	if w, ok := e.wakeups.Load(name); ok {
		return w.(*wakeup)
	}
	w, _ := e.wakeups.LoadOrStore(name, &wakeup{})
	return w.(*wakeup)
}

// wait returns a channel closed by the next broadcast. Workers take it before they lease, so an
// event committed after their lease looked wakes them.
func (w *wakeup) wait() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	w.armed.Store(true)
	return w.ch
}

func (w *wakeup) broadcast() {
	if !w.armed.Load() {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
	w.armed.Store(false)
}

func (e *Engine) notify(name string) { e.wakeup(name).broadcast() }

func (e *Engine) count(name string) *counters {
	if c, ok := e.counters.Load(name); ok {
		return c.(*counters)
	}
	c, _ := e.counters.LoadOrStore(name, &counters{})
	return c.(*counters)
}

// Enqueue appends events for one platform to the queue (durably, never waiting on the platform)
// and wakes its workers. It returns how many events were new; see queue.Queue.Enqueue.
func (e *Engine) Enqueue(ctx context.Context, platformName string, events ...event.Event) (int, error) {
	n, err := e.q.Enqueue(ctx, platformName, events...)
	if n > 0 {
		e.count(platformName).enqueued.Add(uint64(n))
		e.obs.Enqueued(platformName, n)
		e.notify(platformName)
	}
	return n, err
}

// work is one worker's loop: lease up to a batch, wait for the batch to fill until the oldest
// event has waited Flush, send, settle.
func (e *Engine) work(w *worker) {
	var held []queue.Item
	defer func() {
		if len(held) > 0 {
			e.q.Release(w.platform, receiptsOf(held)...)
		}
		e.workerExited(w)
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var lastLease time.Time
	for !w.stop.Load() && e.ctx.Err() == nil {
		pc := e.cfg.Load().platforms[w.platform]
		if pc == nil {
			return
		}
		wake := e.wakeup(w.platform).wait()
		wait := e.poll
		// While a partial batch fills, every enqueue would wake the worker into a lease that
		// walks past the events it holds; it looks again only every tenth of the flush interval.
		step := min(max(pc.flush/10, time.Millisecond), 100*time.Millisecond)
		room := pc.batch - len(held)
		if room > 0 && (len(held) == 0 || e.now().Sub(lastLease) >= step) {
			// A closed queue is an engine being torn down: the worker waits for Close rather
			// than exit and be replaced.
			more, err := e.q.Lease(e.ctx, w.platform, room)
			lastLease = e.now()
			if err != nil {
				if !errors.Is(err, queue.ErrClosed) && e.ctx.Err() == nil {
					e.noteFailure(w.platform, err.Error())
				}
			} else {
				held = append(held, more...)
			}
		}
		if len(held) > 0 {
			due := fillDeadline(held, pc.flush)
			if len(held) >= pc.batch || !e.now().Before(due) {
				e.deliver(pc, w.platform, held)
				held = nil
				continue
			}
			wait = min(wait, due.Sub(e.now()), lastLease.Add(step).Sub(e.now()))
			wake = nil
		}
		timer.Reset(wait)
		select {
		case <-wake:
		case <-timer.C:
		case <-e.ctx.Done():
		}
	}
}

func (e *Engine) workerExited(w *worker) {
	e.mu.Lock()
	ws := e.workers[w.platform]
	for i, x := range ws {
		if x == w {
			ws = append(ws[:i:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(e.workers, w.platform)
	} else {
		e.workers[w.platform] = ws
	}
	e.mu.Unlock()
	e.count(w.platform).running.Add(-1)
	select {
	case e.exited <- struct{}{}:
	default:
	}
	// A worker that stopped on its own (platform removed, queue closed) may leave a platform
	// short if it was wanted again meanwhile.
	e.reconcile()
}

// fillDeadline is when a partial batch goes out: once its oldest event has waited flush, at once
// when it holds a retry (which waited its backoff already).
func fillDeadline(items []queue.Item, flush time.Duration) time.Time {
	t := items[0].Enqueued
	for _, it := range items {
		if it.Attempts > 0 {
			return time.Time{}
		}
		if it.Enqueued.Before(t) {
			t = it.Enqueued
		}
	}
	return t.Add(flush)
}

func receiptsOf(items []queue.Item) []string {
	r := make([]string, len(items))
	for i, it := range items {
		r[i] = it.Receipt
	}
	return r
}

// outcome is what became of one leased event in one delivery round.
type outcome struct {
	item       queue.Item
	outcome    platform.Outcome
	reason     string
	retryAfter time.Duration
}

// deliver sends items (in chunks of the platform's batch size, which may have shrunk since they
// were leased) and settles every one of them in one write.
func (e *Engine) deliver(pc *platformConfig, name string, items []queue.Item) {
	now := e.now()
	var out []outcome
	var fresh []queue.Item
	for _, it := range items {
		if reason, ok := pc.expired(it, now); ok {
			out = append(out, outcome{item: it, outcome: platform.Permanent, reason: reason})
			continue
		}
		fresh = append(fresh, it)
	}
	for len(fresh) > 0 {
		n := min(len(fresh), pc.batch)
		out = e.send(pc.sender, fresh[:n], out)
		fresh = fresh[n:]
	}
	e.settle(name, out)
}

// expired reports whether an event is too old to send, and the dead-letter reason.
func (pc *platformConfig) expired(it queue.Item, now time.Time) (string, bool) {
	happened := it.Event.Time
	if happened.IsZero() {
		happened = it.Enqueued
	}
	age := now.Sub(happened)
	// Just under the platform's limit: an event sent at the limit would arrive past it.
	limit := pc.maxAge - pc.maxAge/100
	if pc.maxAge > 0 && age > limit {
		return ReasonTooOld, true
	}
	if pc.giveUp > 0 && age > pc.giveUp {
		reason := fmt.Sprintf("not delivered within give_up %v", pc.giveUp)
		if it.LastReason != "" {
			reason += "; last failure: " + it.LastReason
		}
		return reason, true
	}
	return "", false
}

// send sends one batch and appends each event's outcome to out. A batch refused as a whole for
// what may be one event's fault is resent without the events the platform named, or else in
// halves, until the offenders stand alone.
func (e *Engine) send(s platform.Sender, items []queue.Item, out []outcome) []outcome {
	evs := make([]event.Event, len(items))
	for i, it := range items {
		evs[i] = it.Event
	}
	res := s.Send(e.ctx, evs)
	if res.WholeBatch && res.Outcome == platform.Permanent && len(items) > 1 && e.ctx.Err() == nil {
		var named, rest []queue.Item
		for i, it := range items {
			if r, ok := res.Events[i]; ok && r.Outcome == platform.Permanent {
				named = append(named, it)
				out = append(out, outcome{item: it, outcome: platform.Permanent, reason: r.Reason})
			} else {
				rest = append(rest, it)
			}
		}
		if len(named) > 0 && len(rest) > 0 {
			return e.send(s, rest, out)
		}
		out = out[:len(out)-len(named)]
		mid := len(items) / 2
		out = e.send(s, items[:mid], out)
		return e.send(s, items[mid:], out)
	}
	for i, it := range items {
		o := outcome{item: it, outcome: res.Outcome, reason: res.Reason, retryAfter: res.RetryAfter}
		if r, ok := res.Events[i]; ok {
			o.outcome, o.reason = r.Outcome, r.Reason
		}
		out = append(out, o)
	}
	return out
}

// settle writes the outcomes of one round. Events whose send was cut short by Close are released
// rather than rescheduled: they stay due, untouched, for the next start.
func (e *Engine) settle(name string, out []outcome) {
	aborted := e.ctx.Err() != nil
	now := e.now()
	// One jitter for the round keeps a failed batch together when it comes due again.
	jitter := e.rand()
	var ss []queue.Settlement
	var released []string
	var delivered, retried, buried int
	var latencies []time.Duration
	var accepted []*event.Event
	if e.eventObs != nil {
		accepted = make([]*event.Event, 0, len(out))
	}
	var lastFailure string
	for i := range out {
		o := &out[i]
		s := queue.Settlement{Receipt: o.item.Receipt, Attempts: o.item.Attempts + 1, Reason: o.reason}
		switch o.outcome {
		case platform.Delivered:
			s.Outcome, s.Attempts, s.Reason = queue.Ack, o.item.Attempts, ""
			delivered++
			latencies = append(latencies, now.Sub(o.item.Enqueued))
			if e.eventObs != nil {
				accepted = append(accepted, &o.item.Event)
			}
		case platform.Retry:
			if aborted {
				released = append(released, o.item.Receipt)
				continue
			}
			s.Outcome = queue.Reschedule
			s.NotBefore = now.Add(e.backoff(s.Attempts, o.retryAfter, jitter))
			retried++
			lastFailure = o.reason
		default:
			s.Outcome = queue.Bury
			buried++
			lastFailure = o.reason
		}
		ss = append(ss, s)
	}
	e.q.Release(name, released...)
	if err := e.q.Settle(context.Background(), name, ss...); err != nil {
		// The leases ended: the events are due again and will be sent again, with their IDs.
		e.noteFailure(name, err.Error())
		return
	}
	c := e.count(name)
	if delivered > 0 {
		c.delivered.Add(uint64(delivered))
		e.obs.Delivered(name, delivered)
		for _, l := range latencies {
			e.obs.DeliveryLatency(name, l)
		}
		if e.eventObs != nil {
			e.eventObs.DeliveredEvents(name, accepted)
		}
		c.mu.Lock()
		c.lastDelivery = now
		c.mu.Unlock()
	}
	if retried > 0 {
		c.retried.Add(uint64(retried))
		e.obs.Retried(name, retried)
	}
	if buried > 0 {
		c.deadLettered.Add(uint64(buried))
		e.obs.DeadLettered(name, buried)
	}
	if lastFailure != "" {
		e.noteFailure(name, lastFailure)
	}
	if st, err := e.q.Stats(context.Background()); err == nil {
		e.obs.QueueDepth(name, st[name].Depth)
	}
}

// backoff is exponential with full jitter, never shorter than the platform's Retry-After. The
// installed settings' RetryBase and RetryMax, when set, replace the Engine's defaults, so a config
// reload changes the backoff of retries scheduled after it.
func (e *Engine) backoff(attempts int, retryAfter time.Duration, jitter float64) time.Duration {
	base, ceiling := e.base, e.cap
	s := e.cfg.Load().settings
	if s.RetryBase > 0 {
		base = s.RetryBase
	}
	if s.RetryMax > 0 {
		ceiling = s.RetryMax
	}
	d := ceiling
	if shift := attempts - 1; shift < 32 {
		if b := base << shift; b > 0 && b < ceiling {
			d = b
		}
	}
	d = time.Duration(jitter * float64(d))
	return max(d, retryAfter)
}

func (e *Engine) noteFailure(name, reason string) {
	c := e.count(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastFailure, c.lastFailureAt = reason, e.now()
}

// reportDepth keeps the queue-depth gauge current while nothing is delivered (an outage, a
// platform without a sender).
func (e *Engine) reportDepth() {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	sweep := time.NewTicker(e.sweep)
	defer sweep.Stop()
	for {
		select {
		case <-e.depthDone:
			return
		case <-sweep.C:
			e.ExpireDeadLetters(e.ctx) // an error leaves them for the next sweep
		case <-t.C:
			st, err := e.q.Stats(context.Background())
			if err != nil {
				continue
			}
			for name, s := range st {
				e.obs.QueueDepth(name, s.Depth)
			}
		}
	}
}

// deadLetterPage is how many dead letters ExpireDeadLetters reads at a time.
const deadLetterPage = 500

// ExpireDeadLetters drops, for every platform with a sender, the dead letters whose event is older
// than the platform's maximum age plus DeadLetterGrace, and returns how many it dropped. The
// engine runs it every Options.DeadLetterSweep.
func (e *Engine) ExpireDeadLetters(ctx context.Context) (int, error) {
	now := e.now()
	dropped := 0
	for name, pc := range e.cfg.Load().platforms {
		if pc.maxAge <= 0 {
			continue
		}
		cutoff := now.Add(-pc.maxAge - DeadLetterGrace)
		n, err := e.dropDeadLettersWhere(ctx, name, func(d queue.DeadLetter) bool {
			happened := d.Event.Time
			if happened.IsZero() {
				happened = d.Enqueued
			}
			return happened.Before(cutoff)
		})
		dropped += n
		if err != nil {
			return dropped, fmt.Errorf("delivery: expire %s dead letters: %w", name, err)
		}
	}
	return dropped, nil
}

// DropDeadLettersOf drops every platform's dead letters whose event carries externalID (a
// visitor's hashed ID, event.User.ExternalID), for a visitor's erasure, and returns how many it
// dropped. Events still waiting for delivery are left to be sent.
func (e *Engine) DropDeadLettersOf(ctx context.Context, externalID string) (int, error) {
	if externalID == "" {
		return 0, errors.New("delivery: drop dead letters of a visitor: no external ID")
	}
	stats, err := e.q.Stats(ctx)
	if err != nil {
		return 0, fmt.Errorf("delivery: drop dead letters of a visitor: %w", err)
	}
	dropped := 0
	for name, st := range stats {
		if st.DeadLetters == 0 {
			continue
		}
		n, err := e.dropDeadLettersWhere(ctx, name, func(d queue.DeadLetter) bool {
			return d.Event.User.ExternalID == externalID
		})
		dropped += n
		if err != nil {
			return dropped, fmt.Errorf("delivery: drop %s dead letters of a visitor: %w", name, err)
		}
	}
	return dropped, nil
}

// dropDeadLettersWhere reads a platform's dead letters a page at a time and drops those drop
// selects.
func (e *Engine) dropDeadLettersWhere(ctx context.Context, name string, drop func(queue.DeadLetter) bool) (int, error) {
	dropped := 0
	for after := ""; ; {
		page, err := e.q.DeadLetters(ctx, name, after, deadLetterPage)
		if err != nil {
			return dropped, err
		}
		var ids []string
		for _, d := range page {
			if drop(d) {
				ids = append(ids, d.ID)
			}
		}
		if len(ids) > 0 {
			n, err := e.q.Drop(ctx, name, ids...)
			dropped += n
			if err != nil {
				return dropped, err
			}
		}
		if len(page) < deadLetterPage {
			return dropped, nil
		}
		after = page[len(page)-1].ID
	}
}

// PlatformStats is one platform's delivery state, for the admin API.
type PlatformStats struct {
	queue.PartitionStats
	// Workers counts the workers running for the platform.
	Workers int `json:"workers"`
	// Enqueued, Delivered, Retried and DeadLettered count events since the engine started.
	Enqueued     uint64 `json:"enqueued"`
	Delivered    uint64 `json:"delivered"`
	Retried      uint64 `json:"retried"`
	DeadLettered uint64 `json:"dead_lettered"`
	// LastDelivery is when the platform last accepted an event.
	LastDelivery time.Time `json:"last_delivery,omitzero"`
	// LastFailure is the platform's reason for the last failed send, and LastFailureAt its time.
	LastFailure   string    `json:"last_failure,omitempty"`
	LastFailureAt time.Time `json:"last_failure_at,omitzero"`
}

// Stats reports every platform known to the queue or the engine.
func (e *Engine) Stats(ctx context.Context) (map[string]PlatformStats, error) {
	qs, err := e.q.Stats(ctx)
	if err != nil {
		return nil, fmt.Errorf("delivery: stats: %w", err)
	}
	out := make(map[string]PlatformStats, len(qs))
	for name, s := range qs {
		out[name] = PlatformStats{PartitionStats: s}
	}
	for k, v := range e.counters.Range {
		name, c := k.(string), v.(*counters)
		ps := out[name]
		ps.Workers = int(c.running.Load())
		ps.Enqueued, ps.Delivered = c.enqueued.Load(), c.delivered.Load()
		ps.Retried, ps.DeadLettered = c.retried.Load(), c.deadLettered.Load()
		c.mu.Lock()
		ps.LastDelivery, ps.LastFailure, ps.LastFailureAt = c.lastDelivery, c.lastFailure, c.lastFailureAt
		c.mu.Unlock()
		out[name] = ps
	}
	return out, nil
}

// DeadLetters lists the platform's dead letters; see queue.Queue.DeadLetters.
func (e *Engine) DeadLetters(ctx context.Context, platformName, after string, limit int) ([]queue.DeadLetter, error) {
	return e.q.DeadLetters(ctx, platformName, after, limit)
}

// Replay puts dead letters back into the queue (all of the platform's without IDs) and wakes the
// platform's workers.
func (e *Engine) Replay(ctx context.Context, platformName string, ids ...string) (int, error) {
	n, err := e.q.Replay(ctx, platformName, ids...)
	if n > 0 {
		e.notify(platformName)
	}
	return n, err
}

// Drop deletes dead letters for good (all of the platform's without IDs).
func (e *Engine) Drop(ctx context.Context, platformName string, ids ...string) (int, error) {
	return e.q.Drop(ctx, platformName, ids...)
}

// Close stops the workers from taking new batches and waits for in-flight sends to finish and be
// settled. When ctx ends first it cancels those sends; their events are released, still queued,
// and Close returns ctx's error once the workers have exited. The queue stays open: it is the
// caller's to close afterwards.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	e.reconcile()
	close(e.depthDone)
	var err error
	done := ctx.Done()
	for {
		e.mu.Lock()
		n := len(e.workers)
		e.mu.Unlock()
		if n == 0 {
			e.cancel()
			return err
		}
		select {
		case <-e.exited:
		case <-done:
			err = fmt.Errorf("delivery: close: abandoned in-flight sends: %w", ctx.Err())
			e.cancel()
			done = nil
		case <-time.After(50 * time.Millisecond):
			// exited holds one signal: recheck in case two workers left at once.
		}
	}
}

type nopObserver struct{}

func (nopObserver) Enqueued(string, int)                  {}
func (nopObserver) Delivered(string, int)                 {}
func (nopObserver) Retried(string, int)                   {}
func (nopObserver) DeadLettered(string, int)              {}
func (nopObserver) DeliveryLatency(string, time.Duration) {}
func (nopObserver) QueueDepth(string, int)                {}
