package fakes

import (
	"fmt"
	"strings"
)

// block formats a Caddyfile block of the capi global option.
func block(name string, lines []string) string {
	var b strings.Builder
	b.WriteString(name + " {\n")
	for _, l := range lines {
		b.WriteString("\t" + l + "\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// Block is the `meta { … }` block of the capi global option that points Caddy at this fake with
// the credentials it expects; extra lines (e.g. "test_event_code TEST1") are added inside.
func (m *Meta) Block(extra ...string) string {
	lines := []string{
		"pixel_id " + m.cfg.PixelID,
		"access_token " + m.cfg.AccessToken,
		"endpoint " + m.URL(),
	}
	if m.cfg.APIVersion != "" {
		lines = append(lines, "api_version "+m.cfg.APIVersion)
	}
	return block("meta", append(lines, extra...))
}

// Block is the `tiktok { … }` block of the capi global option for this fake.
func (f *TikTok) Block(extra ...string) string {
	return block("tiktok", append([]string{
		"pixel_code " + f.cfg.PixelCode,
		"access_token " + f.cfg.AccessToken,
		"endpoint " + f.URL(),
	}, extra...))
}

// Block is the `google_ads { … }` block of the capi global option for this fake; add the
// conversions the test needs as extra lines ("conversion Purchase 987654321 AbCdEf").
func (g *Google) Block(extra ...string) string {
	lines := []string{
		"customer_id " + g.cfg.CustomerID,
		"developer_token " + g.cfg.DeveloperToken,
		"client_id " + g.cfg.ClientID,
		"client_secret " + g.cfg.ClientSecret,
		"refresh_token " + g.cfg.RefreshToken,
		"endpoint " + g.URL(),
		"token_endpoint " + g.TokenURL(),
	}
	if g.cfg.LoginCustomerID != "" {
		lines = append(lines, "login_customer_id "+g.cfg.LoginCustomerID)
	}
	if g.cfg.APIVersion != "" {
		lines = append(lines, "api_version "+g.cfg.APIVersion)
	}
	return block("google_ads", append(lines, extra...))
}

// ConversionAction is the resource name Google expects for a conversion action ID of this fake's
// customer.
func (g *Google) ConversionAction(id string) string {
	return fmt.Sprintf("customers/%s/conversionActions/%s", g.cfg.CustomerID, id)
}
