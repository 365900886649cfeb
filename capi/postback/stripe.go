package postback

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/capture"
)

// Stripe reads Stripe webhook events: a JSON Event signed by Stripe-Signature "t=<unix>,v1=<hex>",
// the HMAC-SHA256 of "<t>.<raw body>" under the endpoint secret, whsec_ prefix included
// (spec/postbacks.md §5). Every v1 in the header is a candidate (Stripe sends several while a secret
// rolls); an event signed longer ago than the tolerance, or further ahead of our clock, is refused
// as a replay.
//
// Kinds: checkout.session.completed with payment_status paid, and
// checkout.session.async_payment_succeeded, are Sales; charge.refunded a Refund;
// charge.dispute.created a Chargeback; every other event, an unpaid session included, Other. Events
// from test mode (livemode false) are Test.
//
// IdempotencyKey: the event ID.
type Stripe struct {
	// Secrets are the endpoint signing secrets (whsec_…); several while one is rolled.
	Secrets []string
	// Tolerance is how old a signature may be; default 5 minutes, Stripe's own default.
	Tolerance time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (Stripe) Name() string { return "stripe" }

// Parse verifies and reads one event.
func (s Stripe) Parse(req Request) (Notification, error) {
	const src = "stripe"
	ts, candidates := parseStripeSignature(req.Header.Get("Stripe-Signature"))
	if ts == "" || len(candidates) == 0 {
		return Notification{}, unauthorized(src, "Stripe-Signature missing, or without t and v1")
	}
	ok := false
	for _, secret := range s.Secrets {
		if secret == "" {
			continue
		}
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(ts))
		mac.Write([]byte{'.'})
		mac.Write(req.Body)
		sum := mac.Sum(nil)
		for _, c := range candidates {
			if hmac.Equal(sum, c) {
				ok = true
			}
		}
	}
	if !ok {
		return Notification{}, unauthorized(src, "no v1 signature matches a configured secret")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return Notification{}, unauthorized(src, "signature timestamp is not a number")
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	tolerance := s.Tolerance
	if tolerance <= 0 {
		tolerance = 5 * time.Minute
	}
	if age := now().Sub(time.Unix(sec, 0)); age > tolerance || age < -tolerance {
		return Notification{}, unauthorized(src, "signature timestamp outside the tolerance (replayed or clock skew)")
	}

	doc, err := decodeObject(req.Body)
	if err != nil {
		return Notification{}, malformed(src, err.Error())
	}
	id, typ := strings.TrimSpace(doc.str("id")), doc.str("type")
	if id == "" || typ == "" {
		return Notification{}, malformed(src, "event has no id or type")
	}
	n := Notification{
		Source:         src,
		Kind:           Other,
		Test:           !doc.bool("livemode"), // a missing livemode is treated as test, the safe reading
		IdempotencyKey: id,
		Occurred:       unixTime(doc.str("created")),
	}
	obj := doc.obj("data").obj("object")
	switch typ {
	case "checkout.session.completed", "checkout.session.async_payment_succeeded":
		// completed with payment_status unpaid is a delayed payment method: the async success event
		// follows when the money arrives. no_payment_required (a free trial) is no sale either.
		if obj.str("payment_status") == "paid" {
			n.Kind = Sale
		}
		readCheckoutSession(&n, obj)
	case "charge.refunded":
		n.Kind = Refund
		n.OrderID = obj.str("payment_intent")
		n.Currency = currencyCode(obj.str("currency"))
		n.Value = minorUnits(obj.str("amount_refunded"), n.Currency)
	case "charge.dispute.created":
		n.Kind = Chargeback
		n.OrderID = obj.str("payment_intent")
		n.Currency = currencyCode(obj.str("currency"))
		n.Value = minorUnits(obj.str("amount"), n.Currency)
	}
	return n, nil
}

func readCheckoutSession(n *Notification, obj object) {
	n.OrderID = obj.str("id")
	n.Currency = currencyCode(obj.str("currency"))
	n.Value = minorUnits(obj.str("amount_total"), n.Currency)

	details := obj.obj("customer_details")
	addEmail(&n.Customer, details.str("email"))
	addEmail(&n.Customer, obj.str("customer_email"))
	addPhone(&n.Customer, details.str("phone"))
	first, last := capture.SplitName(details.str("name"))
	a := details.obj("address")
	fillAddress(&n.Customer, first, last, a.str("line1"), a.str("city"), a.str("state"), a.str("postal_code"), a.str("country"))

	n.Join.addTracking(obj.str("client_reference_id"))
	n.Join.addObject(obj.obj("metadata"))
}

// parseStripeSignature splits "t=…,v1=…,v1=…,v0=…"; v0 and unknown keys are ignored, and v1 values
// that are not hex are dropped.
func parseStripeSignature(h string) (ts string, v1 [][]byte) {
	for _, item := range strings.Split(h, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil && len(b) == sha256.Size {
				v1 = append(v1, b)
			}
		}
	}
	return ts, v1
}

// minorUnits turns an integer amount in the currency's minor unit into a canonical decimal.
// Stripe's zero-decimal currencies are not divided, its three-decimal ones by 1000, the rest by 100
// (ISK, HUF and TWD are two-decimal in Stripe's API despite their ISO exponent).
func minorUnits(amount, currency string) string {
	if amount == "" || !allDigits(strings.TrimPrefix(amount, "-")) {
		return ""
	}
	exp := 2
	switch currency {
	case "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF":
		exp = 0
	case "BHD", "JOD", "KWD", "OMR", "TND":
		exp = 3
	}
	d, _ := Decimal(amount + "e-" + strconv.Itoa(exp))
	return d
}
