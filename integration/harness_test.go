package integration

import (
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/integration/harness"
)

func TestBinaryBuildsAndRuns(t *testing.T) {
	out, err := exec.Command(harness.Binary(t), "version").CombinedOutput()
	if err != nil {
		t.Fatalf("caddy version: %v\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), "v2.11.") {
		t.Errorf("caddy version = %q, want Caddy v2.11.x", out)
	}
}

func TestListModulesShowsTheCapiModules(t *testing.T) {
	listed := harness.ListModules(t)
	if missing := harness.MissingModules(listed); len(missing) > 0 {
		t.Fatalf("list-modules lacks %v", missing)
	}
	// The standard modules must still be there: the build adds ours, it does not replace Caddy's.
	for _, std := range []string{"http.handlers.reverse_proxy", "http.handlers.file_server", "tls"} {
		if !slices.Contains(listed, std) {
			t.Errorf("list-modules lacks the standard module %s", std)
		}
	}
}

// get fetches url as a new visitor, without following redirects.
func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := harness.NewClient().Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// postForm posts a form as a new visitor, without following redirects.
func postForm(t *testing.T, url string, form url.Values) *http.Response {
	t.Helper()
	resp, err := harness.NewClient().PostForm(url, form)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

const respondConfig = `{{.Site}} {
	respond "generation {{.Vars.gen}}"
}
`

func TestHarnessReloadsRestartsAndSurvivesKill9(t *testing.T) {
	c := harness.Start(t, respondConfig, harness.Var("gen", "one"), harness.WithoutModuleCheck())
	if _, body := get(t, c.URL("/")); body != "generation one" {
		t.Fatalf("first config answers %q", body)
	}
	c.WaitLog(`"serving initial configuration"`, 5*time.Second)
	if !slices.ContainsFunc(c.LogEntries(), func(e map[string]any) bool { return e["msg"] == "serving initial configuration" }) {
		t.Errorf("LogEntries lacks the startup message")
	}

	if err := c.Reload(strings.Replace(respondConfig, "{{.Vars.gen}}", "two", 1)); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if _, body := get(t, c.URL("/")); body != "generation two" {
		t.Fatalf("after reload answers %q", body)
	}
	if err := c.Reload("{{.Site}} {\n\tno_such_directive\n}\n"); err == nil || !strings.Contains(err.Error(), "no_such_directive") {
		t.Errorf("reload of a broken config: err = %v, want the adapter's complaint", err)
	}

	c.Kill9()
	if c.Running() {
		t.Fatal("still running after Kill9")
	}
	c.Restart()
	if _, body := get(t, c.URL("/")); body != "generation two" {
		t.Errorf("after kill -9 and restart answers %q, want the reloaded config", body)
	}
	if n := strings.Count(c.Log(), "starting process"); n != 2 {
		t.Errorf("log shows %d process starts, want 2", n)
	}
}
