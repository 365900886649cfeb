package caddymodule

import (
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-capi/caddy-capi/capi/capture"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("capi", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("capi", parseHandlerDirective)
	// After encode, so that encode compresses what the handler injects, and before handle, route
	// and every terminal handler, so that the handler runs on sites that use handle blocks.
	httpcaddyfile.RegisterDirectiveOrder("capi", httpcaddyfile.After, "encode")
}

// parseGlobalOption sets up the capi app from the `capi` global option.
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		d.Next() // the option name, for the error's file and line
		return nil, d.Err("capi: the global option is given twice; expected a single capi { … } block")
	}
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "capi", Value: caddyconfig.JSON(app, nil)}, nil
}

// parseHandlerDirective sets up the capi handler from the site's `capi` directive.
func parseHandlerDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return handler, err
}

// UnmarshalCaddyfile sets up the app from the `capi` global option. Syntax:
//
//	capi {
//		storage bolt [<path>]
//		storage redis <url>
//		sink file <path>
//
//		meta {
//			pixel_id        <digits>
//			access_token    <token>
//			test_event_code <code>
//			api_version     <vNN.0>
//			endpoint        <base url>
//		}
//		tiktok {
//			pixel_code      <code>
//			access_token    <token>
//			test_event_code <code>
//			endpoint        <base url>
//			event <OurName> <TikTokName>
//		}
//		google_ads {
//			tag_id            AW-<digits>
//			customer_id       <id>
//			login_customer_id <id>
//			developer_token   <token>
//			client_id         <id>
//			client_secret     <secret>
//			refresh_token     <token>
//			conversion <EventName> <conversion action id> [<label>]
//			endpoint          <base url>
//			token_endpoint    <url>
//			api_version       <vNN>
//		}
//
//		delivery {
//			workers <n>
//			batch   <n>
//			flush   <duration>
//			give_up <duration>
//			retry_base <duration>
//			retry_max  <duration>
//		}
//		visitor_ttl     <duration>
//		default_country <cc>
//		consent {
//			require <cookie name> <regexp>
//			gpc     on|off
//		}
//	}
//
// Secrets and IDs may be {env.NAME} or {file.PATH} placeholders, resolved when the config is
// loaded.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the option name
	if d.NextArg() {
		return d.Err("capi: the global option takes no arguments; expected a block: capi { … }")
	}
	p := parser{d: d, ctx: "capi", seen: map[string]bool{}}
	blocks := map[string]*caddyfile.Dispenser{}
	err := p.subdirectives(
		subdirective{name: "storage", parse: func() (err error) { a.Storage, err = p.storage(); return err }},
		subdirective{name: "sink", parse: func() (err error) { a.Sink, err = p.sink(); return err }},
		subdirective{name: "meta", parse: func() (err error) {
			blocks["capi.meta"] = tokenAt(d)
			a.Meta, err = p.meta()
			return err
		}},
		subdirective{name: "tiktok", parse: func() (err error) {
			blocks["capi.tiktok"] = tokenAt(d)
			a.TikTok, err = p.tiktok()
			return err
		}},
		subdirective{name: "google_ads", parse: func() (err error) {
			blocks["capi.google_ads"] = tokenAt(d)
			a.GoogleAds, err = p.googleAds()
			return err
		}},
		subdirective{name: "delivery", parse: func() (err error) { a.Delivery, err = p.delivery(); return err }},
		subdirective{name: "visitor_ttl", parse: func() error {
			ttl, err := p.duration("visitor_ttl <duration>, such as 90d")
			if err != nil {
				return err
			}
			if err = checkVisitorTTL(ttl); err != nil {
				err = p.errf("visitor_ttl: %v", err)
			}
			a.VisitorTTL = caddy.Duration(ttl)
			return err
		}},
		subdirective{name: "default_country", parse: func() error {
			cc, err := p.arg("default_country <ISO 3166-1 alpha-2 code>")
			if err != nil {
				return err
			}
			if a.DefaultCountry, err = checkCountry(cc); err != nil {
				return p.errf("default_country: %v", err)
			}
			return nil
		}},
		subdirective{name: "consent", parse: func() (err error) { a.Consent, err = p.consent(); return err }},
	)
	if err != nil {
		return err
	}
	if err := a.checkCredentials(); err != nil {
		var fe fieldError
		if errors.As(err, &fe) {
			for prefix, at := range blocks {
				if strings.HasPrefix(fe.path, prefix) {
					return at.Errf("%v", err)
				}
			}
		}
		return d.Errf("%v", err)
	}
	return nil
}

