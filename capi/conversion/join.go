package conversion

import (
	"context"
	"fmt"
	"strings"

	"github.com/caddy-capi/caddy-capi/capi/identity"
	"github.com/caddy-capi/caddy-capi/capi/postback"
	"github.com/caddy-capi/caddy-capi/capi/signal"
	"github.com/caddy-capi/caddy-capi/capi/store"
)

// The keys Join reports as having found the visitor: a small fixed set, fit for a log field or a
// metric label.
const (
	JoinedByTrackingID    = "tracking_id"
	JoinedByCartToken     = "cart_token"
	JoinedByCheckoutToken = "checkout_token"
	JoinedByFBCLID        = store.ClickFBCLID
	JoinedByGCLID         = store.ClickGCLID
	JoinedByGBRAID        = store.ClickGBRAID
	JoinedByWBRAID        = store.ClickWBRAID
	JoinedByTTCLID        = store.ClickTTCLID
	// JoinedByFBC: the fbclid inside an _fbc value a storefront script stored with the order.
	JoinedByFBC   = "fbc"
	JoinedByEmail = "email"
)

// maxCartTokenLength bounds a cart or checkout token looked up in the store; Shopify's are 32 to 64
// characters, and a longer value is not a token.
const maxCartTokenLength = 256

// Join finds the visitor a notification belongs to, trying its keys from the most to the least
// specific (DESIGN §7):
//
//  1. our own tracking IDs (j.TrackingIDs): only candidates shaped like a visitor ID (24 characters
//     a-z0-9) are looked up, first those that arrived in that shape, then those that only match
//     once lower-cased (ClickBank upper-cases tracking codes);
//  2. the cart token, then the checkout token: the store indexes both kinds of token under
//     FindByCartToken, since the handler records whichever the storefront's cookies carry, and a
//     cart token is tried first because it is set earlier in the visit;
//  3. the click IDs fbclid, gclid, gbraid, wbraid, ttclid, then the fbclid inside j.FBC; values that
//     are not valid click IDs (identity.ValidClickID) are skipped;
//  4. emailHashes: the notification's Meta email hashes (lowercase hex SHA-256); anything else is
//     skipped, so no plaintext ever reaches a store lookup.
//
// j.FBP is not a join key: the store keeps no index of browser IDs.
//
// joinedBy is one of the JoinedBy constants when found is true. A store error ends the search and
// is returned: a missed join would send the conversion as system_generated, which the caller can
// avoid by retrying.
func Join(ctx context.Context, st store.Store, j postback.Join, emailHashes []string) (v store.Visitor, joinedBy string, found bool, err error) {
	for _, l := range joinLookups(ctx, st, j, emailHashes) {
		v, found, err = l.find()
		if err != nil {
			return store.Visitor{}, "", false, fmt.Errorf("conversion: join by %s: %w", l.by, err)
		}
		if found {
			return v, l.by, true, nil
		}
	}
	return store.Visitor{}, "", false, nil
}

// lookup is one attempt of Join: the key it reports and the store query.
type lookup struct {
	by   string
	find func() (store.Visitor, bool, error)
}

// joinLookups lists Join's attempts in order, leaving out keys that cannot find anyone.
func joinLookups(ctx context.Context, st store.Store, j postback.Join, emailHashes []string) []lookup {
	var ls []lookup
	for _, id := range trackingCandidates(j.TrackingIDs) {
		ls = append(ls, lookup{JoinedByTrackingID, func() (store.Visitor, bool, error) { return st.Get(ctx, id) }})
	}
	for _, t := range []struct{ by, token string }{
		{JoinedByCartToken, j.CartToken},
		{JoinedByCheckoutToken, j.CheckoutToken},
	} {
		if token := strings.TrimSpace(t.token); validCartToken(token) {
			ls = append(ls, lookup{t.by, func() (store.Visitor, bool, error) { return st.FindByCartToken(ctx, token) }})
		}
	}
	for _, c := range []struct{ kind, by, value string }{
		{store.ClickFBCLID, JoinedByFBCLID, j.FBCLID},
		{store.ClickGCLID, JoinedByGCLID, j.GCLID},
		{store.ClickGBRAID, JoinedByGBRAID, j.GBRAID},
		{store.ClickWBRAID, JoinedByWBRAID, j.WBRAID},
		{store.ClickTTCLID, JoinedByTTCLID, j.TTCLID},
		{store.ClickFBCLID, JoinedByFBC, identity.FBCLIDOf(j.FBC)},
	} {
		if identity.ValidClickID(c.value) {
			ls = append(ls, lookup{c.by, func() (store.Visitor, bool, error) { return st.FindByClickID(ctx, c.kind, c.value) }})
		}
	}
	for _, h := range emailHashes {
		if isLowerSHA256Hex(h) {
			ls = append(ls, lookup{JoinedByEmail, func() (store.Visitor, bool, error) { return st.FindByEmailHash(ctx, h) }})
		}
	}
	return ls
}

// EmailHashes returns the join keys of a notification's email addresses: their Meta hashes, the
// form the store indexes. Addresses that are not valid are left out (FromNotification reports them).
func EmailHashes(emails []string) []string {
	p, _ := signal.Normalize(signal.Customer{Emails: emails}, signal.Options{})
	return p.Meta.Emails
}

// trackingCandidates returns the tracking IDs that can be visitor IDs, in the order Join tries
// them: those already in a visitor ID's shape, then those that take it once lower-cased, each once.
func trackingCandidates(ids []string) []string {
	var exact, folded []string
	seen := make(map[string]bool, len(ids))
	for _, raw := range ids {
		id := strings.TrimSpace(raw)
		if identity.ValidVisitorID(id) {
			if !seen[id] {
				seen[id] = true
				exact = append(exact, id)
			}
		}
	}
	for _, raw := range ids {
		id := strings.ToLower(strings.TrimSpace(raw))
		if identity.ValidVisitorID(id) && !seen[id] {
			seen[id] = true
			folded = append(folded, id)
		}
	}
	return append(exact, folded...)
}

func validCartToken(s string) bool {
	return s != "" && len(s) <= maxCartTokenLength && printable(s)
}

// isLowerSHA256Hex reports whether s is exactly in the form signal.Hash produces.
func isLowerSHA256Hex(s string) bool {
	return len(s) == 64 && signal.IsHashed(s) && strings.ToLower(s) == s
}
