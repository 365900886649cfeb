package conversion_test

import (
	"fmt"

	"github.com/caddy-capi/caddy-capi/capi/conversion"
	"github.com/caddy-capi/caddy-capi/capi/event"
)

// The thank-you page and the shop's webhook for order 1001 carry one event ID, so each platform
// counts the purchase once; a Lead for the same order is another event.
func ExampleEventID() {
	page := conversion.EventID("Purchase", "1001")
	webhook := conversion.EventID("Purchase", " 1001\n")
	fmt.Println(page, page == webhook)
	fmt.Println(conversion.EventID("Lead", "1001"))
	// Output:
	// 3eac3300f0fa82aae2fcc98b52ac6eb4 true
	// 54a12dbd197b5073a1d9e694bb2848f8
}

func ExampleRoutes_Platforms() {
	routes := conversion.Routes{Meta: true, TikTok: true, MetaTest: true,
		GoogleConversions: map[string]bool{"Purchase": true}}
	fmt.Println(routes.Platforms(event.Event{Name: "Purchase"}))
	fmt.Println(routes.Platforms(event.Event{Name: "Lead"}))
	fmt.Println(routes.Platforms(event.Event{Name: "Purchase", Test: true}))
	fmt.Println(routes.Platforms(event.Event{Name: "PageView"}))
	// Output:
	// [meta tiktok google]
	// [meta tiktok]
	// [meta]
	// []
}