// UnmarshalCaddyfile sets up the handler from the site's `capi` directive. Syntax:
//
//	capi [<matcher>] {
//		pixels meta tiktok google
//		cookie_domain <domain>
//		page_view     server|browser
//
//		conversion <EventName> <path pattern> {
//			method      <METHOD>
//			value       <amount or placeholder>
//			currency    <ISO 4217 code or placeholder>
//			order_id    <placeholder>
//			content_ids <placeholder>
//		}
//		capture <path pattern>...
//		capture_field <field> <form field name>...
//		collect <path>
//		link    <path> <target url>
//
//		postback clickbank|jvzoo|shopify|woocommerce|stripe <path> {
//			secret <key>
//			event  <EventName>
//			vendor   <ClickBank account nickname>     # clickbank only
//			currency <ISO 4217 code>                  # jvzoo only (default USD)
//			topics   <Shopify topic>...               # shopify only
//		}
//		postback generic <path> {
//			token    <token>
//			event    <EventName>
//			currency <ISO 4217 code>
//		}
//		consent {
//			require <cookie name> <regexp>
//			gpc     on|off
//		}
//	}
//
// Every subdirective is optional; `secret` may be repeated while a source rotates its secret, and
// `capture_field` lines accumulate.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	start := tokenAt(d)
	if d.NextArg() {
		return d.Err("capi: the directive takes no arguments besides a matcher; expected a block: capi { … }")
	}
	p := parser{d: d, ctx: "capi", seen: map[string]bool{}}
	err := p.subdirectives(
		subdirective{name: "pixels", parse: func() error { return p.pixels(h) }},
		subdirective{name: "cookie_domain", parse: func() error {
			v, err := p.arg("cookie_domain <domain>")
			if err != nil {
				return err
			}
			if h.CookieDomain, err = checkCookieDomain(v); err != nil {
				return p.errf("cookie_domain: %v", err)
			}
			return nil
		}},
		subdirective{name: "page_view", parse: func() (err error) {
			if h.PageView, err = p.arg("page_view server|browser"); err == nil && h.PageView != "server" && h.PageView != "browser" {
				err = p.errf("page_view: expected server or browser, got %q", h.PageView)
			}
			return err
		}},
		subdirective{name: "conversion", repeat: true, parse: func() error {
			c, err := p.conversion()
			if err == nil {
				h.Conversions = append(h.Conversions, c)
			}
			return err
		}},
		subdirective{name: "capture", repeat: true, parse: func() error { return p.capture(h) }},
		subdirective{name: "capture_field", repeat: true, parse: func() (err error) {
			h.CaptureFields, err = p.captureField(h.CaptureFields)
			return err
		}},
		subdirective{name: "collect", parse: func() (err error) {
			if h.Collect, err = p.arg("collect <path>, such as /capi/collect"); err == nil {
				if err = checkExactPath(h.Collect); err != nil {
					err = p.errf("collect: %v", err)
				}
			}
			return err
		}},
		subdirective{name: "link", repeat: true, parse: func() error {
			l, err := p.link()
			if err == nil {
				h.Links = append(h.Links, l)
			}
			return err
		}},
		subdirective{name: "postback", repeat: true, parse: func() error {
			pb, err := p.postback()
			if err == nil {
				h.Postbacks = append(h.Postbacks, pb)
			}
			return err
		}},
		subdirective{name: "consent", parse: func() (err error) { h.Consent, err = p.consent(); return err }},
	)
	if err != nil {
		return err
	}
	// What spans subdirectives (two endpoints on one path) is found after the block.
	if err := h.check(); err != nil {
		return start.Errf("%v", err)
	}
	return nil
}

// parser reads one block of the capi Caddyfile. Its errors carry the context ("capi meta") and,
// through the dispenser, the file and line; they say what was expected and never repeat a secret.
type parser struct {
	d    *caddyfile.Dispenser
	ctx  string
	seen map[string]bool
}

func (p parser) errf(format string, args ...any) error {
	return p.d.Errf(p.ctx+": "+format, args...)
}

// sub returns a parser for a nested block.
func (p parser) sub(name string) parser {
	return parser{d: p.d, ctx: p.ctx + " " + name, seen: map[string]bool{}}
}

