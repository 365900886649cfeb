package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.etcd.io/bbolt"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/queue"
)

func newTestContext(t *testing.T) caddy.Context {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	return ctx
}

// provisioned provisions an app on the storage path, as a config load does.
func provisioned(t *testing.T, path string, configure func(*App)) *App {
	t.Helper()
	a := &App{Storage: &StorageConfig{Path: path}, lockTimeout: 300 * time.Millisecond}
	if configure != nil {
		configure(a)
	}
	if err := a.Provision(newTestContext(t)); err != nil {
		t.Fatalf("provision: %v", err)
	}
	if err := a.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	return a
}

// withDeadline fails the test if f does not return in time: a second bbolt open of a locked file
// blocks, and a reload must never wait on one.
func withDeadline(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("lifecycle step hung")
	}
}

func TestReloadSharesOneDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capi.db")

	old := provisioned(t, path, nil)
	if err := old.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	db, q := old.storage.db, old.storage.queue
	if db == nil || q == nil || old.storage.visitors == nil {
		t.Fatal("start did not open the database, the queue and the visitor store")
	}

	// A reload: the new config is provisioned and started before the old one stops and is
	// cleaned up, and it changes a setting, which must not change the pool key.
	var next *App
	withDeadline(t, func() {
		next = provisioned(t, path, func(a *App) {
			a.Sink = &SinkConfig{Type: "file", Path: filepath.Join(t.TempDir(), "events.jsonl")}
			a.Meta = &MetaConfig{PixelID: "1234567890"}
		})
		if err := next.Start(); err != nil {
			t.Errorf("start of the new config: %v", err)
		}
	})
	if next.storage != old.storage || next.storage.db != db || next.storage.queue != q {
		t.Fatal("the new config opened the database a second time instead of sharing it")
	}
	if n, _ := storages.References(path); n != 2 {
		t.Fatalf("references during the reload = %d, want 2", n)
	}
	if got := next.storage.settings.Load(); got != next.resolved {
		t.Fatal("the new config's settings are not installed after its Start")
	}

	withDeadline(t, func() {
		if err := old.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
		if err := old.Cleanup(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if got := next.storage.settings.Load(); got != next.resolved {
		t.Fatal("stopping the old config replaced the new config's settings")
	}
	if n, _ := storages.References(path); n != 1 {
		t.Fatalf("references after the old cleanup = %d, want 1", n)
	}
	// The queue keeps working for the running config after the old one is gone.
	ev := event.Event{Name: "Purchase", ID: "order-1", Time: time.Now(), ActionSource: event.ActionWebsite}
	if n, err := q.Enqueue(context.Background(), "meta", ev); err != nil || n != 1 {
		t.Fatalf("enqueue after the old config's cleanup: %d, %v", n, err)
	}

	if err := next.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := next.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if err := next.Cleanup(); err != nil {
		t.Fatalf("a second cleanup must be harmless: %v", err)
	}
	if n, _ := storages.References(path); n != 0 {
		t.Fatalf("references after the last cleanup = %d, want 0", n)
	}
	if _, err := q.Enqueue(context.Background(), "meta", ev); !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("the last cleanup left the queue open: %v", err)
	}

	// The last release closed the file and its lock; a restart finds the enqueued event.
	restarted := provisioned(t, path, nil)
	defer restarted.Cleanup()
	withDeadline(t, func() {
		if err := restarted.Start(); err != nil {
			t.Errorf("the lock was not released by the last cleanup: %v", err)
		}
	})
	stats, err := restarted.storage.queue.Stats(context.Background())
	if err != nil || stats["meta"].Depth != 1 {
		t.Fatalf("after a restart the queue holds %+v, %v; want the one meta event", stats, err)
	}
	restarted.Stop()
}

// TestValidateNeverOpensStorage does what `caddy validate` does (Provision, Validate, Cleanup)
// beside a "running server" that holds the bbolt lock, and on a path that does not exist yet.
func TestValidateNeverOpensStorage(t *testing.T) {
	t.Run("locked by a running server", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "capi.db")
		running, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer running.Close()
		withDeadline(t, func() {
			a := provisioned(t, path, nil)
			if err := a.Cleanup(); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})
	})
	t.Run("nothing created", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		path := filepath.Join(dir, "capi.db")
		a := provisioned(t, path, nil)
		if err := a.Cleanup(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("validation touched the storage directory: %v", err)
		}
	})
	t.Run("through caddy.Validate", func(t *testing.T) {
		dir := t.TempDir()
		t.Setenv("XDG_DATA_HOME", dir)
		t.Setenv("XDG_CONFIG_HOME", dir)
		path := filepath.Join(dir, "capi", "capi.db")
		cfg := &caddy.Config{
			Admin: &caddy.AdminConfig{Disabled: true},
			AppsRaw: caddy.ModuleMap{
				"capi": json.RawMessage(`{"storage":{"path":` + quote(path) + `},"meta":{"pixel_id":"1234567890","access_token":"t"}}`),
				"http": json.RawMessage(`{"servers":{"s":{"listen":["127.0.0.1:0"],"routes":[{"handle":[{"handler":"capi","pixels":["meta"]}]}]}}}`),
			},
		}
		if err := caddy.Validate(cfg); err != nil {
			t.Fatalf("validate: %v", err)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("caddy.Validate created the database: %v", err)
		}
		if n, _ := storages.References(path); n != 0 {
			t.Fatalf("caddy.Validate left %d references on the storage", n)
		}
	})
}

