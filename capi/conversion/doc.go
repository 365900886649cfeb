// Package conversion turns what the edge learns — a conversion rule's resolved values, a browser
// event posted to `collect`, a verified postback or webhook — into neutral events, joins postbacks
// to the visitor who clicked the ad, decides which platforms each event goes to, and folds what a
// request or a captured form tells about a visitor into the visitor record.
//
// It owns the event ID scheme (DESIGN §5: deterministic from event name and order ID under the
// installation's secret IDKey, so the thank-you page, the shop's webhook and the network's
// postback for one order count once, and no browser can compute an order's ID in advance), the
// order in which a postback's keys find a visitor (DESIGN §7), the choice between action sources
// website and system_generated, the validation of values, currencies and content IDs that arrive
// from outside, and the routing of events to platforms. It does not keep the key: the caller
// stores it with the installation and passes it in Options.
//
// A postback route, once the notification is verified and recorded:
//
//	v, joinedBy, found, err := conversion.Join(ctx, st, n.Join, conversion.EmailHashes(n.Customer.Emails))
//	e, err := conversion.FromNotification(n, visitorOrNil, opt) // errors.Is(err, ErrNotConversion): record only
//	for _, p := range routes.Platforms(e) { enqueue(p, e) }
//
// A request: st.Update(ctx, vid, func(v) { ApplyIdentity(v, id, req, now) }) on every tracked
// request (and ApplyCapture on capture paths), then FromRequest for a conversion rule or a browser
// event posted to collect, and Routes.Platforms for its destinations.
//
// It must not store, send, log or enqueue anything, and must not know a platform's field names: it
// reads and updates store.Visitor values the caller loads and saves, and returns event.Event values
// the caller enqueues. Plaintext customer data goes straight into signal.Normalize and only hashed
// profiles come out; no error or Drop carries a value from the input. It must not import Caddy.
package conversion