// once refuses a subdirective given twice where only one makes sense.
func (p parser) once(name string) error {
	if p.seen[name] {
		return p.errf("%s is given twice; expected it once", name)
	}
	p.seen[name] = true
	return nil
}

// args reads the rest of the line, refusing fewer than min or more than max arguments.
func (p parser) args(min, max int, usage string) ([]string, error) {
	name := p.d.Val()
	args := p.d.RemainingArgs()
	if len(args) < min {
		return nil, p.errf("%s: missing argument; expected `%s`", name, usage)
	}
	if max >= 0 && len(args) > max {
		return nil, p.errf("%s: too many arguments; expected `%s`", name, usage)
	}
	return args, nil
}

// arg reads exactly one argument.
func (p parser) arg(usage string) (string, error) {
	args, err := p.args(1, 1, usage)
	if err != nil {
		return "", err
	}
	return args[0], nil
}

// noArgs refuses arguments before a block.
func (p parser) noArgs(usage string) error {
	_, err := p.args(0, 0, usage)
	return err
}

func (p parser) duration(usage string) (time.Duration, error) {
	name := p.d.Val()
	v, err := p.arg(usage)
	if err != nil {
		return 0, err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil || dur <= 0 {
		return 0, p.errf("%s: bad duration %q; expected a positive duration such as 30s, 5m, 2h or 7d", name, v)
	}
	return dur, nil
}

func (p parser) positiveInt(usage string, max int) (int, error) {
	name := p.d.Val()
	v, err := p.arg(usage)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		return 0, p.errf("%s: %q is not a number from 1 to %d", name, v, max)
	}
	return n, nil
}

// secret reads one secret argument: a literal, {env.NAME} or {file.PATH}.
func (p parser) secret(usage string) (string, error) {
	name := p.d.Val()
	v, err := p.arg(usage)
	if err != nil {
		return "", err
	}
	if err := checkSecret(v); err != nil {
		return "", p.errf("%s: %v", name, err)
	}
	return v, nil
}

// id reads an identifier that may also come from a placeholder, checking the literal form now.
func (p parser) id(usage string, check func(string) (string, error)) (string, error) {
	name := p.d.Val()
	v, err := p.arg(usage)
	if err != nil {
		return "", err
	}
	if err := checkSecret(v); err != nil {
		return "", p.errf("%s: %v", name, err)
	}
	if isSecretPlaceholder(v) {
		return v, nil
	}
	out, err := check(v)
	if err != nil {
		return "", p.errf("%s: %v", name, err)
	}
	return out, nil
}

// literal reads an argument checked as it is written.
func (p parser) literal(usage string, check func(string) error) (string, error) {
	name := p.d.Val()
	v, err := p.arg(usage)
	if err != nil {
		return "", err
	}
	if err := check(v); err != nil {
		return "", p.errf("%s: %v", name, err)
	}
	return v, nil
}

// block iterates over the subdirectives of the block that follows the current token.
func (p parser) block(each func(name string) error) error {
	for nesting := p.d.Nesting(); p.d.NextBlock(nesting); {
		name := p.d.Val()
		if err := each(name); err != nil {
			return err
		}
	}
	return nil
}

// subdirective is one line a block accepts: its name, whether it may be given more than once, and
// how it parses the rest of the line into the config.
type subdirective struct {
	name   string
	repeat bool
	parse  func() error
}

// subdirectives parses the block that follows the current token, each line by the subdirective of
// its name, refusing a second line of one that may not repeat and any name not in the list. The
// list is also the "expected one of" of that refusal, in its order, so the two cannot drift apart.
func (p parser) subdirectives(list ...subdirective) error {
	return p.block(func(name string) error {
		for _, s := range list {
			if s.name != name {
				continue
			}
			if !s.repeat {
				if err := p.once(name); err != nil {
					return err
				}
			}
			return s.parse()
		}
		names := make([]string, len(list))
		for i, s := range list {
			names[i] = s.name
		}
		return p.errf("unknown subdirective %q; expected one of %s", name, strings.Join(names, ", "))
	})
}

// argField, idField, secretField and literalField are subdirectives with exactly one argument, read
// by arg, id, secret or literal into a string field.
func (p parser) argField(name, usage string, into *string) subdirective {
	return subdirective{name: name, parse: func() (err error) { *into, err = p.arg(usage); return err }}
}

