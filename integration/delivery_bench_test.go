package integration

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/integration/fakes"
	"github.com/caddy-capi/caddy-capi/integration/harness"
)

// BenchmarkDeliveryEndToEnd drives b.N requests through the real binary from 16 concurrent
// shoppers and reports acknowledged requests per second. In "conversion" each request is a
// Purchase (durably enqueued before the answer) and the benchmark also waits until the fake Meta
// has accepted every one, reporting delivered events per second from the first request to the
// last acceptance. "baseline" sends the same requests to a path of the same site that fires no
// conversion, in the same run, so the difference is the cost of the conversion.
//
//	go test ./integration/ -run '^$' -bench BenchmarkDeliveryEndToEnd -benchtime 5000x
func BenchmarkDeliveryEndToEnd(b *testing.B) {
	const shoppers = 16
	meta := fakes.NewMeta(b, fakes.MetaConfig{})
	c := harness.Start(b, conversionSite, harness.Var("platforms", meta.Block()), harness.Var("flush", "50ms"), harness.Var("batch", "1000"))

	run := func(b *testing.B, path func(i int64) string) time.Time {
		var (
			next  atomic.Int64
			wg    sync.WaitGroup
			start = time.Now()
		)
		for range shoppers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				client := harness.NewClient()
				client.Transport = &http.Transport{MaxIdleConnsPerHost: shoppers}
				for {
					i := next.Add(1) - 1
					if i >= int64(b.N) {
						return
					}
					resp, err := client.Get(c.URL(path(i)))
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("GET %s: %d", path(i), resp.StatusCode)
						return
					}
				}
			}()
		}
		wg.Wait()
		return start
	}

	for _, round := range []string{"baseline", "conversion"} {
		b.Run(round, func(b *testing.B) {
			prefix := fmt.Sprintf("bench-%d-", time.Now().UnixNano())
			before := len(meta.Accepted())
			b.ResetTimer()
			var start time.Time
			if round == "baseline" {
				start = run(b, func(int64) string { return "/other" })
			} else {
				start = run(b, func(i int64) string { return fmt.Sprintf("/thank-you?order=%s%d&total=9.90", prefix, i) })
			}
			acked := time.Since(start)
			b.ReportMetric(float64(b.N)/acked.Seconds(), "acked-req/s")
			if round == "conversion" {
				meta.WaitFor(b, 2*time.Minute, fmt.Sprintf("%d events", b.N), func(es []fakes.Event) bool { return len(es)-before >= b.N })
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "delivered-events/s")
			}
			b.StopTimer()
		})
	}
}
