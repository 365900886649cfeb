package bench

import (
	"bytes"
	"testing"
	"time"
)

// These run in the normal suite: they check the measuring, not the module.

const wrkSample = `Running 10s test @ http://127.0.0.1:40123/products/page.html
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.01ms    1.83ms  31.22ms   83.13%
    Req/Sec     4.02k   312.45     4.51k    71.00%
  Latency Distribution
     50%    3.61ms
     75%    4.52ms
     90%    5.93ms
     99%   11.04ms
  40012 requests in 10.01s, 1.91GB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:   3997.20
Transfer/sec:    195.40MB
`

func TestParseWrkReadsRateLatencyAndErrors(t *testing.T) {
	got, err := parseWrk(wrkSample)
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{
		Requests: 40012, Duration: 10010 * time.Millisecond, BytesRead: 1.91 * (1 << 30),
		RequestsPerSec: 3997.20, LatencyP50: 3610 * time.Microsecond, LatencyP99: 11040 * time.Microsecond,
		Non2xx: 7, SocketErrors: 3,
	}
	if got != want {
		t.Errorf("parseWrk:\n got %+v\nwant %+v", got, want)
	}
}

func TestParseWrkRefusesOutputWithoutTotals(t *testing.T) {
	for _, out := range []string{"", "unable to connect to 127.0.0.1:1 Connection refused\n", "  10 requests in 1.00s, 1.00KB read\n"} {
		if _, err := parseWrk(out); err == nil {
			t.Errorf("parseWrk(%q) accepted output without a rate", out)
		}
	}
}

func TestInsertionFindsOneSnippet(t *testing.T) {
	page := []byte("<html><head><title>x</title></head><body>hi</body></html>")
	snippet := []byte(`<script>fbq('init');ttq.load();gtag('config')</script>`)
	at := bytes.Index(page, []byte("<title>"))
	injected := append(append(append([]byte{}, page[:at]...), snippet...), page[at:]...)
	tests := []struct {
		name string
		body []byte
		ok   bool
	}{
		{"one snippet after head", injected, true},
		{"untouched", page, false},
		{"snippet lacking a pixel", bytes.Replace(injected, []byte("gtag("), []byte("gtaq("), 1), false},
		{"page changed besides the snippet", bytes.Replace(injected, []byte("hi"), []byte("HI"), 1), false},
		{"snippet twice", append(append([]byte{}, snippet...), injected...), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, gotAt, err := insertion(page, tt.body)
			if tt.ok != (err == nil) {
				t.Fatalf("insertion: err %v, want ok=%v", err, tt.ok)
			}
			// Where a snippet starting with "<" goes before a "<" is ambiguous by a byte; the
			// page it makes is not.
			rebuilt := append(append(append([]byte{}, page[:gotAt]...), got...), page[gotAt:]...)
			if tt.ok && (len(got) != len(snippet) || !bytes.Equal(rebuilt, tt.body)) {
				t.Errorf("insertion = %q at %d, which does not rebuild the body", got, gotAt)
			}
		})
	}
}

func TestGeneratedResourcesHaveTheirSizes(t *testing.T) {
	for _, size := range []int{pageSize, largeSize} {
		if got := len(htmlPage(size)); got != size {
			t.Errorf("htmlPage(%d) is %d bytes", size, got)
		}
	}
	if got := len(jsAsset(assetSize)); got != assetSize {
		t.Errorf("jsAsset(%d) is %d bytes", assetSize, got)
	}
}