func (p parser) idField(name, usage string, into *string, check func(string) (string, error)) subdirective {
	return subdirective{name: name, parse: func() (err error) { *into, err = p.id(usage, check); return err }}
}

func (p parser) secretField(name, usage string, into *string) subdirective {
	return subdirective{name: name, parse: func() (err error) { *into, err = p.secret(usage); return err }}
}

func (p parser) literalField(name, usage string, into *string, check func(string) error) subdirective {
	return subdirective{name: name, parse: func() (err error) { *into, err = p.literal(usage, check); return err }}
}

func (p parser) storage() (*StorageConfig, error) {
	const usage = "storage bolt [<path>] or storage redis <url>"
	args, err := p.args(1, 2, usage)
	if err != nil {
		return nil, err
	}
	switch args[0] {
	case backendBolt:
		s := &StorageConfig{Backend: backendBolt}
		if len(args) == 2 {
			s.Path = args[1]
		}
		return s, nil
	case backendRedis:
		if len(args) != 2 {
			return nil, p.errf("storage redis: missing URL; expected `storage redis <url>`")
		}
		if err := checkSecret(args[1]); err != nil {
			return nil, p.errf("storage redis: %v", err)
		}
		if !isSecretPlaceholder(args[1]) {
			if err := checkRedisURL(args[1]); err != nil {
				return nil, p.errf("storage redis: %v", err)
			}
		}
		return &StorageConfig{Backend: backendRedis, URL: args[1]}, nil
	}
	return nil, p.errf("storage: unknown backend %q; expected `%s`", args[0], usage)
}

func (p parser) sink() (*SinkConfig, error) {
	args, err := p.args(2, 2, "sink file <path>")
	if err != nil {
		return nil, err
	}
	if args[0] != "file" {
		return nil, p.errf("sink: unknown kind %q; expected `sink file <path>`", args[0])
	}
	return &SinkConfig{Type: "file", Path: args[1]}, nil
}

func (p parser) meta() (*MetaConfig, error) {
	if err := p.noArgs("meta { … }"); err != nil {
		return nil, err
	}
	m := new(MetaConfig)
	q := p.sub("meta")
	err := q.subdirectives(
		q.idField("pixel_id", "pixel_id <digits>", &m.PixelID, checkMetaPixelID),
		q.secretField("access_token", "access_token <token>, such as {env.META_ACCESS_TOKEN}", &m.AccessToken),
		q.idField("test_event_code", "test_event_code <code>", &m.TestEventCode, keep(checkTestEventCode)),
		q.literalField("api_version", "api_version <vNN.0>", &m.APIVersion, checkMetaAPIVersion),
		q.literalField("endpoint", "endpoint <base url>", &m.Endpoint, checkEndpoint),
	)
	return m, err
}

func (p parser) tiktok() (*TikTokConfig, error) {
	if err := p.noArgs("tiktok { … }"); err != nil {
		return nil, err
	}
	t := new(TikTokConfig)
	q := p.sub("tiktok")
	err := q.subdirectives(
		q.idField("pixel_code", "pixel_code <code>", &t.PixelCode, keep(checkTikTokPixelCode)),
		q.secretField("access_token", "access_token <token>, such as {env.TIKTOK_ACCESS_TOKEN}", &t.AccessToken),
		q.idField("test_event_code", "test_event_code <code>", &t.TestEventCode, keep(checkTestEventCode)),
		q.literalField("endpoint", "endpoint <base url>", &t.Endpoint, checkEndpoint),
		subdirective{name: "event", repeat: true, parse: func() error {
			args, err := q.args(2, 2, "event <OurName> <TikTokName>")
			if err != nil {
				return err
			}
			for _, n := range args {
				if err := checkEventName(n); err != nil {
					return q.errf("event: %v", err)
				}
			}
			if _, dup := t.Events[args[0]]; dup {
				return q.errf("event: %s is mapped twice; expected one TikTok name per event", args[0])
			}
			if t.Events == nil {
				t.Events = map[string]string{}
			}
			t.Events[args[0]] = args[1]
			return nil
		}},
	)
	return t, err
}

