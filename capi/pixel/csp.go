package pixel

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
)

// The two CSP headers. A Report-Only policy gets the same treatment as an enforced one, so that
// injecting the snippet never floods the shop's report endpoint with violations it did not cause.
const (
	headerCSP           = "Content-Security-Policy"
	headerCSPReportOnly = "Content-Security-Policy-Report-Only"
)

// CSPNonce returns a nonce the response's policy accepts for inline scripts, to be passed to
// Snippet: the first valid 'nonce-…' source of the directive that governs script elements
// (script-src-elem, else script-src, else default-src) in an enforced policy, else in a report-only
// one. It returns "" when there is none; AllowScript then allows the snippet by its hash.
func CSPNonce(h http.Header) string {
	if !hasPolicy(h) {
		return ""
	}
	for _, name := range []string{headerCSP, headerCSPReportOnly} {
		for _, value := range h.Values(name) {
			for _, p := range parsePolicies(value) {
				d := p.effective(scriptElemChain)
				if d == nil {
					continue
				}
				for _, s := range d.sources {
					if n, ok := nonceOf(s); ok && ValidNonce(n) {
						return n
					}
				}
			}
		}
	}
	return ""
}

// AllowScript makes every policy of the response (enforced and report-only) accept snippet, the
// element Snippet returned: a policy that restricts script elements and accepts neither the
// snippet's nonce nor inline scripts in general gets the SHA-256 hash of the script's text added to
// its script-src-elem or script-src. Where only default-src restricts scripts, a script-src is added
// with default-src's sources plus the hash, so that styles, images and the rest keep exactly their
// old rules. Nothing else in the header changes.
//
// It never adds a hash where 'unsafe-inline' is in effect (a hash would switch 'unsafe-inline' off
// and break the shop's own inline scripts), and it leaves alone a directive that is exactly 'none':
// the shop forbade every script, and the pixels stay blocked as it asked.
func AllowScript(h http.Header, snippet []byte) {
	if !hasPolicy(h) {
		return // most pages: nothing to hash for
	}
	nonce, body, ok := splitSnippet(snippet)
	if !ok {
		return
	}
	sum := sha256.Sum256(body)
	hash := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	rewrite(h, func(p *policy) {
		// Browsers without script-src-elem (CSP2) read script-src or default-src instead.
		for _, chain := range [][]string{scriptElemChain, scriptChain} {
			d := p.effective(chain)
			if d == nil || d.isNone() || d.allowsInline(nonce, hash) {
				continue
			}
			p.target(d, "script-src").add(hash)
		}
	})
}

// AllowVendors lets the configured pixels work under the response's policies: it adds the vendors'
// hosts to the directives that govern loading their libraries (script-src-elem/script-src), their
// beacons (connect-src, img-src) and Google's iframes (frame-src), and 'self' to connect-src when
// window.capi.track posts to CollectPath. A shop that sends a CSP and asks us to inject the pixels
// needs exactly these allowed; nothing is added to a directive that does not restrict (absent, or
// with * or https:), nor to one that is exactly 'none'. Where only default-src governs, a specific
// directive is created from its sources, so default-src itself never widens.
//
// Call it before AllowScript; either order produces a valid policy, but AllowScript then hashes into
// the script-src this one may create.
func AllowVendors(h http.Header, cfg Config) {
	if !hasPolicy(h) {
		return // most pages: no policy, so no grants to build
	}
	type grant struct {
		chain    []string
		specific string // the directive to create when only a fallback governs
		sources  []string
	}
	var grants []grant
	addHosts := func(v vendorHosts) {
		grants = append(grants,
			grant{scriptElemChain, "script-src", v.script},
			grant{scriptChain, "script-src", v.script},
			grant{connectChain, "connect-src", v.connect},
			grant{imgChain, "img-src", v.img},
			grant{frameChain, "frame-src", v.frame})
	}
	if cfg.MetaPixelID != "" {
		addHosts(metaHosts)
	}
	if cfg.TikTokPixelCode != "" {
		addHosts(tiktokHosts)
	}
	if cfg.GoogleTagID != "" {
		addHosts(googleHosts)
	}
	if cfg.CollectPath != "" {
		grants = append(grants, grant{connectChain, "connect-src", []string{"'self'"}})
	}
	if len(grants) == 0 {
		return
	}
	rewrite(h, func(p *policy) {
		for _, g := range grants {
			if len(g.sources) == 0 {
				continue
			}
			d := p.effective(g.chain)
			if d == nil || d.isNone() || d.allowsAnyHTTPS() {
				continue
			}
			t := p.target(d, g.specific)
			for _, s := range g.sources {
				t.add(s)
			}
		}
	})
}

