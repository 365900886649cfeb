package signal

import (
	"runtime"
	"strconv"
	"testing"
)

// loop runs body b.N times on one locked OS thread and reports, beside ns/op, the CPU time that
// thread spent per op ("cpu-ns/op"), which stays meaningful when other processes load the machine.
func loop(b *testing.B, body func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	start, ok := threadCPU()
	n := 0
	for b.Loop() {
		body()
		n++
	}
	if end, ok2 := threadCPU(); ok && ok2 && n > 0 {
		b.ReportMetric(float64((end-start).Nanoseconds())/float64(n), "cpu-ns/op")
	}
}

// BenchmarkNormalizeFullCustomer normalizes and hashes a full customer (every field, one email,
// one phone) for Meta, TikTok and Google. "cached" is the deployed setup, a PhoneCache in Options,
// with the customer's phone seen before (the order's webhook after its form post); "uncached" parses,
// validates and hashes the phone every time; "new-phone" uses a cache but a different
// number on every iteration, the cost of a customer never seen.
func BenchmarkNormalizeFullCustomer(b *testing.B) {
	c := fullCustomer()
	c.Emails = c.Emails[:1]
	b.Run("cached", func(b *testing.B) {
		opt := testOptions
		opt.Phones = NewPhoneCache(1024)
		Normalize(c, opt)
		loop(b, func() { Normalize(c, opt) })
	})
	b.Run("uncached", func(b *testing.B) {
		loop(b, func() { Normalize(c, testOptions) })
	})
	b.Run("new-phone", func(b *testing.B) {
		opt := testOptions
		opt.Phones = NewPhoneCache(1024)
		phones := make([]string, 4096)
		for i := range phones {
			phones[i] = "(650) 555-" + strconv.Itoa(1000+i%9000)
		}
		i := 0
		loop(b, func() {
			c.Phones = phones[i%len(phones) : i%len(phones)+1]
			i++
			Normalize(c, opt)
		})
	})
}

// BenchmarkNormalizePhone isolates the phone's share of the uncached cost: "fast" is the common
// shape NormalizePhone reads over libphonenumber's metadata itself, "phonenumbers" the same
// number through phonenumbers.Parse and validation (the only path before the fast one, and still
// the path for unusual input).
func BenchmarkNormalizePhone(b *testing.B) {
	b.Run("fast", func(b *testing.B) {
		loop(b, func() { NormalizePhone("(650)555-1212", "us") })
	})
	b.Run("phonenumbers", func(b *testing.B) {
		loop(b, func() { normalizePhoneFull("(650)555-1212", "US") })
	})
}
