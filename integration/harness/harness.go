// Package harness runs the real caddy-capi binary for end-to-end tests: it builds the binary once per
// test process, starts it with a generated Caddyfile on free loopback ports, waits until it serves,
// captures its log, and stops it when the test ends.
//
// It owns the process and its files (config, data and working directories under t.TempDir). It must
// not reach beyond loopback, touch the user's ~/.local or ~/.config, or know anything of the module's
// internals: tests talk to the binary only through HTTP, the admin API, its log and its files.
package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// Modules are the module IDs the binary must provide for the product to work at all.
var Modules = []string{"capi", "http.handlers.capi", "admin.api.capi"}

// ReadyTimeout bounds how long Start waits for a new process to answer.
const ReadyTimeout = 30 * time.Second

// stopTimeout bounds how long a SIGTERM'd process may take to exit before it is killed.
const stopTimeout = 15 * time.Second

// Caddy is one running (or stopped) caddy process started by Start.
type Caddy struct {
	t    testing.TB
	bin  string
	opts options

	// Dir is the process's working directory, where relative paths in the Caddyfile (a `sink file
	// ./events.jsonl`) land. DataDir is XDG_DATA_HOME (Caddy's data dir is DataDir/caddy).
	Dir     string
	DataDir string

	site  int            // the main site's port, fixed at Start
	admin int            // the admin endpoint's port
	ports map[string]int // further named ports, guarded by mu

	mu         sync.Mutex
	caddyfile  string // the rendered Caddyfile in use
	cmd        *exec.Cmd
	exited     chan struct{}
	log        *logBuffer
	generation int
}

// Option changes how Start runs the process.
type Option func(*options)

type options struct {
	env     []string
	vars    map[string]any
	workDir string
	noCheck bool
}

// Env adds an environment variable (KEY=value) to the process, e.g. for `{$VAR}` or `{env.VAR}`
// placeholders in the Caddyfile.
func Env(key, value string) Option {
	return func(o *options) { o.env = append(o.env, key+"="+value) }
}

// Var makes value available to the Caddyfile template as {{.Vars.name}}, typically a fake
// platform's URL.
func Var(name string, value any) Option {
	return func(o *options) {
		if o.vars == nil {
			o.vars = map[string]any{}
		}
		o.vars[name] = value
	}
}

// WorkDir runs the process in dir instead of a fresh temporary directory.
func WorkDir(dir string) Option {
	return func(o *options) { o.workDir = dir }
}

// WithoutModuleCheck starts the binary even if it lacks the capi modules (for configs that do not
// use them).
func WithoutModuleCheck() Option {
	return func(o *options) { o.noCheck = true }
}

// Template is what a Caddyfile given to Start may refer to, as Go text/template fields and
// functions:
//
//	{{.Site}}         the main site address, http://127.0.0.1:<port>
//	{{.Addr}}         127.0.0.1:<port> of the main site; {{.Port}} the bare port
//	{{port "name"}}   another free loopback port, the same number for the same name
//	{{.Dir}}          the process's working directory (absolute)
//	{{.Repo}}         the repository root (absolute), e.g. {{.Repo}}/integration/demo
//	{{.Vars.name}}    a value given with Var
//
// The harness adds its own global options (admin endpoint, storage, ports for HTTP and HTTPS, no
// trust-store installation) to the Caddyfile's global options block, creating one if it has none.
type Template struct {
	Site string
	Addr string
	Port int
	Dir  string
	Repo string
	Vars map[string]any
}

