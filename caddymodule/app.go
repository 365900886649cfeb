package caddymodule

import (
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-capi/caddy-capi/capi/delivery"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the `capi` app: the platforms, storage and delivery settings shared by every site, set
// with the `capi` global option. Sites use it through the `capi` handler.
//
// The storage, with the queue and its delivery workers, outlives config reloads: it lives in a
// caddy.UsagePool keyed by the storage's identity, and a new config takes it over from the old one
// without reopening the database. Each config only swaps in its own platform senders and delivery
// settings when it starts.
type App struct {
	// Storage says where visitors and the delivery queue are kept. Default: an embedded bbolt file
	// at capi/capi.db under Caddy's data directory.
	Storage *StorageConfig `json:"storage,omitempty"`

	// Sink, when set, records the payloads that would be sent instead of sending them. Default:
	// unset, and events are sent to the platforms.
	Sink *SinkConfig `json:"sink,omitempty"`

	// Meta configures the Meta Pixel and Conversions API. Default: unset, and nothing goes to Meta.
	Meta *MetaConfig `json:"meta,omitempty"`

	// TikTok configures the TikTok pixel and Events API. Default: unset, and nothing goes to
	// TikTok.
	TikTok *TikTokConfig `json:"tiktok,omitempty"`

	// GoogleAds configures the Google tag and Google Ads conversion uploads. Default: unset, and
	// nothing goes to Google.
	GoogleAds *GoogleAdsConfig `json:"google_ads,omitempty"`

	// Delivery tunes batching, concurrency and retries. Default: the delivery engine's defaults.
	Delivery *DeliveryConfig `json:"delivery,omitempty"`

	// VisitorTTL is how long a visitor's click IDs and hashed profile are kept after the last
	// visit. Default: 90 days.
	VisitorTTL caddy.Duration `json:"visitor_ttl,omitempty"`

	// DefaultCountry is the ISO 3166-1 alpha-2 country assumed for phone numbers and addresses that
	// lack one. Default: unset, and such phone numbers are sent only when they carry a country code.
	DefaultCountry string `json:"default_country,omitempty"`

	// Consent holds the consent rules of every site that has none of its own. Default: no consent
	// cookie required; Sec-GPC honoured.
	Consent *ConsentConfig `json:"consent,omitempty"`

	logger *zap.Logger

	// resolved is this config's settings with placeholders replaced, built in Provision and
	// installed into the shared storage in Start.
	resolved *resolvedConfig
	// previous is what Start replaced, put back by Stop if ours is still installed.
	previous *resolvedConfig
	started  bool
	// installed is the delivery config (senders and settings) Start gave the engine, and
	// previousDelivery the one it replaced.
	installed, previousDelivery *delivery.Config

	storageKey  string
	storage     *sharedStorage
	acquired    bool
	lockTimeout time.Duration

	// sinkKey is the sink file this config holds a reference on, empty when none.
	sinkKey string

	// holdDelivery makes Start install no senders, so that events stay queued where a test of the
	// request path can look at them; tests of delivery leave it false.
	holdDelivery bool
}

// DefaultVisitorTTL is how long visitors are kept when visitor_ttl is not set.
const DefaultVisitorTTL = 90 * 24 * time.Hour

// defaultLockTimeout bounds how long Start waits for the bbolt file lock: another process holding
// it is a misconfiguration to report, not to wait out.
const defaultLockTimeout = 5 * time.Second

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "capi",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision resolves placeholders, checks the configuration and takes a reference on the shared
// storage. It does no I/O on the storage, so `caddy validate` beside a running server never
// touches the database lock.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	registerMetrics(ctx.GetMetricsRegistry(), a.logger)
	if a.lockTimeout == 0 {
		a.lockTimeout = defaultLockTimeout
	}

	resolved, err := a.resolve(caddy.NewReplacer())
	if err != nil {
		return err
	}
	a.resolved = resolved

	if resolved.storage.Backend == backendRedis {
		return fmt.Errorf("capi.storage: redis: not implemented yet")
	}
	a.storageKey = resolved.storage.Path
	val, _, err := storages.LoadOrNew(a.storageKey, func() (caddy.Destructor, error) {
		return newSharedStorage(a.storageKey), nil
	})
	if err != nil {
		return fmt.Errorf("capi.storage: %v", err)
	}
	a.storage = val.(*sharedStorage)
	a.acquired = true

	// Build the senders once without a client, so that `caddy validate` refuses what they refuse;
	// Start builds the ones that send.
	if _, err := resolved.newSenders(nil); err != nil {
		return err
	}
	if resolved.sink != nil {
		a.logger.Warn("events are recorded to the sink file instead of being sent to the platforms",
			zap.String("sink", resolved.sink.Path))
	}
	if codes := resolved.testEventCodes(); len(codes) > 0 {
		names := make([]string, 0, len(codes))
		for name := range codes {
			names = append(names, name)
		}
		sort.Strings(names)
		a.logger.Warn("a test_event_code is configured: every event to these platforms goes out as a test event; never set it in production",
			zap.Strings("platforms", names))
	}
	return nil
}

