package bench

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// largeResult is one large-page request through one site.
type largeResult struct {
	site string // "plain" or "capi"
	// headers and firstByte are when the answer's headers and the first body byte reached the
	// client; upstreamDone when the upstream wrote its last byte; all from the request's start.
	headers, firstByte, upstreamDone, total time.Duration
	bodySize                                int
	snippetAt                               int // where the snippet went in (capi only)
	// heapBefore is the live heap before the request, heapPeak the largest live heap sampled after
	// each MB the upstream sent, heapAfter the live heap once the answer was read.
	heapBefore, heapPeak, heapAfter uint64
	samples                         int
	rssBefore, rssPeak              uint64
}

func (r largeResult) heapGrowth() int64 { return int64(r.heapPeak) - int64(r.heapBefore) }
func (r largeResult) rssGrowth() int64  { return int64(r.rssPeak) - int64(r.rssBefore) }

// largePage sends a 10 MB page, slowly and in flushed chunks, through each site, after one warm-up
// request each (so that buffer pools and lazily built state exist). While the upstream sends, the
// Caddy process's live heap is sampled after every MB; the client notes when the first byte
// arrives. Targets for the capi site: live heap growth under 1 MB, first byte before the
// upstream finished.
func (b *bench) largePage(t *testing.T) {
	for _, site := range []string{"plain", "capi"} {
		b.fetchLarge(t, site, false) // warm-up
	}
	for _, site := range []string{"plain", "capi"} {
		r := b.fetchLarge(t, site, true)
		if t.Failed() {
			return
		}
		b.mu.Lock()
		b.large = append(b.large, r)
		b.mu.Unlock()
		t.Logf("%s: headers %v, first byte %v, upstream done %v, total %v; live heap %d → peak %d (%+d B over %d samples) → %d after; RSS %+d B",
			site, r.headers, r.firstByte, r.upstreamDone, r.total, r.heapBefore, r.heapPeak, r.heapGrowth(), r.samples, r.heapAfter, r.rssGrowth())
		if r.firstByte >= r.upstreamDone {
			t.Errorf("%s: the first byte reached the client after %v, when the upstream had finished (%v): the page was held back", site, r.firstByte, r.upstreamDone)
		}
		if site == "capi" && r.heapGrowth() >= largeHeapLimit {
			t.Errorf("capi: live heap grew by %d bytes while streaming the %d-byte page; the target is under %d", r.heapGrowth(), largeSize, largeHeapLimit)
		}
	}
}

func (b *bench) fetchLarge(t *testing.T, site string, measure bool) largeResult {
	t.Helper()
	ctx := t.Context()
	res := largeResult{site: site}
	base := b.plain
	if site == "capi" {
		base = b.capi
	}
	select { // a warm-up's completion
	case <-b.up.largeDone:
	default:
	}

	var (
		mu        sync.Mutex
		sampleErr error
		nextMB    = 1 << 20
	)
	if measure {
		var err error
		if res.heapBefore, err = heapAfterGC(ctx, b.caddy.AdminURL); err != nil {
			t.Fatal(err)
		}
		if res.rssBefore, err = residentBytes(ctx, b.caddy.AdminURL); err != nil {
			t.Fatal(err)
		}
		res.heapPeak, res.rssPeak = res.heapBefore, res.rssBefore
		b.up.setLargeHook(func(sent int) {
			if sent < nextMB && sent < largeSize {
				return
			}
			nextMB += 1 << 20
			heap, err := heapAfterGC(ctx, b.caddy.AdminURL)
			var rss uint64
			if err == nil {
				rss, err = residentBytes(ctx, b.caddy.AdminURL)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				sampleErr = err
				return
			}
			res.samples++
			res.heapPeak = max(res.heapPeak, heap)
			res.rssPeak = max(res.rssPeak, rss)
		})
		defer b.up.setLargeHook(nil)
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+largePath, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range pageHeaders {
		name, value, _ := strings.Cut(h, ":")
		req.Header.Set(name, strings.TrimSpace(value))
	}
	start := time.Now()
	resp, err := noCompression.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	res.headers = time.Since(start)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: GET %s: %s", site, largePath, resp.Status)
	}
	var body bytes.Buffer
	body.Grow(largeSize + 64<<10)
	buf := make([]byte, 32<<10)
	for body.Len() == 0 {
		n, err := resp.Body.Read(buf)
		body.Write(buf[:n])
		if err != nil {
			t.Fatalf("%s: reading the large page: %v after %d bytes", site, err, body.Len())
		}
	}
	res.firstByte = time.Since(start)
	if _, err := io.Copy(&body, resp.Body); err != nil {
		t.Fatalf("%s: reading the large page: %v after %d bytes", site, err, body.Len())
	}
	res.total = time.Since(start)
	res.bodySize = body.Len()
	select {
	case done := <-b.up.largeDone:
		res.upstreamDone = done.Sub(start)
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the upstream did not report finishing the large page", site)
	}

	switch site {
	case "plain":
		if !bytes.Equal(body.Bytes(), b.up.large) {
			t.Errorf("plain: the large page arrived changed: %d bytes, upstream sent %d", body.Len(), len(b.up.large))
		}
	case "capi":
		_, at, err := insertion(b.up.large, body.Bytes())
		if err != nil {
			t.Errorf("capi: the large page: %v", err)
		}
		res.snippetAt = at
	}
	if !measure {
		return res
	}
	b.up.setLargeHook(nil)
	mu.Lock()
	err = sampleErr
	mu.Unlock()
	if err != nil {
		t.Fatalf("%s: sampling Caddy's heap: %v", site, err)
	}
	if res.samples < largeSize>>20 {
		t.Fatalf("%s: only %d heap samples while streaming; want one per MB", site, res.samples)
	}
	body.Reset()
	if res.heapAfter, err = heapAfterGC(ctx, b.caddy.AdminURL); err != nil {
		t.Fatal(err)
	}
	return res
}

// fmtBytes prints a signed byte count in KiB.
func fmtBytes(n int64) string {
	return fmt.Sprintf("%+.0f KiB", float64(n)/1024)
}
