package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/integration/harness"
)

// xcaddyVersion is the xcaddy the README's build instructions are checked with.
const xcaddyVersion = "v0.4.5"

// TestXcaddyBuildListsModules builds Caddy the way the README tells users to, with xcaddy from the
// Go module proxy against this checkout, and checks that the result lists the capi modules.
// Following spec/caddy-module.md §4.3, the sub-package is named with --with and the checkout
// replaces the module with --replace; the build runs with GOPROXY=off after `go mod download`,
// because the module path is not published.
func TestXcaddyBuildListsModules(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Caddy with xcaddy; skipped with -short")
	}
	root := harness.RepoRoot(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	runAt := func(dir string, env []string, name string, args ...string) (string, error) {
		start := time.Now()
		out, err := runIn(ctx, dir, env, name, args...)
		t.Logf("%s %s: %v (%v)", name, strings.Join(args, " "), errOrOK(err), time.Since(start).Round(time.Millisecond))
		return out, err
	}
	run := func(env []string, name string, args ...string) (string, error) {
		return runAt(root, env, name, args...)
	}

	if out, err := run(nil, "go", "mod", "download"); err != nil {
		harness.RequireService(t, "the Go module proxy (go mod download)", fmt.Errorf("%w\n%s", err, out))
	}
	caddyVersion, err := run(nil, "go", "list", "-m", "-f", "{{.Version}}", "github.com/caddyserver/caddy/v2")
	if err != nil {
		t.Fatalf("go list caddy version: %v\n%s", err, caddyVersion)
	}
	caddyVersion = strings.TrimSpace(caddyVersion)
	// xcaddy first pins Caddy alone in a fresh module, which needs the versions of Caddy's own
	// go.mod; fetch them now, since the build itself runs without the proxy.
	warm := t.TempDir()
	for _, args := range [][]string{{"mod", "init", "xcaddy-warm"}, {"get", "github.com/caddyserver/caddy/v2@" + caddyVersion}} {
		if out, err := runAt(warm, nil, "go", args...); err != nil {
			harness.RequireService(t, "the Go module proxy (Caddy's dependencies)", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out))
		}
	}
	out, err := run([]string{"GOBIN=" + dir}, "go", "install", "github.com/caddyserver/xcaddy/cmd/xcaddy@"+xcaddyVersion)
	if err != nil {
		harness.RequireService(t, "the Go module proxy (xcaddy "+xcaddyVersion+")", fmt.Errorf("%w\n%s", err, out))
	}
	bin := filepath.Join(dir, "caddy")
	out, err = run([]string{"GOPROXY=off"},
		filepath.Join(dir, "xcaddy"), "build", caddyVersion,
		"--output", bin,
		"--with", harness.ModulePath+"/caddymodule",
		"--replace", harness.ModulePath+"="+root)
	if err != nil {
		t.Fatalf("xcaddy build: %v\n%s", err, out)
	}
	list, err := exec.CommandContext(ctx, bin, "list-modules").CombinedOutput()
	if err != nil {
		t.Fatalf("list-modules: %v\n%s", err, list)
	}
	have := map[string]bool{}
	for _, line := range strings.Split(string(list), "\n") {
		have[strings.TrimSpace(line)] = true
	}
	for _, id := range harness.Modules {
		if !have[id] {
			t.Errorf("the xcaddy build does not list %s:\n%s", id, list)
		}
	}
}

func runIn(ctx context.Context, dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	// The go command's own children may hold the output pipe after a timeout kills it.
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func errOrOK(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}
