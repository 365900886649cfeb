package delivery_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/delivery"
	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/platform"
	"github.com/caddy-capi/caddy-capi/capi/queue/queuetest"
)

// slowPlatform accepts every batch after a fixed round trip, counting events.
type slowPlatform struct {
	rtt       time.Duration
	delivered atomic.Int64
}

func (s *slowPlatform) Platform() string      { return platform.Meta }
func (s *slowPlatform) MaxBatch() int         { return 1000 }
func (s *slowPlatform) MaxAge() time.Duration { return 7 * 24 * time.Hour }
func (s *slowPlatform) Send(ctx context.Context, evs []event.Event) platform.Result {
	time.Sleep(s.rtt)
	s.delivered.Add(int64(len(evs)))
	return platform.Result{Outcome: platform.Delivered}
}

// BenchmarkDeliveryThroughput drains b.N queued events through the workers to a platform that
// takes 1ms per batch: lease, send, durable settle.
func BenchmarkDeliveryThroughput(b *testing.B) {
	for _, batch := range []int{100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			e, _ := newEngine(b, delivery.Options{})
			evs := make([]event.Event, 0, 1000)
			for i := 0; i < b.N; i += 1000 {
				evs = evs[:0]
				for j := i; j < min(i+1000, b.N); j++ {
					evs = append(evs, queuetest.Event(fmt.Sprint("d-", j)))
				}
				if _, err := e.Enqueue(context.Background(), platform.Meta, evs...); err != nil {
					b.Fatal(err)
				}
			}
			p := &slowPlatform{rtt: time.Millisecond}
			b.ReportAllocs()
			b.ResetTimer()
			cpu := processCPU()
			e.SetSenders(map[string]platform.Sender{platform.Meta: p}, delivery.Settings{Workers: 2, Batch: batch, Flush: 10 * time.Millisecond})
			for p.delivered.Load() < int64(b.N) {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/event")
		})
	}
}

// processCPU is the user and system CPU time this process has used: on a shared machine, CPU per
// event says more about the code than wall-clock throughput.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
