package harness

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// ModulePath is the Go module path of this repository.
const ModulePath = "github.com/caddy-capi/caddy-capi"

// BinaryEnv names an environment variable that, when set, points at a prebuilt binary to test
// instead of building one.
const BinaryEnv = "CAPI_CADDY_BINARY"

// RequireServicesEnv names the environment variable that turns "service missing" skips into
// failures (CI sets CAPI_REQUIRE_SERVICES=1, so that in CI nothing skips silently).
const RequireServicesEnv = "CAPI_REQUIRE_SERVICES"

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error

	modulesOnce sync.Once
	modulesOut  string
	modulesErr  error

	rootOnce sync.Once
	rootDir  string
	rootErr  error
)

// Binary returns the path of the caddy binary built from this checkout (`go build -o <tmp>/caddy
// ./xcaddy` in the repository root), building it on the first call of the test process. A build
// failure fails the test with the compiler's output.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if bin := os.Getenv(BinaryEnv); bin != "" {
			buildBin = bin
			return
		}
		root, err := repoRoot()
		if err != nil {
			buildErr = err
			return
		}
		buildDir, err = os.MkdirTemp("", "capi-harness-")
		if err != nil {
			buildErr = err
			return
		}
		buildBin = filepath.Join(buildDir, "caddy")
		start := time.Now()
		cmd := exec.Command("go", "build", "-o", buildBin, "./xcaddy")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build -o %s ./xcaddy: %w\n%s", buildBin, err, out)
			return
		}
		fmt.Fprintf(os.Stderr, "harness: built %s in %v\n", buildBin, time.Since(start).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatalf("harness: %v", buildErr)
	}
	return buildBin
}

// Main runs the tests of a package that uses the harness and removes the binary built for them.
// Use it from TestMain: func TestMain(m *testing.M) { harness.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// ListModules returns the module IDs `caddy list-modules` prints for the built binary.
func ListModules(t testing.TB) []string {
	t.Helper()
	bin := Binary(t)
	modulesOnce.Do(func() {
		out, err := exec.Command(bin, "list-modules").CombinedOutput()
		modulesOut = string(out)
		if err != nil {
			modulesErr = fmt.Errorf("%s list-modules: %w\n%s", bin, err, out)
		}
	})
	if modulesErr != nil {
		t.Fatalf("harness: %v", modulesErr)
	}
	return parseModules(modulesOut)
}

// parseModules reads the module IDs out of list-modules output, which also holds blank lines and
// summaries such as "  Standard modules: 130".
func parseModules(out string) []string {
	var ids []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.Contains(line, ":") {
			continue
		}
		id, _, _ := strings.Cut(line, " ")
		ids = append(ids, id)
	}
	return ids
}

// MissingModules returns which of Modules the list lacks.
func MissingModules(listed []string) []string {
	have := map[string]bool{}
	for _, id := range listed {
		have[id] = true
	}
	var missing []string
	for _, id := range Modules {
		if !have[id] {
			missing = append(missing, id)
		}
	}
	return missing
}

func requireModules(t testing.TB, bin string) {
	t.Helper()
	if missing := MissingModules(ListModules(t)); len(missing) > 0 {
		t.Fatalf("harness: %s lacks the modules %v: is %s/caddymodule written, and does xcaddy/main.go import it?",
			bin, missing, ModulePath)
	}
}

// RepoRoot returns the absolute path of the repository root (the directory of the go.mod that
// declares ModulePath), found by walking up from the test's working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	return root
}

func repoRoot() (string, error) {
	rootOnce.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			rootErr = err
			return
		}
		for {
			data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
			if err == nil && strings.Contains(string(data), "module "+ModulePath+"\n") {
				rootDir = dir
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				rootErr = fmt.Errorf("no go.mod of module %s above the working directory", ModulePath)
				return
			}
			dir = parent
		}
	})
	return rootDir, rootErr
}

var (
	portsMu sync.Mutex
	given   = map[int]bool{}
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and that this process has not
// handed out before.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("harness: find a free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		portsMu.Lock()
		fresh := !given[port]
		given[port] = true
		portsMu.Unlock()
		if fresh {
			return port
		}
	}
	t.Fatalf("harness: no fresh free port after 100 tries")
	return 0
}

// RequireService handles a test dependency on something the machine may lack (Chromium, Redis, the
// module proxy): when err is nil it does nothing; otherwise it skips the test with a loud message,
// or fails it when CAPI_REQUIRE_SERVICES=1 (as in CI), where nothing may skip.
func RequireService(t testing.TB, service string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv(RequireServicesEnv) == "1" {
		t.Fatalf("REQUIRED SERVICE MISSING: %s: %v (%s=1)", service, err, RequireServicesEnv)
	}
	t.Skipf("SKIPPED — %s IS MISSING: %v. Install it, or set %s=1 to make this a failure.", strings.ToUpper(service), err, RequireServicesEnv)
}
