// Package integration holds the end-to-end tests: they build the real caddy binary, run it on
// loopback with generated Caddyfiles against the strict fake platforms (integration/fakes) and a
// headless Chromium (integration/browser), and check what users and platforms see.
package integration

import (
	"testing"

	"github.com/caddy-capi/caddy-capi/integration/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }
