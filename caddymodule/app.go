package caddymodule

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the `capi` app: the platforms, storage and delivery settings shared by every site, set
// with the `capi` global option. Sites use it through the `capi` handler.
//
// The storage (and, once attached, the queue and its workers) outlives config reloads: it lives in
// a caddy.UsagePool keyed by the storage's identity, and a new config takes it over from the old
// one without reopening the database.
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

	storageKey  string
	storage     *sharedStorage
	acquired    bool
	lockTimeout time.Duration
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

	if resolved.sink != nil {
		a.logger.Warn("events are recorded to the sink instead of being sent; the sink is not written yet in this build",
			zap.String("sink", resolved.sink.Path))
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

// Start opens the storage, if no earlier config already did, and installs this config's settings.
// On a reload the new config's Start runs before the old config's Stop; the storage is shared
// through the pool, so it is not opened twice.
func (a *App) Start() error {
	if err := a.storage.open(a.lockTimeout, a.resolved.visitorTTL); err != nil {
		return err
	}
	a.previous = a.storage.settings.Swap(a.resolved)
	a.started = true
	a.logger.Info("capi started",
		zap.String("storage", a.storageKey),
		zap.Strings("platforms", a.resolved.platforms()))
	return nil
}

// Stop puts back the settings that Start replaced, if ours are still installed: that happens when
// our Start succeeded but a sibling app's failed, so the previous config keeps running. On a
// normal reload the next config's settings are installed already and Stop leaves them alone.
func (a *App) Stop() error {
	if a.started {
		a.storage.settings.CompareAndSwap(a.resolved, a.previous)
		a.started = false
	}
	return nil
}

// Cleanup releases this config's reference on the shared storage, exactly once. The last
// reference closes it. Cleanup also runs after a failed Provision, hence the acquired flag.
func (a *App) Cleanup() error {
	if !a.acquired {
		return nil
	}
	a.acquired = false
	_, err := storages.Delete(a.storageKey)
	if err != nil {
		return fmt.Errorf("capi: releasing storage %s: %v", a.storageKey, err)
	}
	return nil
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
