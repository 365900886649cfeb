//go:build !linux

package signal

import "time"

// threadCPU is unavailable outside Linux; benchmarks then report wall time only.
func threadCPU() (time.Duration, bool) { return 0, false }
