package inject

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/pages")

const goldenSnippet = "<!-- capi -->\n<script>/* pixels */</script>\n"

// TestInjectorGoldenPages runs real-world page shapes through the Injector and compares with the
// reviewed outputs in testdata/pages/*.golden (regenerate with go test -run Golden -update).
func TestInjectorGoldenPages(t *testing.T) {
	pages, err := filepath.Glob("testdata/pages/*.html")
	if err != nil || len(pages) == 0 {
		t.Fatalf("no pages: %v", err)
	}
	for _, path := range pages {
		t.Run(filepath.Base(path), func(t *testing.T) {
			input, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			in := NewInjector(&out, []byte(goldenSnippet), 0)
			for b := input; len(b) > 0; { // byte by byte: the hardest split
				in.Write(b[:1])
				b = b[1:]
			}
			if err := in.Close(); err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(path, ".html") + ".golden"
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("output differs from %s:\n%s", golden, out.Bytes())
			}
		})
	}
}