func (p parser) googleAds() (*GoogleAdsConfig, error) {
	if err := p.noArgs("google_ads { … }"); err != nil {
		return nil, err
	}
	g := new(GoogleAdsConfig)
	q := p.sub("google_ads")
	err := q.subdirectives(
		q.idField("tag_id", "tag_id AW-<digits>", &g.TagID, keep(checkGoogleTagID)),
		q.idField("customer_id", "customer_id <10 digits>", &g.CustomerID, checkGoogleCustomerID),
		q.idField("login_customer_id", "login_customer_id <10 digits>", &g.LoginCustomerID, checkGoogleCustomerID),
		q.secretField("developer_token", "developer_token <token>", &g.DeveloperToken),
		q.secretField("client_id", "client_id <OAuth client ID>", &g.ClientID),
		q.secretField("client_secret", "client_secret <OAuth client secret>", &g.ClientSecret),
		q.secretField("refresh_token", "refresh_token <OAuth refresh token>", &g.RefreshToken),
		subdirective{name: "conversion", repeat: true, parse: func() error {
			c, err := q.googleConversion()
			if err != nil {
				return err
			}
			for _, other := range g.Conversions {
				if other.Event == c.Event {
					return q.errf("conversion: %s is mapped twice; expected one conversion action per event", c.Event)
				}
			}
			g.Conversions = append(g.Conversions, c)
			return nil
		}},
		q.literalField("endpoint", "endpoint <base url>", &g.Endpoint, checkEndpoint),
		q.literalField("token_endpoint", "token_endpoint <url>", &g.TokenEndpoint, checkEndpoint),
		q.literalField("api_version", "api_version <vNN>", &g.APIVersion, checkGoogleAPIVersion),
	)
	return g, err
}

func (p parser) googleConversion() (GoogleConversion, error) {
	const usage = "conversion <EventName> <conversion action id> [<label>]"
	args, err := p.args(2, 3, usage)
	if err != nil {
		return GoogleConversion{}, err
	}
	if err := checkEventName(args[0]); err != nil {
		return GoogleConversion{}, p.errf("conversion: %v; expected `%s`", err, usage)
	}
	c := GoogleConversion{Event: args[0]}
	if c.ActionID, err = checkGoogleActionID(args[1]); err != nil {
		return GoogleConversion{}, p.errf("conversion %s: conversion action ID: %v", c.Event, err)
	}
	if len(args) == 3 {
		if err := checkGoogleLabel(args[2]); err != nil {
			return GoogleConversion{}, p.errf("conversion %s: label: %v", c.Event, err)
		}
		c.Label = args[2]
	}
	return c, nil
}

func (p parser) delivery() (*DeliveryConfig, error) {
	if err := p.noArgs("delivery { … }"); err != nil {
		return nil, err
	}
	dc := new(DeliveryConfig)
	q := p.sub("delivery")
	lines := map[string]*caddyfile.Dispenser{}
	err := q.subdirectives(
		subdirective{name: "workers", parse: func() (err error) {
			dc.Workers, err = q.positiveInt("workers <n>", maxWorkers)
			return err
		}},
		subdirective{name: "batch", parse: func() (err error) {
			dc.Batch, err = q.positiveInt("batch <n>", maxBatch)
			return err
		}},
		subdirective{name: "flush", parse: func() error {
			dur, err := q.duration("flush <duration>, such as 2s")
			if err == nil && dur > maxFlush {
				err = q.errf("flush: expected at most %s", maxFlush)
			}
			dc.Flush = caddy.Duration(dur)
			return err
		}},
		subdirective{name: "give_up", parse: func() error {
			lines["give_up"] = tokenAt(q.d)
			dur, err := q.duration("give_up <duration>, such as 6d")
			if err == nil && dur > maxGiveUp {
				err = q.errf("give_up: expected at most 90d")
			}
			dc.GiveUp = caddy.Duration(dur)
			return err
		}},
		subdirective{name: "retry_base", parse: func() error {
			lines["retry_base"] = tokenAt(q.d)
			dur, err := q.duration("retry_base <duration>, such as 1s")
			dc.RetryBase = caddy.Duration(dur)
			return err
		}},
		subdirective{name: "retry_max", parse: func() error {
			lines["retry_max"] = tokenAt(q.d)
			dur, err := q.duration("retry_max <duration>, such as 10m")
			dc.RetryMax = caddy.Duration(dur)
			return err
		}},
	)
	if err != nil {
		return dc, err
	}
	// The bounds are checked against each other once the block is read; the error points at the
	// line of the bound at fault.
	if field, err := checkRetry(*dc); err != nil {
		return dc, lines[field].Errf("capi delivery: %s: %v", field, err)
	}
	return dc, nil
}

