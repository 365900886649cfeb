package harness

import (
	"slices"
	"testing"
)

func TestGlobalOptionsGoIntoTheCaddyfilesOwnBlock(t *testing.T) {
	const lines = "\tadmin 127.0.0.1:1\n"
	tests := []struct {
		name, in, want string
	}{
		{
			name: "no global block",
			in:   "http://127.0.0.1:2 {\n\trespond ok\n}\n",
			want: "{\n\tadmin 127.0.0.1:1\n}\n\nhttp://127.0.0.1:2 {\n\trespond ok\n}\n",
		},
		{
			name: "global block first",
			in:   "{\n\tcapi {\n\t}\n}\nsite {\n}\n",
			want: "{\n\tadmin 127.0.0.1:1\n\tcapi {\n\t}\n}\nsite {\n}\n",
		},
		{
			name: "comments and blank lines before the global block",
			in:   "# demo\n\n{\n\tdebug\n}\n",
			want: "# demo\n\n{\n\tadmin 127.0.0.1:1\n\tdebug\n}\n",
		},
		{
			name: "site block with an opening brace on its line is not global",
			in:   "# demo\nsite {\n}\n",
			want: "{\n\tadmin 127.0.0.1:1\n}\n\n# demo\nsite {\n}\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := withGlobalOptions(tt.in, lines); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestParseModulesKeepsOnlyModuleIDs(t *testing.T) {
	out := "admin.api.load\nhttp.handlers.capi\n\n  Standard modules: 130\n\ncapi\nadmin.api.capi\n\n  Non-standard modules: 3\n\n  Unknown modules: 0\n"
	got := parseModules(out)
	want := []string{"admin.api.load", "http.handlers.capi", "capi", "admin.api.capi"}
	if !slices.Equal(got, want) {
		t.Errorf("parseModules = %v, want %v", got, want)
	}
	if missing := MissingModules(got); len(missing) != 0 {
		t.Errorf("MissingModules = %v, want none", missing)
	}
	if missing := MissingModules(want[:2]); !slices.Equal(missing, []string{"capi", "admin.api.capi"}) {
		t.Errorf("MissingModules = %v, want capi and admin.api.capi", missing)
	}
}

func TestFreePortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}
