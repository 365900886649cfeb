package postback

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
)

// Shopify reads Shopify webhooks: a JSON body signed by X-Shopify-Hmac-Sha256, the base64
// HMAC-SHA256 of the raw body under the app's client secret or the admin's webhook signing key
// (spec/postbacks.md §3).
//
// Kinds: a conversion topic (Topics) reports a Sale when the order is paid: orders/paid always,
// others (orders/create) only when financial_status is paid or partially_paid, so that unpaid orders
// (bank deposit, cash on delivery, authorized-only) are Other until their orders/paid arrives.
// orders/cancelled is a Cancel, refunds/create a Refund, any other topic Other.
//
// IdempotencyKey: for order topics the order, not the delivery: "order/<id>/sale" for a sale, so
// that orders/create and orders/paid for one order, and every retry of either, count once (the
// X-Shopify-Webhook-Id differs between the two topics); "order/<id>/cancel" for a cancellation;
// "refund/<id>" for each refund; for any other topic "webhook/<X-Shopify-Webhook-Id>" (stable across
// retries), else "event/<X-Shopify-Event-Id>".
type Shopify struct {
	// Secrets are the client secrets or signing keys; several while a secret is rotated (Shopify
	// may sign with the old one for up to an hour).
	Secrets []string
	// Topics are the topics whose paid orders are conversions, from ShopifyOrderTopics (any case);
	// default orders/paid and orders/create. CheckShopifyTopics checks a configured list.
	Topics []string
}

// shopifyOrderTopics are the topics whose payload is the order itself, with the id,
// financial_status and totals a sale is read from (Shopify's webhook reference). orders/cancelled
// and refunds/create are never purchases, and orders/edited carries an order edit, not the order.
var shopifyOrderTopics = []string{"orders/paid", "orders/create", "orders/updated", "orders/fulfilled", "orders/partially_fulfilled"}

// ShopifyOrderTopics returns the topics Shopify.Topics may name.
func ShopifyOrderTopics() []string { return slices.Clone(shopifyOrderTopics) }

// CheckShopifyTopics returns topics in lower case, the form Shopify sends in X-Shopify-Topic, or
// an error naming a topic that cannot count as a purchase or is listed twice.
func CheckShopifyTopics(topics []string) ([]string, error) {
	out := make([]string, 0, len(topics))
	for _, t := range topics {
		topic := strings.ToLower(strings.TrimSpace(t))
		switch {
		case topic == "orders/cancelled" || topic == "refunds/create":
			return nil, fmt.Errorf("postback: shopify: topic %s is never a purchase (it is read as a cancellation or a refund whether listed or not); expected one of %s", topic, strings.Join(shopifyOrderTopics, ", "))
		case !slices.Contains(shopifyOrderTopics, topic):
			return nil, fmt.Errorf("postback: shopify: topic %q does not carry an order that can count as a purchase; expected one of %s", t, strings.Join(shopifyOrderTopics, ", "))
		case slices.Contains(out, topic):
			return nil, fmt.Errorf("postback: shopify: topic %s is listed twice", topic)
		}
		out = append(out, topic)
	}
	return out, nil
}

func (Shopify) Name() string { return "shopify" }

