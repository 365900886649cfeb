package postback

import (
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"net/url"
	"sort"
	"strings"
)

// Digistore24 reads Digistore24 IPN posts: a form-urlencoded body signed by sha_sign, the upper-case
// hex SHA-512 over "key=value<passphrase>" for every non-empty field but the signature, in
// case-sensitive key order (spec/postbacks.md §7). The handler must answer a verified IPN with a
// body starting "OK".
//
// Kinds by event: on_payment → Sale (Rebill when pay_sequence_no is above 1), on_refund → Refund,
// on_chargeback → Chargeback, on_rebill_cancelled → Cancel, connection_test → Test, anything else
// Other.
//
// IdempotencyKey: order_id|event|transaction_id.
type Digistore24 struct {
	// Passphrases are the IPN passphrases; several while one is being replaced.
	Passphrases []string
}

func (Digistore24) Name() string { return "digistore24" }

// Parse verifies and reads one IPN.
func (s Digistore24) Parse(req Request) (Notification, error) {
	const src = "digistore24"
	form, err := url.ParseQuery(string(req.Body))
	if err != nil {
		return Notification{}, malformed(src, "body is not form-urlencoded")
	}
	got := strings.ToUpper(strings.TrimSpace(form.Get("sha_sign")))
	if got == "" {
		got = strings.ToUpper(strings.TrimSpace(form.Get("SHASIGN")))
	}
	if got == "" || !digistoreVerify(form, got, s.Passphrases) {
		return Notification{}, unauthorized(src, "sha_sign missing or not valid under any configured passphrase")
	}

	order, event := last(form, "order_id"), last(form, "event")
	if event == "" {
		return Notification{}, malformed(src, "no event")
	}
	n := Notification{Source: src, OrderID: order}
	switch event {
	case "on_payment":
		n.Kind = Sale
		if seq := quantity(last(form, "pay_sequence_no")); seq > 1 {
			n.Kind = Rebill
		}
	case "on_refund":
		n.Kind = Refund
	case "on_chargeback":
		n.Kind = Chargeback
	case "on_rebill_cancelled":
		n.Kind = Cancel
	case "connection_test":
		n.Kind, n.Test = Test, true
	}
	if order == "" && n.Kind != Test {
		return Notification{}, malformed(src, "no order_id")
	}
	n.IdempotencyKey = order + "|" + event + "|" + last(form, "transaction_id")
	for _, name := range []string{"amount_brutto", "transaction_amount", "amount_netto"} {
		if v, ok := Decimal(last(form, name)); ok {
			n.Value = v
			break
		}
	}
	n.Currency = currencyCode(last(form, "currency"))

	addEmail(&n.Customer, last(form, "email"))
	addPhone(&n.Customer, last(form, "address_phone_no"))
	fillAddress(&n.Customer, last(form, "address_first_name"), last(form, "address_last_name"),
		last(form, "address_street"), last(form, "address_city"), last(form, "address_state"),
		last(form, "address_zipcode"), last(form, "address_country"))

	// custom is the free pass-through on the order link: a bare ID, or a query string of them.
	for _, name := range []string{"custom", "trackingkey"} {
		if v := last(form, name); strings.Contains(v, "=") {
			n.Join.addQuery(v)
		} else {
			n.Join.addTracking(v)
		}
	}
	if id := last(form, "product_id"); id != "" {
		n.Products = []Product{{ID: id, Title: last(form, "product_name")}}
	}
	return n, nil
}

func digistoreVerify(form url.Values, signature string, passphrases []string) bool {
	keys := make([]string, 0, len(form))
	for k, v := range form {
		if k == "sha_sign" || k == "SHASIGN" || len(v) == 0 || v[len(v)-1] == "" {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	ok := 0
	for _, pass := range passphrases {
		if pass == "" {
			continue
		}
		h := sha512.New()
		for _, k := range keys {
			v := form[k]
			h.Write([]byte(k + "=" + v[len(v)-1] + pass))
		}
		want := strings.ToUpper(hex.EncodeToString(h.Sum(nil)))
		ok |= subtle.ConstantTimeCompare([]byte(want), []byte(signature))
	}
	return ok == 1
}
