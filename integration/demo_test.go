package integration

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/integration/browser"
	"github.com/caddy-capi/caddy-capi/integration/harness"
)

// demoConfig is Caddyfile.example with its fixed ports replaced by free ones and the demo root made
// absolute, so the test runs the very file users run.
func demoConfig(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, r := range []struct{ old, new string }{
		{":8080", ":{{.Port}}"},
		{":8081", `:{{port "shop"}}`},
		{"root * integration/demo", "root * {{.Repo}}/integration/demo"},
	} {
		if !strings.Contains(text, r.old) {
			t.Fatalf("Caddyfile.example no longer contains %q; update this test with it", r.old)
		}
		text = strings.ReplaceAll(text, r.old, r.new)
	}
	return text
}

func TestDemoPagesAreServedThroughTheModule(t *testing.T) {
	c := harness.Start(t, demoConfig(t))
	c.WaitLog("demo storefront on http://localhost:"+strconv.Itoa(c.Port(""))+"/", 5*time.Second)

	pages := []struct{ path, want string }{
		{"/", "Coffee tastes better"},
		{"/product", "The Caddy Mug"},
		{"/checkout", `name="birthday"`},
		{"/thank-you?order=A-1&total=24.95&currency=USD", "Thank you for your order"},
	}
	for _, p := range pages {
		resp, body := get(t, c.URL(p.path))
		if resp.StatusCode != 200 || !strings.Contains(body, p.want) {
			t.Errorf("GET %s: %d, body lacks %q", p.path, resp.StatusCode, p.want)
		}
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Errorf("GET %s: Content-Type %q", p.path, resp.Header.Get("Content-Type"))
		}
		// Via shows the answer came through the storefront site's proxy, where capi runs.
		if resp.Header.Get("Via") == "" {
			t.Errorf("GET %s: no Via header; the page did not pass through the storefront proxy", p.path)
		}
	}

	// The storefront's route runs the capi handler before the proxy.
	resp, cfg := get(t, c.AdminURL("/config/apps/http/servers"))
	if resp.StatusCode != 200 {
		t.Fatalf("admin config: %d %s", resp.StatusCode, cfg)
	}
	if !regexp.MustCompile(`"handler":"capi".*"handler":"reverse_proxy"`).MatchString(compactJSON(t, cfg)) {
		t.Errorf("the storefront's route does not run capi before reverse_proxy: %s", cfg)
	}

	form := url.Values{
		"email": {"Jane.Doe@Example.com"}, "phone": {"+1 (650) 555-1212"}, "first_name": {"Jane"},
		"last_name": {"Doe"}, "street": {"1 Main St"}, "city": {"New York"}, "state": {"NY"},
		"zip": {"10001"}, "country": {"US"}, "birthday": {"1990-02-16"},
	}
	resp = postForm(t, c.URL("/checkout?total=24.95&currency=USD"), form)
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != 303 || err != nil || loc.Path != "/thank-you" {
		t.Fatalf("checkout POST: %d Location %q, want 303 to /thank-you", resp.StatusCode, resp.Header.Get("Location"))
	}
	q := loc.Query()
	if q.Get("order") == "" || q.Get("total") != "24.95" || q.Get("currency") != "USD" {
		t.Errorf("thank-you redirect %q lacks order, total 24.95 or currency USD", loc)
	}
	if resp, body := get(t, c.URL(loc.String())); resp.StatusCode != 200 || !strings.Contains(body, "Thank you") {
		t.Errorf("thank-you page after checkout: %d", resp.StatusCode)
	}

	// The queue lives in Caddy's data dir (DESIGN §3), which the harness keeps under the test's
	// temporary directory.
	if _, err := os.Stat(filepath.Join(c.DataDir, "caddy", "capi", "capi.db")); err != nil {
		t.Errorf("no queue database in the test's data dir: %v", err)
	}

	// Personal data posted through the proxy never reaches the log in plain text.
	log := strings.ToLower(c.Log())
	for _, v := range []string{"jane.doe@example.com", "555-1212", "1 main st"} {
		if strings.Contains(log, v) {
			t.Errorf("the log contains the posted %q in plain text", v)
		}
	}
}

func TestDemoCheckoutInTheBrowser(t *testing.T) {
	b := browser.New(t)
	c := harness.Start(t, demoConfig(t))

	b.Navigate(c.URL("/"))
	if title := browser.Eval[string](b, "document.title"); !strings.Contains(title, "Caddy Mugs") {
		t.Fatalf("landing page title %q", title)
	}
	b.Navigate(c.URL("/checkout"))
	b.Exec(`(() => {
		const f = document.querySelector("form");
		for (const [k, v] of Object.entries({email: "jane@example.com", phone: "+16505551212", first_name: "Jane",
			last_name: "Doe", street: "1 Main St", city: "New York", state: "NY", zip: "10001", birthday: "1990-02-16"})) {
			f.elements[k].value = v;
		}
		f.submit();
	})()`)
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(b.Location(), "/thank-you") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if loc := b.Location(); !strings.Contains(loc, "/thank-you?order=") {
		t.Fatalf("after submitting the checkout the browser is at %s", loc)
	}
	// The thank-you page shows the order from its URL.
	waitFor(t, 10*time.Second, "thank-you page script", func() bool {
		return browser.Eval[string](b, `document.getElementById("total") ? document.getElementById("total").textContent : ""`) == "24.95 USD"
	})
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func compactJSON(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}
