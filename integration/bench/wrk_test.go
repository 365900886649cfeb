package bench

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what one wrk run reports.
type wrkResult struct {
	Requests       int
	Duration       time.Duration
	BytesRead      float64 // wrk prints it rounded to 3 significant digits
	RequestsPerSec float64
	LatencyP50     time.Duration
	LatencyP99     time.Duration
	// Non2xx counts responses outside 2xx/3xx; SocketErrors the connect/read/write/timeout errors.
	Non2xx       int
	SocketErrors int

	// CaddyCPU is the CPU time the Caddy process used during the run; the caller measures it.
	CaddyCPU time.Duration
}

// cpuPerRequest is Caddy's CPU time per request of the run.
func (r wrkResult) cpuPerRequest() time.Duration {
	if r.Requests == 0 {
		return 0
	}
	return r.CaddyCPU / time.Duration(r.Requests)
}

// bytesPerRequest is the mean response size on the wire, headers included.
func (r wrkResult) bytesPerRequest() float64 {
	if r.Requests == 0 {
		return 0
	}
	return r.BytesRead / float64(r.Requests)
}

// wrkLoad is the fixed load shape every run uses.
type wrkLoad struct {
	Threads     int
	Connections int
	Duration    time.Duration
}

func (l wrkLoad) String() string {
	return fmt.Sprintf("wrk -t%d -c%d -d%s --latency", l.Threads, l.Connections, l.Duration)
}

// runWrk runs wrk against url with the given request headers ("Name: value").
func runWrk(ctx context.Context, wrk string, load wrkLoad, url string, headers []string) (wrkResult, error) {
	args := []string{
		"-t" + strconv.Itoa(load.Threads),
		"-c" + strconv.Itoa(load.Connections),
		"-d" + strconv.Itoa(int(load.Duration.Seconds())) + "s",
		"--latency",
	}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	args = append(args, url)
	out, err := exec.CommandContext(ctx, wrk, args...).CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	res, err := parseWrk(string(out))
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return res, nil
}

var (
	wrkTotals    = regexp.MustCompile(`(?m)^\s*(\d+) requests in ([0-9.]+[a-z]+), ([0-9.]+)([KMGT]?B) read`)
	wrkRate      = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	wrkNon2xx    = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses: (\d+)`)
	wrkSocket    = regexp.MustCompile(`(?m)^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkPercentil = regexp.MustCompile(`(?m)^\s*(50|99)%\s+([0-9.]+[a-z]+)`)
)

// parseWrk reads wrk's text report (wrk 4.x, with --latency).
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	m := wrkTotals.FindStringSubmatch(out)
	if m == nil {
		return r, errors.New("no \"N requests in T, B read\" line in wrk's output")
	}
	r.Requests, _ = strconv.Atoi(m[1])
	d, err := parseWrkDuration(m[2])
	if err != nil {
		return r, err
	}
	r.Duration = d
	size, _ := strconv.ParseFloat(m[3], 64)
	r.BytesRead = size * float64(map[string]int64{"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}[m[4]])

	m = wrkRate.FindStringSubmatch(out)
	if m == nil {
		return r, errors.New("no Requests/sec line in wrk's output")
	}
	r.RequestsPerSec, _ = strconv.ParseFloat(m[1], 64)

	if m = wrkNon2xx.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.Atoi(m[1])
	}
	if m = wrkSocket.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(s)
			r.SocketErrors += n
		}
	}
	for _, m := range wrkPercentil.FindAllStringSubmatch(out, -1) {
		d, err := parseWrkDuration(m[2])
		if err != nil {
			return r, err
		}
		if m[1] == "50" {
			r.LatencyP50 = d
		} else {
			r.LatencyP99 = d
		}
	}
	return r, nil
}

// parseWrkDuration reads wrk's durations: "812.00us", "1.21ms", "10.01s", "1.50m".
func parseWrkDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("wrk duration %q: %w", s, err)
	}
	return d, nil
}
