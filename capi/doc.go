// Package capi is the Caddy-free core of caddy-capi: the event and visitor model, normalization and
// hashing, the platform clients, the durable queue, the stores, the postback parsers and the HTML
// injector, each in a sub-package of its own. Nothing under capi/ imports Caddy; caddymodule/
// translates Caddy configuration and lifecycles into calls on these packages.
//
// Data flows one way: request → identity → event → queue → platform.
package capi
