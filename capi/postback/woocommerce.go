package postback

import (
	"fmt"
	"html"
	"regexp"
	"strings"
)

// WooCommerce reads WooCommerce order webhooks: the REST v3 order as JSON, signed by
// X-WC-Webhook-Signature, the base64 HMAC-SHA256 of the raw body under the webhook's secret
// (spec/postbacks.md §4). WooCommerce HTML-entity-decodes the secret before signing, so a secret
// containing &, <, > or quotes verifies whether it was configured decoded or as the admin stored it.
//
// The unsigned ping WooCommerce sends when a webhook is created (body webhook_id=<id>) yields
// ErrPing: answer 200, store nothing.
//
// Kinds by order status: processing or completed → Sale, refunded → Refund, cancelled → Cancel,
// anything else (pending, on-hold, failed, trash, a deleted order's bare {"id"}) → Other.
//
// IdempotencyKey: "<order id>|<target>", where target is sale, refund or cancel, else the status:
// X-WC-Webhook-Delivery-ID changes on every attempt, and an order that moves from processing to
// completed is still one sale.
type WooCommerce struct {
	// Secrets are the webhook secrets; several while one is being replaced.
	Secrets []string
}

func (WooCommerce) Name() string { return "woocommerce" }

var wooPing = regexp.MustCompile(`^webhook_id=[0-9]{1,20}$`)

// Parse verifies and reads one webhook.
func (s WooCommerce) Parse(req Request) (Notification, error) {
	const src = "woocommerce"
	if wooPing.Match(req.Body) {
		return Notification{}, fmt.Errorf("postback: %s: %w: webhook creation ping", src, ErrPing)
	}
	secrets := make([]string, 0, 2*len(s.Secrets))
	for _, secret := range s.Secrets {
		secrets = append(secrets, secret)
		if d := html.UnescapeString(secret); d != secret {
			secrets = append(secrets, d)
		}
	}
	if !validHMAC(req.Body, req.Header.Get("X-WC-Webhook-Signature"), secrets) {
		return Notification{}, unauthorized(src, "X-WC-Webhook-Signature missing or not valid under any configured secret")
	}
	doc, err := decodeObject(req.Body)
	if err != nil {
		return Notification{}, malformed(src, err.Error())
	}
	id := doc.str("id")
	if id == "" {
		return Notification{}, malformed(src, "order has no id")
	}

	status := strings.ToLower(strings.TrimSpace(doc.str("status")))
	n := Notification{Source: src, Kind: Other, OrderID: id}
	target := status
	switch status {
	case "processing", "completed":
		n.Kind, target = Sale, "sale"
	case "refunded":
		n.Kind, target = Refund, "refund"
	case "cancelled":
		n.Kind, target = Cancel, "cancel"
	case "":
		target = strings.ToLower(strings.TrimSpace(req.Header.Get("X-WC-Webhook-Topic")))
		if target == "" {
			target = "unknown"
		}
	}
	n.IdempotencyKey = id + "|" + target

	n.Value, _ = Decimal(doc.str("total"))
	n.Currency = currencyCode(doc.str("currency"))
	n.Occurred = parseTime(doc.first("date_paid_gmt", "date_created_gmt"))
	n.IP = strings.TrimSpace(doc.str("customer_ip_address"))
	n.UserAgent = strings.TrimSpace(doc.str("customer_user_agent"))

	billing, shipping := doc.obj("billing"), doc.obj("shipping")
	for _, a := range []object{billing, shipping} {
		addEmail(&n.Customer, a.str("email"))
		addPhone(&n.Customer, a.str("phone"))
		fillAddress(&n.Customer, a.str("first_name"), a.str("last_name"), a.str("address_1"), a.str("city"),
			a.str("state"), a.str("postcode"), a.str("country"))
	}

	for _, m := range doc.arr("meta_data") {
		meta := object(asMap(m))
		key, value := meta.str("key"), meta.str("value")
		switch strings.ToLower(key) {
		case "_wc_order_attribution_session_entry":
			// WooCommerce's own order attribution keeps the landing URL, click IDs included.
			n.Join.addQuery(value)
		default:
			n.Join.add(key, value)
		}
	}

	for _, li := range doc.arr("line_items") {
		it := object(asMap(li))
		if it == nil {
			continue
		}
		id := it.first("sku")
		if id == "" {
			if v := it.str("variation_id"); v != "" && v != "0" {
				id = v
			} else {
				id = it.str("product_id")
			}
		}
		n.Products = append(n.Products, Product{
			ID:       id,
			Title:    it.str("name"),
			Quantity: quantity(it.str("quantity")),
			Price:    price(it.str("price")),
		})
	}
	return n, nil
}
