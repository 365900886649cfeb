// Package inject inserts a snippet (the pixels' base code) into HTML responses as they stream
// through, in one pass and with bounded memory.
//
// It owns two things: the Injector, a byte-level HTML scanner that finds the insertion point
// without buffering the page, and the Writer, an http.ResponseWriter wrapper that decides per
// response whether injecting is safe (status, method, media type, charset, encoding, caching and
// download headers), fixes the headers a changed body invalidates, decodes gzip from upstreams that
// ignore Accept-Encoding, and passes everything else through byte for byte (1xx, HEAD, 204, 206,
// 304, non-HTML, upgrades and hijacked connections).
//
// It must not know what the snippet says: building the pixel code, escaping values into it and
// handling Content-Security-Policy nonces belong to the caller, which receives the response headers
// through the snippet callback. It must not import Caddy.
package inject
