// Package bench measures what the capi handler costs a site, end to end: the real binary built
// from ./xcaddy, one upstream, and two sites in the same Caddy process that differ only in the
// capi directive — a plain `reverse_proxy` and `capi { … }` + `reverse_proxy`. Load comes from wrk
// with a fixed connection count; the two sites are measured alternately in the same run and
// compared by their ratio, which is what survives a shared, noisy machine.
//
// It owns the benchmark programs under this directory (its tests, gated by CAPI_BENCH=1, and
// run.sh). It must not change the harness, the module or the numbers' meaning: a run that did
// not inject into the HTML it measured fails instead of reporting.
package bench
