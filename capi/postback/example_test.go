package postback_test

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/caddy-capi/caddy-capi/capi/postback"
)

// A handler maps Parse's result to its answer: 401 and 400 store nothing, a ping is answered 200.
func ExampleShopify_Parse() {
	src := postback.Shopify{Secrets: []string{"shpss_test_secret"}}
	req := postback.Request{
		Method: http.MethodPost,
		Header: http.Header{
			"X-Shopify-Topic":       {"orders/paid"},
			"X-Shopify-Hmac-Sha256": {"aEZTyZ9Qm6AR6sitb6DMcVIQ3IPyuf9Veyj55/LE8qM="},
		},
		Body: []byte(`{"id":820982911946154508,"email":"jon@example.com","total_price":"199.00","currency":"USD"}`),
	}
	n, err := src.Parse(req)
	switch {
	case errors.Is(err, postback.ErrUnauthorized):
		fmt.Println(http.StatusUnauthorized)
	case errors.Is(err, postback.ErrMalformed):
		fmt.Println(http.StatusBadRequest, err)
	case errors.Is(err, postback.ErrPing):
		fmt.Println(http.StatusOK)
	default:
		fmt.Println(n.Kind, n.Kind.IsConversion(), n.IdempotencyKey, n.Value, n.Currency)
	}
	// Output: sale true order/820982911946154508/sale 199.00 USD
}
