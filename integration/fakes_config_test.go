package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-capi/caddy-capi/integration/fakes"
	"github.com/caddy-capi/caddy-capi/integration/harness"
)

// The fakes' Caddyfile blocks must be what the capi global option accepts, so that tests can point
// Caddy at them without writing the credentials twice.
func TestFakeBlocksAreValidCaddyfile(t *testing.T) {
	m := fakes.NewMeta(t, fakes.MetaConfig{APIVersion: "v25.0"})
	tt := fakes.NewTikTok(t, fakes.TikTokConfig{})
	g := fakes.NewGoogle(t, fakes.GoogleConfig{LoginCustomerID: "1112223334", APIVersion: "v24"})
	caddyfile := "{\n\tcapi {\n" + indent(m.Block()+tt.Block()+g.Block("tag_id AW-123456789", "conversion Purchase 987654321 AbCdEf")) + "\t}\n}\n\nhttp://127.0.0.1:1 {\n\tcapi\n\trespond ok\n}\n"
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := harness.Command(t, "adapt", "--config", path, "--adapter", "caddyfile")
	if err != nil {
		t.Fatalf("caddy adapt refused the fakes' blocks: %v\n%s\n%s", err, out, caddyfile)
	}
	for _, want := range []string{m.URL(), tt.URL(), g.URL(), g.TokenURL(), `"login_customer_id":"1112223334"`} {
		if !strings.Contains(out, want) {
			t.Errorf("adapted config lacks %s:\n%s", want, out)
		}
	}
}

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		if line != "" {
			b.WriteString("\t\t" + line)
		}
	}
	return b.String()
}