// Start renders caddyfile (see Template), writes it under a temporary directory, starts the
// binary with `caddy run --config <file> --adapter caddyfile`, and waits until the admin endpoint
// answers and the main site port accepts connections. The process is stopped when the test ends.
// If it fails to start, the test fails with its log.
func Start(t testing.TB, caddyfile string, opts ...Option) *Caddy {
	t.Helper()
	bin := Binary(t)
	c := &Caddy{t: t, bin: bin, ports: map[string]int{}}
	for _, o := range opts {
		o(&c.opts)
	}
	if !c.opts.noCheck {
		requireModules(t, bin)
	}
	root := t.TempDir()
	c.Dir = c.opts.workDir
	if c.Dir == "" {
		c.Dir = filepath.Join(root, "work")
	}
	c.DataDir = filepath.Join(root, "data")
	for _, d := range []string{c.Dir, c.DataDir, filepath.Join(root, "config"), filepath.Join(root, "home")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("harness: %v", err)
		}
	}
	c.site = FreePort(t)
	c.admin = FreePort(t)
	c.ports["https"] = FreePort(t)

	text, err := c.render(caddyfile)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	c.caddyfile = text
	t.Cleanup(c.cleanup)
	if err := c.start(); err != nil {
		t.Fatalf("harness: %v", err)
	}
	return c
}

func (c *Caddy) root() string { return filepath.Dir(c.DataDir) }

// ConfigPath is where the rendered Caddyfile in use is written.
func (c *Caddy) ConfigPath() string { return filepath.Join(c.root(), "Caddyfile") }

// Caddyfile returns the rendered Caddyfile in use.
func (c *Caddy) Caddyfile() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.caddyfile
}

func (c *Caddy) render(caddyfile string) (string, error) {
	tmpl, err := template.New("Caddyfile").Option("missingkey=error").Funcs(template.FuncMap{
		"port": func(name string) int { return c.Port(name) },
	}).Parse(caddyfile)
	if err != nil {
		return "", fmt.Errorf("parse Caddyfile template: %w", err)
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, Template{
		Site: c.URL(""),
		Addr: c.Addr(),
		Port: c.site,
		Dir:  c.Dir,
		Repo: RepoRoot(c.t),
		Vars: c.opts.vars,
	}); err != nil {
		return "", fmt.Errorf("render Caddyfile template: %w", err)
	}
	global := fmt.Sprintf("\tadmin 127.0.0.1:%d\n\tstorage file_system %s\n\thttp_port %d\n\thttps_port %d\n\tskip_install_trust\n\tpersist_config off\n\tgrace_period 2s\n",
		c.admin, quote(filepath.Join(c.DataDir, "storage")), c.site, c.Port("https"))
	return withGlobalOptions(b.String(), global), nil
}

// withGlobalOptions puts lines at the start of the Caddyfile's global options block, or prepends a
// block holding them.
func withGlobalOptions(caddyfile, lines string) string {
	rest := caddyfile
	offset := 0
scan:
	for rest != "" {
		line, after, _ := strings.Cut(rest, "\n")
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "" || strings.HasPrefix(trimmed, "#"):
			offset += len(line) + 1
			rest = after
			continue
		case trimmed == "{":
			end := offset + len(line) + 1
			if end > len(caddyfile) {
				return caddyfile + "\n" + lines
			}
			return caddyfile[:end] + lines + caddyfile[end:]
		}
		break scan
	}
	return "{\n" + lines + "}\n\n" + caddyfile
}

func quote(s string) string {
	if strings.ContainsAny(s, " \t\"{}") {
		return strconv.Quote(s)
	}
	return s
}

func (c *Caddy) start() error {
	if err := os.WriteFile(c.ConfigPath(), []byte(c.caddyfile), 0o600); err != nil {
		return err
	}
	cmd := exec.Command(c.bin, "run", "--config", c.ConfigPath(), "--adapter", "caddyfile")
	cmd.Dir = c.Dir
	cmd.Env = append(filteredEnv(),
		"HOME="+filepath.Join(c.root(), "home"),
		"XDG_DATA_HOME="+c.DataDir,
		"XDG_CONFIG_HOME="+filepath.Join(c.root(), "config"),
	)
	cmd.Env = append(cmd.Env, c.opts.env...)
	c.mu.Lock()
	c.generation++
	if c.log == nil {
		c.log = newLogBuffer()
	}
	fmt.Fprintf(c.log, "--- harness: starting process #%d ---\n", c.generation)
	cmd.Stdout = c.log
	cmd.Stderr = c.log
	// Its own process group, so that a test runner's ^C does not leave it half-dead and Kill9 hits
	// only this process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		c.mu.Unlock()
		return fmt.Errorf("start %s: %w", c.bin, err)
	}
	exited := make(chan struct{})
	c.cmd, c.exited = cmd, exited
	gen := c.generation
	c.mu.Unlock()
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(c.log, "--- harness: process #%d exited: %v ---\n", gen, errOrOK(err))
		close(exited)
	}()
	return c.waitReady(cmd, exited)
}

