package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
)

func TestAdminStatusReportsStorageAndPlatforms(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capi.db")
	a := provisioned(t, path, func(a *App) {
		a.Sink = &SinkConfig{Type: "file", Path: filepath.Join(t.TempDir(), "events.jsonl")}
		a.Meta = &MetaConfig{PixelID: "1234567890"}
		a.TikTok = &TikTokConfig{PixelCode: "C4ABCDEFGH12"}
	})
	defer a.Cleanup()

	status := func() storageStatus {
		t.Helper()
		w := httptest.NewRecorder()
		if err := (AdminAPI{}).handleStatus(w, httptest.NewRequest(http.MethodGet, "/capi/status", nil)); err != nil {
			t.Fatal(err)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		var resp statusResponse
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
		for _, s := range resp.Storages {
			if s.Path == path {
				return s
			}
		}
		t.Fatalf("storage %s missing from %s", path, w.Body)
		return storageStatus{}
	}

	if s := status(); s.Open || s.Started {
		t.Errorf("before Start: %+v", s)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	s := status()
	if !s.Open || !s.Started || s.Backend != "bolt" || len(s.Platforms) != 2 || s.Platforms[0] != "meta" || s.Platforms[1] != "tiktok" || s.Sink == "" {
		t.Errorf("after Start: %+v", s)
	}
	a.Stop()
	if s := status(); s.Started {
		t.Errorf("after Stop: %+v", s)
	}
}

func TestAdminStatusRefusesWrites(t *testing.T) {
	err := (AdminAPI{}).handleStatus(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/capi/status", nil))
	if err == nil {
		t.Fatal("POST accepted")
	}
}