// Validate checks what Provision could not: nothing beyond Provision's checks today, which already
// refused every impossible value. It does no I/O.
func (a *App) Validate() error {
	if a.resolved == nil {
		return fmt.Errorf("capi: not provisioned")
	}
	return nil
}

// Start opens the storage, if no earlier config already did, builds this config's platform
// senders and installs them, with the delivery settings, into the storage's delivery engine in one
// atomic swap. On a reload the new config's Start runs before the old config's Stop; the storage
// is shared through the pool, so it is not opened twice, and the engine's workers carry on with
// the new senders from their next batch.
func (a *App) Start() error {
	var client *http.Client
	if s := a.resolved.sink; s != nil {
		f, err := acquireSink(s.Path)
		if err != nil {
			return err
		}
		a.sinkKey = s.Path
		client = &http.Client{Transport: f.Transport(), Timeout: senderTimeout}
	}
	senders, err := a.resolved.newSenders(client)
	if err != nil {
		return err
	}
	if a.holdDelivery {
		clear(senders)
	}
	if err := a.storage.open(a.lockTimeout, a.resolved.visitorTTL); err != nil {
		return err
	}
	a.resolved.live.Store(true)
	a.installed, a.previousDelivery = a.storage.deliveryEngine().SetSenders(senders, a.resolved.retrySettings(a.resolved.deliverySettings(senders)))
	a.previous = a.storage.settings.Swap(a.resolved)
	a.started = true
	a.logger.Info("capi started",
		zap.String("storage", a.storageKey),
		zap.Strings("platforms", a.resolved.platforms()),
		zap.Int("senders", len(senders)))
	return nil
}

// Stop puts back the senders and settings that Start replaced, if ours are still installed and the
// config that installed them still runs: that happens when our Start succeeded but a sibling app's
// failed, so the previous config keeps running. On a normal reload the next config's are installed
// already and Stop leaves them alone. On shutdown no earlier config runs any more, so our senders
// stay installed for the drain in the storage's Destruct.
func (a *App) Stop() error {
	if !a.started {
		return nil
	}
	a.started = false
	a.resolved.live.Store(false)
	if a.previous != nil && a.previous.live.Load() {
		a.storage.deliveryEngine().CompareAndSwap(a.installed, a.previousDelivery)
		a.storage.settings.CompareAndSwap(a.resolved, a.previous)
		return nil
	}
	a.storage.settings.CompareAndSwap(a.resolved, nil)
	return nil
}

// Cleanup releases this config's references on the shared storage and on its sink file, exactly
// once. The last reference closes them: the storage first, so its drain still records to the sink.
// Cleanup also runs after a failed Provision, hence the acquired flag.
func (a *App) Cleanup() error {
	var err error
	if a.acquired {
		a.acquired = false
		if _, derr := storages.Delete(a.storageKey); derr != nil {
			err = fmt.Errorf("capi: releasing storage %s: %v", a.storageKey, derr)
		}
	}
	if a.sinkKey != "" {
		key := a.sinkKey
		a.sinkKey = ""
		if _, derr := sinks.Delete(key); derr != nil && err == nil {
			err = fmt.Errorf("capi: closing sink file %s: %v", key, derr)
		}
	}
	return err
}

// resolvedConfig is one config's settings, with placeholders replaced, defaults applied and every
// value checked. The platform clients are built from it.
type resolvedConfig struct {
	storage        StorageConfig
	sink           *SinkConfig
	meta           *MetaConfig
	tiktok         *TikTokConfig
	google         *GoogleAdsConfig
	delivery       DeliveryConfig
	visitorTTL     time.Duration
	defaultCountry string
	consent        ConsentConfig

	// live is true while the config that resolved these settings is started, so that a failed
	// reload's Stop puts them back only into a storage whose config still runs.
	live atomic.Bool
}

// platforms lists the configured platforms by their platform.* names.
func (r *resolvedConfig) platforms() []string {
	var p []string
	if r.meta != nil {
		p = append(p, "meta")
	}
	if r.tiktok != nil {
		p = append(p, "tiktok")
	}
	if r.google != nil {
		p = append(p, "google")
	}
	return p
}

const (
	backendBolt  = "bolt"
	backendRedis = "redis"
)

// defaultStoragePath is where the bbolt file lives when the config names none.
func defaultStoragePath() string {
	return filepath.Join(caddy.AppDataDir(), "capi", "capi.db")
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
