// Package caddymodule is the Caddy glue of caddy-capi: it registers the app `capi` (the global
// option), the HTTP handler `http.handlers.capi` (the site directive) and the admin routes
// `admin.api.capi`, parses the Caddyfile into the documented JSON config structs, checks that
// configuration, and maps Caddy's lifecycle (Provision, Start, Stop, Cleanup, config reloads) onto
// the Caddy-free core under capi/.
//
// It owns configuration, validation, the reload-safe sharing of storage between configs (a
// caddy.UsagePool keyed by the storage's identity), metrics registration and the admin routes.
// It must stay thin: it never builds a platform payload, never normalizes or hashes personal data
// and never talks to an ad platform itself; those belong to the packages under capi/. It keeps no
// state in package globals other than the caddy.UsagePool and the once-created metric collectors.
//
// Caddyfile:
//
//	{
//		capi {
//			storage bolt /var/lib/caddy/capi.db
//			meta {
//				pixel_id     1234567890
//				access_token {env.META_ACCESS_TOKEN}
//			}
//		}
//	}
//
//	shop.example.com {
//		capi {
//			conversion Purchase /thank-you {
//				value    {http.request.uri.query.total}
//				currency USD
//				order_id {http.request.uri.query.order}
//			}
//		}
//		reverse_proxy upstream.example.com
//	}
//
// The placeholders the handler sets are documented on Handler.
package caddymodule