// hasPolicy reports whether the response carries a policy, enforced or report-only. The names are
// in canonical form, which is how http.Header.Values would look them up too.
func hasPolicy(h http.Header) bool {
	return len(h[headerCSP]) > 0 || len(h[headerCSPReportOnly]) > 0
}

// vendorHosts are the origins one vendor's tag uses. Meta's and TikTok's come from their base codes
// and beacons; Google's from its CSP guide for the Google tag with Google Ads
// (developers.google.com/tag-platform/security/guides/csp), which lists country domains too; we add
// www.google.com only, so Ads remarketing beacons to other country domains stay blocked
// (unconfirmed which ones a given account uses).
type vendorHosts struct {
	script, connect, img, frame []string
}

var (
	metaHosts = vendorHosts{
		script:  []string{"https://connect.facebook.net"},
		connect: []string{"https://www.facebook.com", "https://connect.facebook.net"},
		img:     []string{"https://www.facebook.com"},
	}
	tiktokHosts = vendorHosts{
		script:  []string{"https://analytics.tiktok.com"},
		connect: []string{"https://analytics.tiktok.com"},
		img:     []string{"https://analytics.tiktok.com"},
	}
	googleHosts = vendorHosts{
		script:  []string{"https://www.googletagmanager.com", "https://www.googleadservices.com", "https://www.google.com", "https://googleads.g.doubleclick.net"},
		connect: []string{"https://www.google.com", "https://www.googleadservices.com", "https://googleads.g.doubleclick.net", "https://pagead2.googlesyndication.com"},
		img:     []string{"https://www.googletagmanager.com", "https://www.google.com", "https://googleads.g.doubleclick.net", "https://www.googleadservices.com"},
		frame:   []string{"https://www.googletagmanager.com", "https://td.doubleclick.net"},
	}
)

// Fallback chains (CSP Level 3 §6.8.2, "effective directive"): the first directive present governs.
var (
	scriptElemChain = []string{"script-src-elem", "script-src", "default-src"}
	scriptChain     = []string{"script-src", "default-src"}
	connectChain    = []string{"connect-src", "default-src"}
	imgChain        = []string{"img-src", "default-src"}
	frameChain      = []string{"frame-src", "child-src", "default-src"}
)

// policy is one serialized policy: a header value holds one or more, separated by commas.
type policy struct {
	directives []*directive
	changed    bool
}

type directive struct {
	name    string // lower case
	raw     string // as received, trimmed; written back unless changed
	sources []string
	changed bool
	policy  *policy
}

// parsePolicies splits one header value into policies (CSP3 §2.2.2: comma-separated, directives
// separated by semicolons; directive names are case-insensitive and a repeated name is ignored).
func parsePolicies(value string) []*policy {
	var ps []*policy
	for _, serialized := range strings.Split(value, ",") {
		p := &policy{}
		seen := map[string]bool{}
		for _, raw := range strings.Split(serialized, ";") {
			raw = strings.TrimSpace(raw)
			fields := strings.Fields(raw)
			if len(fields) == 0 {
				continue
			}
			name := strings.ToLower(fields[0])
			d := &directive{name: name, raw: raw, sources: fields[1:], policy: p}
			if seen[name] {
				d.name = "" // ignored by browsers; kept only to be written back as it was
			}
			seen[name] = true
			p.directives = append(p.directives, d)
		}
		ps = append(ps, p)
	}
	return ps
}

func (p *policy) String() string {
	parts := make([]string, 0, len(p.directives))
	for _, d := range p.directives {
		if d.changed {
			parts = append(parts, d.name+" "+strings.Join(d.sources, " "))
		} else {
			parts = append(parts, d.raw)
		}
	}
	return strings.Join(parts, "; ")
}

func (p *policy) get(name string) *directive {
	for _, d := range p.directives {
		if d.name == name {
			return d
		}
	}
	return nil
}

// effective returns the directive that governs a fetch of the chain's kind, nil when none restricts
// it.
func (p *policy) effective(chain []string) *directive {
	for _, name := range chain {
		if d := p.get(name); d != nil {
			return d
		}
	}
	return nil
}

