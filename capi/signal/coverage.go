package signal

import (
	"math/bits"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/platform"
)

// The matching signals each platform accepts, by the names the platform gives them (DESIGN §1.6).
var (
	// MetaSignals are the 15 user_data parameters of the Conversions API we send.
	MetaSignals = []string{"em", "ph", "fn", "ln", "db", "ge", "ct", "st", "zp", "country",
		"external_id", "client_ip_address", "client_user_agent", "fbc", "fbp"}
	// TikTokSignals are TikTok's 12: TikTok publishes no list (tiktok-google.md A6), so we count
	// the user fields of the Events API 2.0 we send, with city, state and country as one signal,
	// "address", which is present when any of them is.
	TikTokSignals = []string{"email", "phone", "external_id", "ttclid", "ttp", "ip", "user_agent",
		"locale", "first_name", "last_name", "zip_code", "address"}
	// GoogleSignals are the 9 user-provided fields of enhanced conversions; the click IDs are
	// not counted among them.
	GoogleSignals = []string{"email", "phone", "first_name", "last_name", "street", "city",
		"region", "postal_code", "country"}
)

// Coverage says which of a platform's signals a user carries, each list in the order of that
// platform's signal list.
type Coverage struct {
	Platform string
	Present  []string
	Missing  []string
}

// CoverageOf reports the signals u carries for a platform (platform.Meta, platform.TikTok or
// platform.Google). An unknown platform has no signals, so both lists are empty.
func CoverageOf(platformName string, u event.User) Coverage {
	names, present := PresenceOf(platformName, u)
	c := Coverage{Platform: platformName}
	for i, name := range names {
		if present.Has(i) {
			c.Present = append(c.Present, name)
		} else {
			c.Missing = append(c.Missing, name)
		}
	}
	return c
}

// Presence is the set of a platform's signals a user carries: bit i stands for the i-th name of
// the platform's signal list. It lets a caller that counts coverage for every delivered event do
// so without building the name lists CoverageOf returns.
type Presence uint32

// Has reports whether the i-th signal of the platform's list is present.
func (p Presence) Has(i int) bool { return i >= 0 && i < 32 && p&(1<<i) != 0 }

// Count is the number of signals present.
func (p Presence) Count() int { return bits.OnesCount32(uint32(p)) }

// PresenceOf returns a platform's signal list (MetaSignals, TikTokSignals or GoogleSignals; nil for
// an unknown platform) and which of them u carries. It allocates nothing; the returned list is
// shared and must not be modified.
func PresenceOf(platformName string, u event.User) ([]string, Presence) {
	switch platformName {
	case platform.Meta:
		p := u.Meta
		return MetaSignals, presence(len(p.Emails) > 0, len(p.Phones) > 0, p.FirstName != "", p.LastName != "",
			p.DateOfBirth != "", p.Gender != "", p.City != "", p.State != "", p.Zip != "",
			p.Country != "", u.ExternalID != "", u.IP != "", u.UserAgent != "", u.FBC != "",
			u.FBP != "")
	case platform.TikTok:
		p := u.TikTok
		return TikTokSignals, presence(len(p.Emails) > 0, len(p.Phones) > 0, u.ExternalID != "", u.TTCLID != "",
			u.TTP != "", u.IP != "", u.UserAgent != "", u.Locale != "", p.FirstName != "",
			p.LastName != "", p.Zip != "", p.City != "" || p.State != "" || p.Country != "")
	case platform.Google:
		p := u.Google
		return GoogleSignals, presence(len(p.Emails) > 0, len(p.Phones) > 0, p.FirstName != "", p.LastName != "",
			p.Street != "", p.City != "", p.State != "", p.Zip != "", p.Country != "")
	}
	return nil, 0
}

// presence sets bit i for each true has[i], in the order of a platform's signal list.
func presence(has ...bool) Presence {
	var p Presence
	for i, h := range has {
		if h {
			p |= 1 << i
		}
	}
	return p
}
