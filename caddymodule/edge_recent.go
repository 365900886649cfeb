package caddymodule

import (
	"hash/maphash"
	"time"

	"github.com/dgraph-io/ristretto/v2"
)

// recentVisitsSize bounds how many visitors recentVisits remembers: about 100 bytes each, so a few
// MB at most; a visitor it forgot costs one record read, nothing more.
const recentVisitsSize = 1 << 16

// recentVisits remembers, per visitor ID, the fingerprint of the signals last found in (or written
// to) the visitor's record and when, so that a page whose visit would change nothing skips the
// background writer altogether. It is only an optimization: a lost or evicted entry means the
// writer reads the record and decides, as it always did; an entry is added only once the record is
// known to hold those signals, so a failed write is retried on the next page.
type recentVisits struct {
	cache *ristretto.Cache[string, recentVisit]
}

type recentVisit struct {
	fingerprint uint64
	at          time.Time
}

func newRecentVisits(size int64) *recentVisits {
	cache, err := ristretto.NewCache(&ristretto.Config[string, recentVisit]{
		NumCounters: size * 10,
		MaxCost:     size,
		BufferItems: 64,
	})
	if err != nil {
		// Only a bad configuration fails, and ours is constant: run without the shortcut.
		return &recentVisits{}
	}
	return &recentVisits{cache: cache}
}

// unchanged reports whether the visitor's record held the signals of fingerprint less than
// pageURLRefresh before now, so that a visit with them has nothing to write yet (the page URL is
// written at most every pageURLRefresh, the record's refresh is even rarer).
func (r *recentVisits) unchanged(visitorID string, fingerprint uint64, now time.Time) bool {
	if r.cache == nil {
		return false
	}
	v, ok := r.cache.Get(visitorID)
	return ok && v.fingerprint == fingerprint && now.Sub(v.at) < pageURLRefresh && !now.Before(v.at)
}

// note records that the visitor's record holds the signals of fingerprint as of at.
func (r *recentVisits) note(visitorID string, fingerprint uint64, at time.Time) {
	if r.cache != nil {
		r.cache.SetWithTTL(visitorID, recentVisit{fingerprint: fingerprint, at: at}, 1, pageURLRefresh)
	}
}

func (r *recentVisits) close() {
	if r.cache != nil {
		r.cache.Close()
	}
}

// fingerprintSeed is per process: fingerprints are compared only within it.
var fingerprintSeed = maphash.MakeSeed()

// visitFingerprint hashes what of a visit visitChanges compares, except the page URL, which
// recentVisits handles by time: the identity in force, the network signals, consent and cart.
func visitFingerprint(v *visit) uint64 {
	var h maphash.Hash
	h.SetSeed(fingerprintSeed)
	for _, s := range [...]string{
		v.id.VisitorID,
		v.id.Known.FBCLID, v.id.Known.GCLID, v.id.Known.GBRAID, v.id.Known.WBRAID, v.id.Known.TTCLID,
		v.id.FBC, v.id.FBP, v.id.TTP, v.id.TTCLID, v.id.GCLAW, v.id.GCLGB, v.id.GCLWB,
		v.req.IP, v.req.UserAgent, v.req.AcceptLanguage, v.cart,
	} {
		h.WriteString(s)
		h.WriteByte(0) // field separator: ("ab", "") and ("a", "b") differ
	}
	var flags byte
	if v.consent.LimitedDataUse {
		flags |= 1
	}
	if v.consent.AdUserDataDenied {
		flags |= 2
	}
	h.WriteByte(flags)
	return h.Sum64()
}
