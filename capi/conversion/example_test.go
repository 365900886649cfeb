package conversion_test

import (
	"fmt"

	"github.com/caddy-capi/caddy-capi/capi/conversion"
	"github.com/caddy-capi/caddy-capi/capi/event"
)

// The thank-you page and the shop's webhook for order 1001 carry one event ID, so each platform
// counts the purchase once; a Lead for the same order is another event. The key is the
// installation's, drawn once with NewIDKey and stored; this one is fixed for the example.
func ExampleEventID() {
	var key conversion.IDKey
	for i := range key {
		key[i] = byte(i)
	}
	page := conversion.EventID(key, "Purchase", "1001")
	webhook := conversion.EventID(key, "Purchase", " 1001\n")
	fmt.Println(page, page == webhook)
	fmt.Println(conversion.EventID(key, "Lead", "1001"))
	// Output:
	// 3c6f60f9ba1fef42e1e5c737720ac639 true
	// 8b21c00acba3bb92db35c389eebfbbbe
}

func ExampleRoutes_Platforms() {
	routes := conversion.Routes{Meta: true, TikTok: true, MetaTest: true,
		GoogleConversions: map[string]bool{"Purchase": true}}
	fmt.Println(routes.Platforms(event.Event{Name: "Purchase", User: event.User{GCLID: "Cj0KCQiA-gclid"}}))
	fmt.Println(routes.Platforms(event.Event{Name: "Purchase"})) // no Google click: Google could not attribute it
	fmt.Println(routes.Platforms(event.Event{Name: "Lead"}))
	fmt.Println(routes.Platforms(event.Event{Name: "Purchase", Test: true}))
	fmt.Println(routes.Platforms(event.Event{Name: "PageView"}))
	// Output:
	// [meta tiktok google]
	// [meta tiktok]
	// [meta tiktok]
	// [meta]
	// []
}