// target returns the directive to widen: d itself when it is specific, else a new directive named
// specific carrying a copy of default-src's (or child-src's) sources.
func (p *policy) target(d *directive, specific string) *directive {
	if d.name == specific || d.name != "default-src" && d.name != "child-src" {
		return d
	}
	nd := &directive{name: specific, sources: append([]string(nil), d.sources...), changed: true, policy: p}
	p.directives = append(p.directives, nd)
	p.changed = true
	return nd
}

func (d *directive) add(source string) {
	for _, s := range d.sources {
		if strings.EqualFold(s, source) {
			return
		}
	}
	d.sources = append(d.sources, source)
	d.changed = true
	d.policy.changed = true
}

func (d *directive) isNone() bool {
	return len(d.sources) == 1 && strings.EqualFold(d.sources[0], "'none'")
}

// allowsInline reports whether an inline script with this nonce and hash source runs under d.
// 'unsafe-inline' counts only when no nonce or hash source and no 'strict-dynamic' is present
// (CSP3 §6.7.3.3, "does a source list allow all inline behavior").
func (d *directive) allowsInline(nonce, hash string) bool {
	unsafeInline, neutralized := false, false
	for _, s := range d.sources {
		l := strings.ToLower(s)
		switch {
		case l == "'unsafe-inline'":
			unsafeInline = true
		case l == "'strict-dynamic'":
			neutralized = true
		case strings.HasPrefix(l, "'nonce-"):
			neutralized = true
			if n, ok := nonceOf(s); ok && nonce != "" && n == nonce {
				return true
			}
		case strings.HasPrefix(l, "'sha256-"):
			neutralized = true
			// The algorithm prefix is case-insensitive, the base64 value is not.
			if s[len("'sha256-"):] == hash[len("'sha256-"):] {
				return true
			}
		case strings.HasPrefix(l, "'sha384-"), strings.HasPrefix(l, "'sha512-"):
			neutralized = true
		}
	}
	return unsafeInline && !neutralized
}

// allowsAnyHTTPS reports whether d already admits every https origin.
func (d *directive) allowsAnyHTTPS() bool {
	for _, s := range d.sources {
		if s == "*" || strings.EqualFold(s, "https:") {
			return true
		}
	}
	return false
}

// nonceOf returns the value of a 'nonce-…' source (prefix case-insensitive, value case-sensitive).
func nonceOf(s string) (string, bool) {
	const prefix = "'nonce-"
	if len(s) <= len(prefix)+1 || !strings.EqualFold(s[:len(prefix)], prefix) || s[len(s)-1] != '\'' {
		return "", false
	}
	return s[len(prefix) : len(s)-1], true
}

// rewrite applies change to every policy of both CSP headers and writes back the header values of
// policies that changed, leaving the others byte for byte.
func rewrite(h http.Header, change func(*policy)) {
	for _, name := range []string{headerCSP, headerCSPReportOnly} {
		values := h.Values(name)
		if len(values) == 0 {
			continue
		}
		out := make([]string, len(values))
		touched := false
		for i, value := range values {
			ps := parsePolicies(value)
			for _, p := range ps {
				change(p)
			}
			changed := false
			for _, p := range ps {
				changed = changed || p.changed
			}
			if !changed {
				out[i] = value
				continue
			}
			touched = true
			parts := make([]string, len(ps))
			for j, p := range ps {
				parts[j] = p.String()
			}
			out[i] = strings.Join(parts, ", ")
		}
		if touched {
			h[http.CanonicalHeaderKey(name)] = out
		}
	}
}

// splitSnippet returns the nonce attribute and the text of a `<script…>…</script>` element as
// Snippet writes it.
func splitSnippet(snippet []byte) (nonce string, body []byte, ok bool) {
	open := bytes.IndexByte(snippet, '>')
	end := bytes.LastIndex(snippet, []byte("</script>"))
	if !bytes.HasPrefix(snippet, []byte("<script")) || open < 0 || end < open {
		return "", nil, false
	}
	tag := string(snippet[:open])
	if i := strings.Index(tag, ` nonce="`); i >= 0 {
		rest := tag[i+len(` nonce="`):]
		if j := strings.IndexByte(rest, '"'); j >= 0 {
			nonce = rest[:j]
		}
	}
	return nonce, snippet[open+1 : end], true
}
