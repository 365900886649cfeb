package event

import (
	"encoding/json"
	"slices"
	"strconv"
	"unicode/utf8"
)

// AppendJSON appends e's JSON encoding to b: byte for byte what json.Marshal(e) returns, without
// reflection. The queue encodes every event it stores on the request path, where json.Marshal was
// the largest single cost of an enqueue. FuzzAppendJSONIsMarshal and TestAppendJSONCoversEveryField
// hold the two encodings together; a field added to Event, User, Profile, Content or Consent must be
// added here too, and the second test fails until it is.
//
// It fails only where json.Marshal fails (a Time outside what RFC 3339 can express), with
// json.Marshal's error.
func (e *Event) AppendJSON(b []byte) ([]byte, error) {
	start := len(b)
	b = append(b, `{"name":`...)
	b = appendString(b, e.Name)
	b = append(b, `,"id":`...)
	b = appendString(b, e.ID)
	b = append(b, `,"time":"`...)
	withTime, err := e.Time.AppendText(b)
	if err != nil {
		// json.Marshal's error names the type and method, as callers have always seen it.
		_, err = json.Marshal(*e) // a copy: e itself must not escape, nor the caller's slice with it
		return b[:start], err
	}
	b = append(withTime, '"')
	b = appendField(b, "source_url", e.SourceURL)
	b = appendField(b, "referrer", e.Referrer)
	b = append(b, `,"action_source":`...)
	b = appendString(b, e.ActionSource)
	b = appendField(b, "value", e.Value)
	b = appendField(b, "currency", e.Currency)
	b = appendField(b, "order_id", e.OrderID)
	b = appendField(b, "content_type", e.ContentType)
	b = appendStrings(b, "content_ids", e.ContentIDs)
	if len(e.Contents) > 0 {
		b = append(b, `,"contents":[`...)
		for i := range e.Contents {
			if i > 0 {
				b = append(b, ',')
			}
			b = e.Contents[i].appendJSON(b)
		}
		b = append(b, ']')
	}
	b = appendInt(b, "num_items", e.NumItems)
	b = appendField(b, "search_string", e.SearchString)
	if len(e.Custom) > 0 {
		keys := make([]string, 0, len(e.Custom))
		for k := range e.Custom {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, `,"custom":{`...)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, e.Custom[k])
		}
		b = append(b, '}')
	}
	if e.Test {
		b = append(b, `,"test":true`...)
	}
	// omitempty leaves struct fields in: encoding/json has no empty struct.
	b = append(b, `,"consent":{`...)
	mark := len(b)
	if e.Consent.LimitedDataUse {
		b = append(b, `,"limited_data_use":true`...)
	}
	if e.Consent.AdUserDataDenied {
		b = append(b, `,"ad_user_data_denied":true`...)
	}
	b = closeObject(b, mark)
	b = append(b, `,"user":`...)
	b = e.User.appendJSON(b)
	return append(b, '}'), nil
}

func (c *Content) appendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = appendString(b, c.ID)
	b = appendInt(b, "quantity", c.Quantity)
	b = appendField(b, "item_price", c.ItemPrice)
	b = appendField(b, "title", c.Title)
	b = appendField(b, "category", c.Category)
	b = appendField(b, "brand", c.Brand)
	return append(b, '}')
}

func (u *User) appendJSON(b []byte) []byte {
	b = append(b, '{')
	mark := len(b)
	b = appendField(b, "external_id", u.ExternalID)
	b = appendField(b, "ip", u.IP)
	b = appendField(b, "user_agent", u.UserAgent)
	b = appendField(b, "locale", u.Locale)
	b = appendField(b, "fbc", u.FBC)
	b = appendField(b, "fbp", u.FBP)
	b = appendField(b, "ttclid", u.TTCLID)
	b = appendField(b, "ttp", u.TTP)
	b = appendField(b, "gclid", u.GCLID)
	b = appendField(b, "gbraid", u.GBRAID)
	b = appendField(b, "wbraid", u.WBRAID)
	b = append(b, `,"meta":`...)
	b = u.Meta.appendJSON(b)
	b = append(b, `,"tiktok":`...)
	b = u.TikTok.appendJSON(b)
	b = append(b, `,"google":`...)
	b = u.Google.appendJSON(b)
	return closeObject(b, mark)
}

func (p *Profile) appendJSON(b []byte) []byte {
	b = append(b, '{')
	mark := len(b)
	b = appendStrings(b, "emails", p.Emails)
	b = appendStrings(b, "phones", p.Phones)
	b = appendField(b, "first_name", p.FirstName)
	b = appendField(b, "last_name", p.LastName)
	b = appendField(b, "date_of_birth", p.DateOfBirth)
	b = appendField(b, "gender", p.Gender)
	b = appendField(b, "street", p.Street)
	b = appendField(b, "city", p.City)
	b = appendField(b, "state", p.State)
	b = appendField(b, "zip", p.Zip)
	b = appendField(b, "country", p.Country)
	return closeObject(b, mark)
}

// closeObject ends an object whose members were appended from mark, each with a leading comma:
// the first member's comma goes.
func closeObject(b []byte, mark int) []byte {
	if len(b) > mark {
		b = append(b[:mark], b[mark+1:]...)
	}
	return append(b, '}')
}

// appendField appends `,"name":"value"` unless value is empty (omitempty).
func appendField(b []byte, name, value string) []byte {
	if value == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, value)
}

// appendInt appends `,"name":n` unless n is 0 (omitempty).
func appendInt(b []byte, name string, n int) []byte {
	if n == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, int64(n), 10)
}

// appendStrings appends `,"name":["a",…]` unless values is empty (omitempty).
func appendStrings(b []byte, name string, values []string) []byte {
	if len(values) == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':', '[')
	for i, v := range values {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, v)
	}
	return append(b, ']')
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string exactly as encoding/json does with its default HTML
// escaping: '"' and '\\' escaped, control characters as \b \f \n \r \t or \u00XX, '<' '>' '&' as
// \u003c \u003e \u0026, invalid UTF-8 as \ufffd, and U+2028 and U+2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
