package bench

import (
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// markdown renders the run as the tables integration/BENCHMARKS.md records.
func (b *bench) markdown() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var w strings.Builder
	fmt.Fprintf(&w, "Run %s, commit %s, %s, %d CPUs (load average %s at the start, %s at the end).\n",
		b.started.UTC().Format("2006-01-02 15:04 MST"), commit(), runtime.Version(), runtime.NumCPU(), b.loadAvg0, loadAverage())
	fmt.Fprintf(&w, "Load: `%s`, %d interleaved rounds per workload (ABBA order), after a 2 s warm-up of each site.\n\n", b.load, b.rounds)

	if len(b.throughput) > 0 {
		w.WriteString("| workload | plain reverse_proxy, req/s (median) | capi + reverse_proxy, req/s (median) | p99 latency plain / capi | throughput capi ÷ plain, median | per round | target | met | Caddy CPU per request plain / capi (median) | CPU-bound ratio plain ÷ capi CPU, median (per round) |\n")
		w.WriteString("| --- | ---: | ---: | ---: | ---: | --- | ---: | :---: | ---: | --- |\n")
		for _, r := range b.throughput {
			ratio := median(r.ratios())
			fmt.Fprintf(&w, "| %s | %.0f | %.0f | %s / %s | **%.3f×** | %s | ≥ %.2f× | %s | %s / %s | %.3f× (%s) |\n",
				r.name,
				medianOf(r.plain, func(x wrkResult) float64 { return x.RequestsPerSec }),
				medianOf(r.capi, func(x wrkResult) float64 { return x.RequestsPerSec }),
				fmtDuration(medianOf(r.plain, func(x wrkResult) float64 { return float64(x.LatencyP99) })),
				fmtDuration(medianOf(r.capi, func(x wrkResult) float64 { return float64(x.LatencyP99) })),
				ratio, fmtRatios(r.ratios()), r.target, yesNo(ratio >= r.target),
				fmtDuration(medianOf(r.plain, func(x wrkResult) float64 { return float64(x.cpuPerRequest()) })),
				fmtDuration(medianOf(r.capi, func(x wrkResult) float64 { return float64(x.cpuPerRequest()) })),
				median(r.cpuRatios()), fmtRatios(r.cpuRatios()))
		}
		for _, r := range b.throughput {
			if r.added > 0 {
				fmt.Fprintf(&w, "\nThe injected snippet is %d bytes; every HTML answer of the capi site was checked to be the upstream's page plus exactly that insertion, before and after the load, and wrk's bytes read per request confirm it under load.\n", r.added)
				break
			}
		}
	}

	if len(b.large) > 0 {
		w.WriteString("\n| 10 MB HTML page, upstream sends 64 KiB chunks with a flush and 10 ms pause each | headers at | first body byte at | upstream finished at | live heap growth (peak of per-MB samples after GC) | RSS growth | target | met |\n")
		w.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | --- | :---: |\n")
		for _, r := range b.large {
			target, met := "first byte before the upstream finished", r.firstByte < r.upstreamDone
			name := "plain reverse_proxy"
			if r.site == "capi" {
				name = fmt.Sprintf("capi + reverse_proxy (snippet inserted at byte %d)", r.snippetAt)
				target = "heap growth < 1 MiB, first byte before the upstream finished"
				met = met && r.heapGrowth() < largeHeapLimit
			}
			fmt.Fprintf(&w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", name,
				fmtDuration(float64(r.headers)), fmtDuration(float64(r.firstByte)), fmtDuration(float64(r.upstreamDone)),
				fmtBytes(r.heapGrowth()), fmtBytes(r.rssGrowth()), target, yesNo(met))
		}
	}
	return w.String()
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func fmtDuration(ns float64) string {
	d := time.Duration(ns)
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	}
}

// commit names the checkout measured, marked dirty when the module's code has uncommitted changes.
func commit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if out, err := exec.Command("git", "status", "--porcelain", "--", "../../caddymodule", "../../capi").Output(); err == nil && len(out) > 0 {
		c += " (caddymodule/capi with uncommitted changes)"
	}
	return c
}
