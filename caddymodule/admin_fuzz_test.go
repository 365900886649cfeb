package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// FuzzAdminRequests sends arbitrary bodies and query strings to the admin routes of a running app:
// a route never panics, and whatever it refuses it refuses as a caddy.APIError with a client
// error status, never as a server error.
func FuzzAdminRequests(f *testing.F) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	path := filepath.Join(f.TempDir(), "capi.db")
	a := &App{
		Storage:      &StorageConfig{Path: path},
		Meta:         &MetaConfig{PixelID: "1234567890", AccessToken: "t", TestEventCode: "TEST1"},
		lockTimeout:  time.Second,
		holdDelivery: true,
	}
	if err := a.Provision(ctx); err != nil {
		f.Fatal(err)
	}
	defer a.Cleanup()
	if err := a.Start(); err != nil {
		f.Fatal(err)
	}
	defer a.Stop()
	sel := "storage=" + url.QueryEscape(path)

	for _, seed := range []struct{ body, query string }{
		{`{"platform":"meta","ids":["1"]}`, "platform=meta&limit=5"},
		{`{"platform":"meta","all":true}`, "platform=tiktok&cursor=00000001"},
		{`{"visitor_id":"abcdefghijklmnopqrstuvwx"}`, "platform=google&limit=1000"},
		{`{"event":"Lead"}`, "limit=-1"},
		{`{"platform":"meta","ids":[""]}{}`, "cursor=%zz"},
		{`[]`, ""},
	} {
		f.Add(seed.body, seed.query)
	}
	api := AdminAPI{}
	routes := []struct {
		method string
		h      func(http.ResponseWriter, *http.Request) error
	}{
		{http.MethodGet, api.handleDeadLetters},
		{http.MethodGet, api.handleQueue},
		{http.MethodPost, api.handleReplay},
		{http.MethodPost, api.handleDrop},
		{http.MethodPost, api.handleErase},
		{http.MethodPost, api.handleTestEvent},
	}
	f.Fuzz(func(t *testing.T, body, query string) {
		for _, r := range routes {
			req := httptest.NewRequest(r.method, "/capi/x", strings.NewReader(body))
			req.URL.RawQuery = query + "&" + sel
			err := r.h(httptest.NewRecorder(), req)
			if err == nil {
				continue
			}
			var apiErr caddy.APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("%s with %q ?%s: %v is not a caddy.APIError", r.method, body, query, err)
			}
			if apiErr.HTTPStatus < 400 || apiErr.HTTPStatus >= 500 {
				t.Fatalf("%s with %q ?%s: status %d: %v", r.method, body, query, apiErr.HTTPStatus, apiErr.Err)
			}
		}
	})
}