func (p parser) consent() (*ConsentConfig, error) {
	if err := p.noArgs("consent { … }"); err != nil {
		return nil, err
	}
	c := new(ConsentConfig)
	q := p.sub("consent")
	err := q.subdirectives(
		subdirective{name: "require", parse: func() error {
			args, err := q.args(2, 2, "require <cookie name> <regexp>")
			if err != nil {
				return err
			}
			if err := checkCookieName(args[0]); err != nil {
				return q.errf("require: %v", err)
			}
			if err := checkRegexp(args[1]); err != nil {
				return q.errf("require: %v", err)
			}
			c.Require = &ConsentCookie{Cookie: args[0], Pattern: args[1]}
			return nil
		}},
		subdirective{name: "gpc", parse: func() error {
			v, err := q.arg("gpc on|off")
			if err != nil {
				return err
			}
			switch v {
			case "on":
				c.GPC = new(bool)
				*c.GPC = true
			case "off":
				c.GPC = new(bool)
			default:
				return q.errf("gpc: expected on or off, got %q", v)
			}
			return nil
		}},
	)
	return c, err
}

func (p parser) pixels(h *Handler) error {
	args, err := p.args(1, 3, "pixels meta|tiktok|google...")
	if err != nil {
		return err
	}
	for _, px := range args {
		if !isPixel(px) {
			return p.errf("pixels: unknown platform %q; expected meta, tiktok or google", px)
		}
		for _, seen := range h.Pixels {
			if seen == px {
				return p.errf("pixels: %s is listed twice", px)
			}
		}
		h.Pixels = append(h.Pixels, px)
	}
	return nil
}

func (p parser) conversion() (Conversion, error) {
	const usage = "conversion <EventName> <path pattern> [{ … }]"
	args := p.d.RemainingArgs()
	switch {
	case len(args) == 0:
		return Conversion{}, p.errf("conversion: missing event name and path; expected `%s`", usage)
	case len(args) == 1 && strings.HasPrefix(args[0], "/"):
		return Conversion{}, p.errf("conversion: missing event name before %s; expected `%s`", args[0], usage)
	case len(args) == 1:
		return Conversion{}, p.errf("conversion %s: missing path pattern; expected `%s`", args[0], usage)
	case len(args) > 2:
		return Conversion{}, p.errf("conversion: too many arguments; expected `%s`", usage)
	}
	c := Conversion{Event: args[0], Path: args[1]}
	if err := checkEventName(c.Event); err != nil {
		return c, p.errf("conversion: %v", err)
	}
	if err := checkPathPattern(c.Path); err != nil {
		return c, p.errf("conversion %s: %v", c.Event, err)
	}
	q := p.sub("conversion " + c.Event)
	err := q.subdirectives(
		q.literalField("method", "method GET|POST|PUT|PATCH|DELETE", &c.Method, checkMethod),
		q.literalField("value", "value <amount or placeholder>", &c.Value, func(v string) error {
			if hasPlaceholder(v) {
				return nil
			}
			return checkValue(v)
		}),
		subdirective{name: "currency", parse: func() error {
			v, err := q.arg("currency <ISO 4217 code or placeholder>")
			if err != nil {
				return err
			}
			c.Currency = v
			if !hasPlaceholder(v) {
				if c.Currency, err = checkCurrency(v); err != nil {
					return q.errf("currency: %v", err)
				}
			}
			return nil
		}},
		q.argField("order_id", "order_id <placeholder>, such as {http.request.uri.query.order}", &c.OrderID),
		q.argField("content_ids", "content_ids <placeholder>, such as {http.request.uri.query.sku}", &c.ContentIDs),
	)
	return c, err
}

func (p parser) capture(h *Handler) error {
	args, err := p.args(1, -1, "capture <path pattern>...")
	if err != nil {
		return err
	}
	for _, a := range args {
		if err := checkPathPattern(a); err != nil {
			return p.errf("capture: %v", err)
		}
	}
	h.Capture = append(h.Capture, args...)
	return nil
}

// captureField reads one `capture_field <our field> <form field name>...` line into fields,
// refusing an unknown field with the list of ours and a name that could never match.
func (p parser) captureField(fields map[string][]string) (map[string][]string, error) {
	usage := "capture_field <field> <form field name>..., where <field> is one of " + strings.Join(capture.FieldNames(), ", ")
	args, err := p.args(2, -1, usage)
	if err != nil {
		return fields, err
	}
	next := maps.Clone(fields)
	if next == nil {
		next = map[string][]string{}
	}
	next[args[0]] = slices.Concat(next[args[0]], args[1:])
	if err := checkCaptureFields(next); err != nil {
		return fields, p.errf("capture_field: %v", err)
	}
	return next, nil
}