func errOrOK(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// filteredEnv is the test's environment without what would make the process read the developer's
// own files.
func filteredEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "CADDYPATH":
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (c *Caddy) waitReady(cmd *exec.Cmd, exited chan struct{}) error {
	deadline := time.Now().Add(ReadyTimeout)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-exited:
			return fmt.Errorf("caddy exited before it was ready:\n%s", c.Log())
		default:
		}
		if c.adminReady(client) && c.siteReady() {
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("caddy not ready after %v (admin %s, site %s):\n%s", ReadyTimeout, c.AdminURL("/config/"), c.Addr(), c.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Caddy) adminReady(client *http.Client) bool {
	resp, err := client.Get(c.AdminURL("/config/"))
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (c *Caddy) siteReady() bool {
	conn, err := net.DialTimeout("tcp", c.Addr(), time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// Running reports whether the process is alive.
func (c *Caddy) Running() bool {
	c.mu.Lock()
	exited := c.exited
	c.mu.Unlock()
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// Stop ends the process gracefully (SIGTERM), killing it if it has not exited after 15 seconds, and
// fails the test if it had to be killed.
func (c *Caddy) Stop() {
	c.t.Helper()
	if killed := c.stop(); killed {
		c.notExited()
	}
}

// notExited fails the test for a process that had to be killed, with its whole log: it ends with
// the goroutine dump that stop asked for with SIGQUIT, which says where the shutdown hung.
func (c *Caddy) notExited() {
	c.t.Errorf("harness: caddy did not exit within %v of SIGTERM; killed it. Its log (%s):\n%s", stopTimeout, c.ConfigPath(), c.Log())
}

// stop sends SIGTERM and waits stopTimeout for the process to exit. Past that it sends SIGQUIT (the
// Go runtime then writes every goroutine's stack to the log and exits), and kills it if that does
// not end it within 2 seconds.
func (c *Caddy) stop() (killed bool) {
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.mu.Unlock()
	if cmd == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return false
	case <-time.After(stopTimeout):
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-exited:
		case <-time.After(2 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		return true
	}
}

// Kill9 kills the process with SIGKILL, as a crash would, and waits until it is gone.
func (c *Caddy) Kill9() {
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// Restart stops the process if it still runs (gracefully) and starts it again with the same
// Caddyfile, ports, data and working directory. The log keeps growing across restarts.
func (c *Caddy) Restart() {
	c.t.Helper()
	c.Stop()
	if err := c.start(); err != nil {
		c.t.Fatalf("harness: restart: %v", err)
	}
}

// Reload renders caddyfile like Start (same ports, same Vars) and loads it into the running process
// through the admin API (POST /load with the caddyfile adapter), as `caddy reload` does. It returns
// the admin API's error, if any, so tests can check that a bad config is refused.
func (c *Caddy) Reload(caddyfile string) error {
	c.t.Helper()
	text, err := c.render(caddyfile)
	if err != nil {
		c.t.Fatalf("harness: %v", err)
	}
	resp, err := c.postLoad(text)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("reload: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	c.mu.Lock()
	c.caddyfile = text
	c.mu.Unlock()
	// A later Restart starts from the config now in use.
	return os.WriteFile(c.ConfigPath(), []byte(text), 0o600)
}

// postLoad posts a Caddyfile to the admin endpoint's /load. Caddy replaces its admin server on
// every config load, so for a moment after a reload the admin port refuses connections; a refused
// connection never reached Caddy, so it is retried for a few seconds.
func (c *Caddy) postLoad(text string) (*http.Response, error) {
	client := &http.Client{Timeout: time.Minute}
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, err := http.NewRequest(http.MethodPost, c.AdminURL("/load"), strings.NewReader(text))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "text/caddyfile")
		// Caddy's admin endpoint checks Origin against its own address.
		req.Header.Set("Origin", c.AdminURL(""))
		resp, err := client.Do(req)
		if err == nil || !errors.Is(err, syscall.ECONNREFUSED) || time.Now().After(deadline) {
			return resp, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Port returns the loopback port allocated under name: "" is the main site, "https" the HTTPS
// port, any other name is allocated on first use (the same as {{port "name"}} in the template).
func (c *Caddy) Port(name string) int {
	if name == "" {
		return c.site
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.ports[name]
	if !ok {
		p = FreePort(c.t)
		c.ports[name] = p
	}
	return p
}

// Addr is 127.0.0.1:<port> of the main site.
func (c *Caddy) Addr() string { return "127.0.0.1:" + strconv.Itoa(c.site) }

// URL is the main site's URL for path ("/thank-you?order=1").
func (c *Caddy) URL(path string) string { return "http://" + c.Addr() + path }

// AdminURL is the admin endpoint's URL for path ("/capi/…", "/config/").
func (c *Caddy) AdminURL(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(c.admin) + path
}

// Path is the absolute path of name inside the working directory (where a relative sink file
// lands).
func (c *Caddy) Path(name string) string { return filepath.Join(c.Dir, name) }

// Log returns everything the process (and its earlier incarnations) wrote to stdout and stderr.
func (c *Caddy) Log() string { return c.log.String() }

// LogEntries returns the log's JSON entries (Caddy logs JSON when its output is not a terminal),
// skipping the harness's own lines and anything else that is not a JSON object.
func (c *Caddy) LogEntries() []map[string]any {
	var entries []map[string]any
	for _, line := range strings.Split(c.Log(), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) == nil {
			entries = append(entries, e)
		}
	}
	return entries
}

// WaitLog waits until the log contains substr and fails the test (showing the log) if it does not
// within timeout.
func (c *Caddy) WaitLog(substr string, timeout time.Duration) {
	c.t.Helper()
	if !c.log.wait(substr, timeout) {
		c.t.Fatalf("harness: log has no %q after %v:\n%s", substr, timeout, c.Log())
	}
}

func (c *Caddy) cleanup() {
	if killed := c.stop(); killed {
		c.notExited()
		return
	}
	if c.t.Failed() {
		c.t.Logf("harness: caddy log (%s):\n%s", c.ConfigPath(), tail(c.Log(), 200))
	}
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) <= lines {
		return s
	}
	return fmt.Sprintf("[… %d earlier lines]\n%s", len(parts)-lines, strings.Join(parts[len(parts)-lines:], "\n"))
}

// Command runs the binary with args (e.g. "adapt", "--config", f) and returns its combined output.
func Command(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t), args...)
	dir := t.TempDir()
	cmd.Dir = dir
	cmd.Env = append(filteredEnv(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// logBuffer is a goroutine-safe log that wakes waiters when it grows.
type logBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newLogBuffer() *logBuffer { return &logBuffer{changed: make(chan struct{})} }

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.buf.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return n, err
}

func (l *logBuffer) String() string {
	if l == nil {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) wait(substr string, timeout time.Duration) bool {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		l.mu.Lock()
		found := strings.Contains(l.buf.String(), substr)
		changed := l.changed
		l.mu.Unlock()
		if found {
			return true
		}
		select {
		case <-changed:
		case <-timer.C:
			return false
		}
	}
}

// NewClient returns an HTTP client as a test visitor: it keeps cookies like a browser (a fresh jar
// per client, so each client is a new visitor), does not follow redirects (tests check them), and
// gives up after 10 seconds.
func NewClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