// Parse verifies and reads one webhook.
func (s Shopify) Parse(req Request) (Notification, error) {
	const src = "shopify"
	if !validHMAC(req.Body, req.Header.Get("X-Shopify-Hmac-Sha256"), s.Secrets) {
		return Notification{}, unauthorized(src, "X-Shopify-Hmac-Sha256 missing or not valid under any configured secret")
	}
	doc, err := decodeObject(req.Body)
	if err != nil {
		return Notification{}, malformed(src, err.Error())
	}
	topic := strings.ToLower(strings.TrimSpace(req.Header.Get("X-Shopify-Topic")))
	topics := s.Topics
	if len(topics) == 0 {
		topics = []string{"orders/paid", "orders/create"}
	}

	n := Notification{Source: src, Kind: Other, Test: doc.bool("test")}
	id := doc.str("id") // a string of the JSON literal: order IDs exceed 2^53
	switch {
	case slices.ContainsFunc(topics, func(t string) bool { return strings.EqualFold(t, topic) }):
		if id == "" {
			return Notification{}, malformed(src, "order has no id")
		}
		status := strings.ToLower(doc.str("financial_status"))
		if topic == "orders/paid" || status == "paid" || status == "partially_paid" {
			n.Kind = Sale
			n.IdempotencyKey = "order/" + id + "/sale"
		}
		n.OrderID = id
	case topic == "orders/cancelled":
		if id == "" {
			return Notification{}, malformed(src, "order has no id")
		}
		n.Kind, n.OrderID, n.IdempotencyKey = Cancel, id, "order/"+id+"/cancel"
	case topic == "refunds/create":
		if id == "" {
			return Notification{}, malformed(src, "refund has no id")
		}
		n.Kind, n.OrderID, n.IdempotencyKey = Refund, doc.str("order_id"), "refund/"+id
		return n, nil
	}
	if n.IdempotencyKey == "" {
		if w := strings.TrimSpace(req.Header.Get("X-Shopify-Webhook-Id")); w != "" {
			n.IdempotencyKey = "webhook/" + w
		} else if e := strings.TrimSpace(req.Header.Get("X-Shopify-Event-Id")); e != "" {
			n.IdempotencyKey = "event/" + e
		} else {
			return Notification{}, malformed(src, "no X-Shopify-Webhook-Id or X-Shopify-Event-Id")
		}
	}
	if !strings.HasPrefix(topic, "orders/") {
		return n, nil
	}

	if n.OrderID == "" {
		n.OrderID = id
	}
	n.Value, _ = Decimal(doc.first("total_price", "current_total_price"))
	n.Currency = currencyCode(doc.str("currency"))
	n.Occurred = parseTime(doc.first("processed_at", "created_at"))

	customer := doc.obj("customer")
	for _, v := range []string{doc.str("email"), doc.str("contact_email"), customer.str("email")} {
		addEmail(&n.Customer, v)
	}
	billing, shipping := doc.obj("billing_address"), doc.obj("shipping_address")
	for _, v := range []string{doc.str("phone"), customer.str("phone"), billing.str("phone"), shipping.str("phone")} {
		addPhone(&n.Customer, v)
	}
	for _, a := range []object{billing, customer.obj("default_address"), shipping} {
		fillAddress(&n.Customer, a.str("first_name"), a.str("last_name"), a.str("address1"), a.str("city"),
			a.first("province_code", "province"), a.str("zip"), a.first("country_code", "country"))
	}
	fillAddress(&n.Customer, customer.str("first_name"), customer.str("last_name"), "", "", "", "", "")

	client := doc.obj("client_details")
	n.IP = doc.first("browser_ip")
	if n.IP == "" {
		n.IP = client.first("browser_ip")
	}
	n.UserAgent = client.first("user_agent")

	n.Join.addQuery(doc.str("landing_site"))
	for _, a := range doc.arr("note_attributes") {
		attr := object(asMap(a))
		n.Join.add(attr.str("name"), attr.str("value"))
	}
	if t := doc.str("cart_token"); clickID(t) {
		n.Join.CartToken = t
	}
	if t := doc.str("checkout_token"); clickID(t) {
		n.Join.CheckoutToken = t
	}

	for _, li := range doc.arr("line_items") {
		it := object(asMap(li))
		if it == nil {
			continue
		}
		n.Products = append(n.Products, Product{
			ID:       it.first("sku", "variant_id", "product_id"),
			Title:    it.first("title", "name"),
			Quantity: quantity(it.str("quantity")),
			Price:    price(it.str("price")),
		})
	}
	return n, nil
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// validHMAC reports whether header is the standard base64 HMAC-SHA256 of body under one of the
// secrets. Every secret is tried, in constant time per comparison.
func validHMAC(body []byte, header string, secrets []string) bool {
	got, err := base64.StdEncoding.DecodeString(strings.TrimSpace(header))
	if err != nil || len(got) != sha256.Size {
		return false
	}
	ok := false
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		if hmac.Equal(mac.Sum(nil), got) {
			ok = true
		}
	}
	return ok
}