// postbackSettings are the subdirectives of a postback block that only some sources take, read
// into s; each refuses a source it does not apply to on its own line.
func (p parser) postbackSettings(source string, s *PostbackSettings) []subdirective {
	check := func(field string, v PostbackSettings) error {
		out, _, err := checkPostbackSettings(source, v)
		if err != nil {
			return p.errf("%s: %v", field, err)
		}
		*s = out
		return nil
	}
	return []subdirective{
		{name: "vendor", parse: func() error {
			v, err := p.arg("vendor <ClickBank account nickname>")
			if err != nil {
				return err
			}
			next := *s
			next.Vendor = v
			return check("vendor", next)
		}},
		{name: "currency", parse: func() error {
			v, err := p.arg("currency <ISO 4217 code>, such as USD")
			if err != nil {
				return err
			}
			next := *s
			next.Currency = v
			return check("currency", next)
		}},
		{name: "topics", parse: func() error {
			v, err := p.args(1, -1, "topics <topic>..., such as topics orders/paid orders/create")
			if err != nil {
				return err
			}
			next := *s
			next.Topics = v
			return check("topics", next)
		}},
	}
}

func (p parser) link() (Link, error) {
	const usage = "link <path> <target url>"
	args, err := p.args(2, 2, usage)
	if err != nil {
		return Link{}, err
	}
	if err := checkExactPath(args[0]); err != nil {
		return Link{}, p.errf("link: %v", err)
	}
	if err := checkLinkTarget(args[1]); err != nil {
		return Link{}, p.errf("link %s: %v", args[0], err)
	}
	return Link{Path: args[0], Target: args[1]}, nil
}

func (p parser) postback() (Postback, error) {
	usage := "postback " + strings.Join(postbackSources, "|") + " <path> { … }"
	at := tokenAt(p.d)
	args, err := p.args(2, 2, usage)
	if err != nil {
		return Postback{}, err
	}
	pb := Postback{Source: args[0], Path: args[1]}
	if !isPostbackSource(pb.Source) {
		return pb, p.errf("postback: unknown source %q; expected one of %s", pb.Source, strings.Join(postbackSources, ", "))
	}
	if err := checkExactPath(pb.Path); err != nil {
		return pb, p.errf("postback %s: %v", pb.Source, err)
	}
	q := p.sub("postback " + pb.Source)
	list := []subdirective{
		{name: "secret", repeat: true, parse: func() error {
			if pb.Source == "generic" {
				return q.errf("secret: the generic source authenticates with `token <token>`")
			}
			v, err := q.arg("secret <key>")
			if err != nil {
				return err
			}
			if err := checkPostbackSecret(pb.Source, v); err != nil {
				return q.errf("secret: %v", err)
			}
			pb.Secrets = append(pb.Secrets, v)
			return nil
		}},
		{name: "token", parse: func() error {
			if pb.Source != "generic" {
				return q.errf("token: only the generic source takes a token; %s authenticates with `secret <key>`", pb.Source)
			}
			v, err := q.secret("token <token>")
			if err != nil {
				return err
			}
			pb.Token = v
			return nil
		}},
		q.literalField("event", "event <EventName>", &pb.Event, checkEventName),
	}
	list = append(list, q.postbackSettings(pb.Source, &pb.PostbackSettings)...)
	if err := q.subdirectives(list...); err != nil {
		return pb, err
	}
	if pb.Source == "generic" && pb.Token == "" {
		return pb, at.Errf("capi postback generic: token is required; expected `token <token>` inside the block (an {env.NAME} placeholder works)")
	}
	if pb.Source != "generic" && len(pb.Secrets) == 0 {
		return pb, at.Errf("capi postback %s: secret is required; expected `secret <key>` inside the block (an {env.NAME} placeholder works)", pb.Source)
	}
	return pb, nil
}

// tokenAt returns a dispenser positioned on the current token, for errors found later (at the end
// of a block) that should point at the line that opened it.
func tokenAt(d *caddyfile.Dispenser) *caddyfile.Dispenser {
	at := caddyfile.NewDispenser([]caddyfile.Token{d.Token()})
	at.Next()
	return at
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Handler)(nil)
)