func TestStartReportsLockedStorage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capi.db")
	other, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	a := provisioned(t, path, nil)
	defer a.Cleanup()
	var startErr error
	withDeadline(t, func() { startErr = a.Start() })
	if startErr == nil {
		t.Fatal("start succeeded on a file locked by another process")
	}
	for _, want := range []string{path, "locked by another process", "storage bolt <path>"} {
		if !strings.Contains(startErr.Error(), want) {
			t.Errorf("error %q does not mention %q", startErr, want)
		}
	}
}

// TestStopRestoresSettingsWhenReloadFails: the new config started, a sibling app failed, so Caddy
// stops the new config and the old one keeps running with its own settings.
func TestStopRestoresSettingsWhenReloadFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capi.db")
	old := provisioned(t, path, nil)
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { old.Stop(); old.Cleanup() }()

	failed := provisioned(t, path, func(a *App) { a.DefaultCountry = "US" })
	if err := failed.Start(); err != nil {
		t.Fatal(err)
	}
	failed.Stop()
	failed.Cleanup()

	if got := old.storage.settings.Load(); got != old.resolved {
		t.Fatal("the old config's settings were not restored after the new config failed")
	}
	if old.storage.db == nil {
		t.Fatal("the failed config closed the database the old config still uses")
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestProvisionErrorsNameDirectivePath covers what only provision time can check: placeholders
// and JSON configs that never went through the Caddyfile parser.
func TestProvisionErrorsNameDirectivePath(t *testing.T) {
	t.Setenv("CAPI_TEST_EMPTY", "")
	t.Setenv("CAPI_TEST_PIXEL_LETTERS", "12ab")
	tests := []struct {
		name string
		json string
		want string
	}{
		{"unset token", `{"meta":{"pixel_id":"1234567890","access_token":"{env.CAPI_TEST_EMPTY}"}}`,
			"capi.meta.access_token: {env.CAPI_TEST_EMPTY} resolved to an empty value"},
		{"pixel ID from env not numeric", `{"meta":{"pixel_id":"{env.CAPI_TEST_PIXEL_LETTERS}","access_token":"t"}}`,
			"capi.meta.pixel_id: the value of {env.CAPI_TEST_PIXEL_LETTERS}: expected the numeric pixel ID"},
		{"missing secret file", `{"tiktok":{"pixel_code":"C4ABCDEFGH12","access_token":"{file./nonexistent/capi-token}"}}`,
			"capi.tiktok.access_token"},
		{"malformed placeholder in JSON", `{"google_ads":{"tag_id":"AW-123456789","customer_id":"1234567890","developer_token":"{env.X","client_id":"c","client_secret":"s","refresh_token":"r","conversions":[{"event":"Purchase","action_id":"1"}]}}`,
			"capi.google_ads.developer_token: has a malformed placeholder"},
		{"redis", `{"storage":{"backend":"redis","url":"redis://127.0.0.1:6379"}}`,
			"capi.storage: redis: not implemented yet"},
		{"unknown backend", `{"storage":{"backend":"sqlite"}}`, "capi.storage.backend: expected bolt or redis"},
		{"bad country in JSON", `{"default_country":"USA"}`, "capi.default_country: expected an ISO 3166-1 alpha-2"},
		{"bad delivery in JSON", `{"delivery":{"batch":99999}}`, "capi.delivery.batch: expected a batch size from 1 to 2000"},
		{"bad regexp in JSON", `{"consent":{"require":{"cookie":"c","pattern":"("}}}`, "capi.consent.require.pattern"},
		{"bad Google conversion in JSON", `{"google_ads":{"tag_id":"AW-123456789","conversions":[{"event":"Purchase","action_id":"x1","label":"l"}]}}`,
			"capi.google_ads.conversions[0].action_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var a App
			if err := json.Unmarshal([]byte(tc.json), &a); err != nil {
				t.Fatal(err)
			}
			if a.Storage == nil {
				a.Storage = &StorageConfig{Path: filepath.Join(t.TempDir(), "capi.db")}
			}
			err := a.Provision(newTestContext(t))
			if err == nil {
				t.Fatalf("provision accepted %s", tc.json)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q, want it to contain %q", err, tc.want)
			}
			if err := a.Cleanup(); err != nil {
				t.Errorf("cleanup after a failed provision: %v", err)
			}
		})
	}
}

func TestProvisionResolvesPlaceholdersWithoutRewritingConfig(t *testing.T) {
	t.Setenv("CAPI_TEST_TOKEN", "EAAB-token")
	t.Setenv("CAPI_TEST_PIXEL", "1234567890")
	a := provisioned(t, filepath.Join(t.TempDir(), "capi.db"), func(a *App) {
		a.Meta = &MetaConfig{PixelID: "{env.CAPI_TEST_PIXEL}", AccessToken: "{env.CAPI_TEST_TOKEN}"}
	})
	defer a.Cleanup()
	if a.resolved.meta.AccessToken != "EAAB-token" || a.resolved.meta.PixelID != "1234567890" {
		t.Errorf("resolved meta = %+v", a.resolved.meta)
	}
	if a.Meta.AccessToken != "{env.CAPI_TEST_TOKEN}" {
		t.Error("provision wrote the secret back into the config, where the admin API would show it")
	}
	if a.resolved.visitorTTL != DefaultVisitorTTL || a.resolved.storage.Backend != backendBolt {
		t.Errorf("defaults not applied: %+v", a.resolved)
	}
}

func TestDefaultStoragePathIsUnderCaddyDataDir(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_DATA_HOME", dir)
	a := &App{}
	r, err := a.resolve(caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "caddy", "capi", "capi.db"); r.storage.Path != want {
		t.Errorf("default path = %s, want %s", r.storage.Path, want)
	}
}
