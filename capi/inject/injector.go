package inject

import (
	"bytes"
	"io"
	"sync"
)

// DefaultScanLimit is how many bytes the Injector reads looking for an anchor before it gives up
// and passes the rest of the page through untouched.
const DefaultScanLimit = 64 << 10

// Injector copies an HTML byte stream to an io.Writer and inserts a snippet once, at the first
// anchor it finds:
//
//  1. After the <head …> start tag, and after the <meta> tags (and whitespace and comments) that
//     directly follow it, i.e. just before the first other tag or text. Right after <head> is the
//     place the vendors recommend for their tags (so window.capi and the fbq/ttq/gtag queues exist
//     before any of the page's own scripts run), and it is reached within the first bytes of a page,
//     so a large head (inline CSS, JSON-LD) never delays or defeats injection the way waiting for
//     </head> would. Skipping the leading <meta> tags keeps <meta charset> within the first 1024
//     bytes, where browsers look for it, and lets a <meta http-equiv="Content-Security-Policy"> apply
//     to the snippet as the page intends.
//  2. Before a <body …> start tag when the page has no <head> tag.
//  3. Before the first </head>, </body> or </html> end tag when neither came first.
//  4. At the end of the stream, when the page showed it is a document (a doctype or an <html> tag)
//     but had none of the anchors above.
//
// Otherwise nothing is inserted: a response without any document marker is a fragment (an htmx or
// Turbo partial, a section-rendering API answer), where a second PageView would be wrong. When no
// anchor is found within the scan limit the Injector stops scanning, passes the rest through and
// inserts nothing: appending at the end of a page that size would put the tags after everything
// else on it and make every later byte pay for the scan.
//
// Markup that only looks like an anchor is skipped as a browser would skip it: comments, the raw
// text of <script> (including its escaped and double-escaped states), <style>, <textarea>, <title>,
// <xmp>, <iframe>, <noembed>, <noframes>, <noscript> and <plaintext>, attribute values (quoted or
// not), doctypes, processing instructions and bogus comments. Tag names match case-insensitively,
// and a name must end where the HTML tokenizer ends it (<header> is not <head>). The tokenizer is
// the one of the HTML standard (§13.2.5); it does not know the tree builder's state, so the raw-text
// elements are recognized everywhere, also inside <svg> or <math>.
//
// Bytes are written to the destination by the end of the Write that brought them, unless they may
// still be part of an anchor: the Injector holds back at most the start of the current tag
// ("</body" is the longest), so memory is bounded and the first bytes of a page are forwarded
// without waiting for the next write. What one Write produces while scanning goes out in one call. The insertion point depends only on
// the bytes, never on how they were split into writes.
//
// An Injector is not safe for concurrent use.
type Injector struct {
	dst     io.Writer
	snippet []byte
	limit   int64
	// gathered collects the output of the Write in progress while scanning; nil otherwise.
	gathered *[]byte

	phase phase
	st    state
	n     int64 // bytes consumed so far
	at    int64 // input offset where the snippet went; -1 until then
	err   error

	hold    [8]byte // the start of a tag that may still turn out to be an anchor
	nhold   int
	holding bool

	endTag  bool
	name    [10]byte // the tag name so far, lowercased; longer names only count as "long"
	nname   int
	raw     rawKind // the kind of raw text being skipped
	rawName [10]byte
	rawLen  int
	match   int  // progress through a word being matched ("doctype", a raw end tag name)
	docSeen bool // a doctype or an <html> tag was seen: this is a document, not a fragment
}

type phase uint8

const (
	seeking   phase = iota // looking for an anchor
	afterHead              // saw <head>, inserting before the first token that is not <meta>
	done                   // inserted, or gave up: pass everything through
)

type rawKind uint8

const (
	rawNone rawKind = iota
	rawText         // style, xmp, iframe, noembed, noframes, noscript; title and textarea (RCDATA) end the same way
	rawScript
	rawPlaintext
)

// NewInjector returns an Injector writing to dst that inserts snippet. A limit ≤ 0 means
// DefaultScanLimit. The Injector keeps snippet; the caller must not modify it afterwards.
func NewInjector(dst io.Writer, snippet []byte, limit int) *Injector {
	if limit <= 0 {
		limit = DefaultScanLimit
	}
	return &Injector{dst: dst, snippet: snippet, limit: int64(limit), at: -1}
}

// Injected reports whether the snippet has been written.
func (in *Injector) Injected() bool { return in.at >= 0 }

// Finished reports whether the Injector has stopped scanning: the rest of the stream passes through
// unchanged, with the snippet already written or never to be.
func (in *Injector) Finished() bool { return in.phase == done }

// InsertedAt returns the offset in the input stream before which the snippet was inserted, or -1.
func (in *Injector) InsertedAt() int64 { return in.at }

// Write scans p and writes it on, with the snippet inserted if p holds the insertion point. It
// returns len(p) unless writing to the destination failed; errors are sticky.
func (in *Injector) Write(p []byte) (int, error) {
	if in.err != nil {
		return 0, in.err
	}
	if in.phase == done {
		n, err := in.dst.Write(p)
		if err != nil {
			in.err = err
		}
		return n, err
	}
	// While scanning, the pieces of p (the bytes before the anchor, the snippet, the rest) are
	// gathered and written to dst in one call at the end of this Write: each call to an
	// http.ResponseWriter costs a chunk and often a system call of its own.
	in.gather()
	defer in.scatter()
	from := 0 // p[from:i] is scanned and not yet written
	i := 0
	for i < len(p) && in.phase != done {
		if in.phase == seeking && in.n >= in.limit {
			in.giveUp()
			break
		}
		c := p[i]
		if in.holding {
			if in.st == sTagOpen && !isAlpha(c) && c != '/' && c != '!' && c != '?' {
				// "<" followed by text: not a tag after all. Reconsume c as text.
				in.st = sData
				if in.phase == afterHead {
					in.insert()
				} else {
					in.release()
				}
				continue
			}
			in.hold[in.nhold] = c
			in.nhold++
			in.n++
			i++
			from = i
			in.step(c)
			continue
		}
		if in.n == 0 && (c == 0xFE || c == 0xFF) {
			// A UTF-16 byte order mark: inserting ASCII would corrupt the page.
			in.giveUp()
			break
		}
		if stop := fastStop[in.st]; in.phase == seeking && stop != 0 && c != stop {
			// Fast path: in these states only one byte value changes anything.
			j := bytes.IndexByte(p[i:], stop)
			if j < 0 {
				j = len(p) - i
			}
			if rem := in.limit - in.n; int64(j) > rem {
				j = int(rem)
			}
			in.n += int64(j)
			i += j
			continue
		}
		if c == '<' && in.st == sData {
			// A tag may start here: hold it until its name decides.
			in.write(p[from:i])
			in.holding = true
			in.hold[0] = c
			in.nhold = 1
			in.n++
			i++
			from = i
			in.st = sTagOpen
			continue
		}
		if in.phase == afterHead && in.st == sData && !isSpace(c) {
			// Text right after the head's leading <meta> tags: the snippet goes before it.
			in.write(p[from:i])
			from = i
			in.insert()
			break
		}
		in.n++
		i++
		in.step(c)
	}
	if rest := p[from:]; len(rest) > maxGathered {
		// A large write past the anchor goes out as it is rather than be copied.
		in.flushGathered()
		in.scatter()
		in.write(rest)
	} else {
		in.write(rest)
		in.flushGathered()
	}
	if in.err != nil {
		return 0, in.err
	}
	return len(p), nil
}

// maxGathered bounds the bytes after the insertion point that one Write copies to send them
// together with what precedes them; a larger rest is written on its own.
const maxGathered = 64 << 10

// gatherPool holds the buffers Write gathers its output in, so that a page costs no allocation.
var gatherPool = sync.Pool{New: func() any { b := make([]byte, 0, 40<<10); return &b }}

// gather starts collecting what write is given instead of writing it.
func (in *Injector) gather() {
	in.gathered = gatherPool.Get().(*[]byte)
	*in.gathered = (*in.gathered)[:0]
}

// flushGathered writes what was collected, in one call, and keeps collecting.
func (in *Injector) flushGathered() {
	if in.gathered == nil || len(*in.gathered) == 0 {
		return
	}
	b := *in.gathered
	*in.gathered = b[:0]
	if in.err != nil {
		return
	}
	if _, err := in.dst.Write(b); err != nil {
		in.err = err
	}
}

// scatter ends collecting (after flushGathered wrote everything) and returns the buffer.
func (in *Injector) scatter() {
	g := in.gathered
	in.gathered = nil
	if g != nil && cap(*g) <= 2*maxGathered {
		gatherPool.Put(g)
	}
}

// Flush writes out everything that cannot be part of an anchor. Everything except a held tag start
// is written as it is scanned, so there is nothing to do; the method exists so that callers need
// not know that.
func (in *Injector) Flush() error { return in.err }

// Close ends the stream: it writes a held tag start and, when the page showed it is a document but
// had no anchor, the snippet at the end. It does not close the destination.
func (in *Injector) Close() error {
	if in.err != nil {
		return in.err
	}
	switch in.phase {
	case afterHead:
		if in.st == sTagOpen || in.st == sEndTagOpen {
			// A "<" or "</" that the stream ends on is text: the snippet goes before it.
			in.insert()
			break
		}
		in.release()
		in.insert()
	case seeking:
		in.release()
		if in.docSeen {
			in.insert()
		}
		in.phase = done
	}
	return in.err
}

func (in *Injector) write(b []byte) {
	if in.err != nil || len(b) == 0 {
		return
	}
	if in.gathered != nil {
		*in.gathered = append(*in.gathered, b...)
		return
	}
	if _, err := in.dst.Write(b); err != nil {
		in.err = err
	}
}

// release writes the held tag start unchanged.
func (in *Injector) release() {
	if in.holding {
		in.holding = false
		in.write(in.hold[:in.nhold])
		in.nhold = 0
	}
}

// insert writes the snippet before whatever is held (the tag it must precede) and ends scanning.
func (in *Injector) insert() {
	in.at = in.n - int64(in.nhold)
	in.write(in.snippet)
	in.release()
	in.phase = done
}

func (in *Injector) giveUp() {
	in.release()
	in.phase = done
}

// decide is called while a tag start is held, after each byte of its name and when the name ends
// (ended reports which). It releases the tag, inserts before it, or keeps holding.
func (in *Injector) decide(ended bool) {
	if !in.holding {
		return
	}
	name := in.name[:in.nname]
	if in.nname > 6 {
		in.release() // no anchor name is that long
		return
	}
	switch in.phase {
	case seeking:
		if in.endTag {
			if ended && (is(name, "head") || is(name, "body") || is(name, "html")) {
				in.insert()
			} else if !ended && (prefix(name, "head") || prefix(name, "body") || prefix(name, "html")) {
				return
			} else {
				in.release()
			}
			return
		}
		if ended && is(name, "body") {
			in.insert()
		} else if ended || !(prefix(name, "head") || prefix(name, "body")) {
			in.release() // <head> itself: the phase changes when its '>' arrives
		}
	case afterHead:
		if in.endTag || !prefix(name, "meta") || (ended && !is(name, "meta")) {
			in.insert()
		} else if ended {
			in.release()
		}
	}
}

// tagDone is called at the '>' that ends a start or end tag.
func (in *Injector) tagDone() {
	in.st = sData
	if in.endTag {
		in.raw = rawNone
		return
	}
	name := in.name[:in.nname]
	if in.phase == seeking {
		switch {
		case is(name, "head"):
			in.phase = afterHead
		case is(name, "html"):
			in.docSeen = true
		}
	}
	switch {
	case is(name, "script"):
		in.raw, in.st = rawScript, sScript
	case is(name, "style"), is(name, "xmp"), is(name, "iframe"), is(name, "noembed"),
		is(name, "noframes"), is(name, "noscript"), is(name, "title"), is(name, "textarea"):
		in.raw, in.st = rawText, sRaw
	case is(name, "plaintext"):
		in.raw, in.st = rawPlaintext, sPlaintext
	}
	if in.raw != rawNone {
		in.rawName, in.rawLen = in.name, in.nname
	}
}

// state is a state of the HTML standard's tokenizer (§13.2.5), reduced to what decides where tags,
// comments and raw text begin and end.
type state uint8

const (
	sData state = iota
	sTagOpen
	sEndTagOpen
	sTagName
	sBeforeAttrName
	sAttrName
	sAfterAttrName
	sBeforeAttrValue
	sAttrValueDQ
	sAttrValueSQ
	sAttrValueUnquoted
	sAfterAttrValueQuoted
	sSelfClosing
	sMarkupDecl        // after "<!"
	sMarkupDeclDash    // after "<!-"
	sMarkupDeclDoctype // matching "<!doctype"
	sBogusComment
	sCommentStart
	sCommentStartDash
	sComment
	sCommentEndDash
	sCommentEnd
	sCommentEndBang
	sRaw        // RAWTEXT and RCDATA
	sRawLT      // "<" in raw text
	sRawEndName // "</" in raw text, matching the element's name
	sPlaintext
	sScript
	sScriptLT
	sScriptEndName
	sScriptEscapeStart
	sScriptEscapeStartDash
	sScriptEscaped
	sScriptEscapedDash
	sScriptEscapedDashDash
	sScriptEscapedLT
	sScriptEscapedEndName
	sScriptDoubleEscapeStart
	sScriptDoubleEscaped
	sScriptDoubleEscapedDash
	sScriptDoubleEscapedDashDash
	sScriptDoubleEscapedLT
	sScriptDoubleEscapeEnd
)

// fastStop is, for the states that only one byte value can leave, that byte; 0 for the others.
// While seeking an anchor, the Injector skips to it with bytes.IndexByte.
var fastStop = [sScriptDoubleEscapeEnd + 1]byte{
	sData:         '<',
	sAttrValueDQ:  '"',
	sAttrValueSQ:  '\'',
	sBogusComment: '>',
	sComment:      '-',
	sRaw:          '<',
	sPlaintext:    '<',
	sScript:       '<',
}

// step advances the tokenizer by one byte.
func (in *Injector) step(c byte) {
	for {
		if !in.step1(c) {
			return
		}
	}
}

// step1 handles c in the current state and reports whether c must be reconsumed in the new one.
func (in *Injector) step1(c byte) (reconsume bool) {
	switch in.st {
	case sData:
		if c == '<' {
			in.st = sTagOpen
		}
	case sTagOpen:
		switch {
		case isAlpha(c):
			in.startName(c, false)
		case c == '/':
			in.st = sEndTagOpen
		case c == '!':
			in.st = sMarkupDecl
			in.release()
		case c == '?':
			in.st = sBogusComment
			in.release()
		default:
			in.st = sData
			return true
		}
	case sEndTagOpen:
		switch {
		case isAlpha(c):
			in.startName(c, true)
		case c == '>':
			in.st = sData // "</>" is no token at all
			in.release()
		default:
			in.st = sBogusComment
			in.release()
		}
	case sTagName:
		switch {
		case isSpace(c):
			in.st = sBeforeAttrName
			in.decide(true)
		case c == '/':
			in.st = sSelfClosing
			in.decide(true)
		case c == '>':
			in.decide(true)
			in.tagDone()
		default:
			in.addName(c)
			in.decide(false)
		}
	case sBeforeAttrName:
		switch {
		case isSpace(c):
		case c == '/':
			in.st = sSelfClosing
		case c == '>':
			in.tagDone()
		default: // including '=', which starts a name here
			in.st = sAttrName
		}
	case sAttrName:
		switch {
		case isSpace(c):
			in.st = sAfterAttrName
		case c == '/':
			in.st = sSelfClosing
		case c == '>':
			in.tagDone()
		case c == '=':
			in.st = sBeforeAttrValue
		}
	case sAfterAttrName:
		switch {
		case isSpace(c):
		case c == '/':
			in.st = sSelfClosing
		case c == '=':
			in.st = sBeforeAttrValue
		case c == '>':
			in.tagDone()
		default:
			in.st = sAttrName
		}
	case sBeforeAttrValue:
		switch {
		case isSpace(c):
		case c == '"':
			in.st = sAttrValueDQ
		case c == '\'':
			in.st = sAttrValueSQ
		case c == '>':
			in.tagDone()
		default:
			in.st = sAttrValueUnquoted
		}
	case sAttrValueDQ:
		if c == '"' {
			in.st = sAfterAttrValueQuoted
		}
	case sAttrValueSQ:
		if c == '\'' {
			in.st = sAfterAttrValueQuoted
		}
	case sAttrValueUnquoted:
		switch {
		case isSpace(c):
			in.st = sBeforeAttrName
		case c == '>':
			in.tagDone()
		}
	case sAfterAttrValueQuoted:
		switch {
		case isSpace(c):
			in.st = sBeforeAttrName
		case c == '/':
			in.st = sSelfClosing
		case c == '>':
			in.tagDone()
		default:
			in.st = sBeforeAttrName
			return true
		}
	case sSelfClosing:
		if c == '>' {
			in.tagDone()
		} else {
			in.st = sBeforeAttrName
			return true
		}
	case sMarkupDecl:
		switch {
		case c == '-':
			in.st = sMarkupDeclDash
		case lower(c) == 'd':
			in.st, in.match = sMarkupDeclDoctype, 1
		default:
			in.st = sBogusComment
			return true
		}
	case sMarkupDeclDash:
		if c == '-' {
			in.st = sCommentStart
		} else {
			in.st = sBogusComment
			return true
		}
	case sMarkupDeclDoctype:
		if lower(c) != "doctype"[in.match] {
			in.st = sBogusComment
			return true
		}
		in.match++
		if in.match == len("doctype") {
			// A doctype ends at the first '>', quoted or not, like a bogus comment.
			in.docSeen = true
			in.st = sBogusComment
		}
	case sBogusComment:
		if c == '>' {
			in.st = sData
		}
	case sCommentStart:
		switch c {
		case '-':
			in.st = sCommentStartDash
		case '>':
			in.st = sData
		default:
			in.st = sComment
			return true
		}
	case sCommentStartDash:
		switch c {
		case '-':
			in.st = sCommentEnd
		case '>':
			in.st = sData
		default:
			in.st = sComment
			return true
		}
	case sComment:
		if c == '-' {
			in.st = sCommentEndDash
		}
	case sCommentEndDash:
		if c == '-' {
			in.st = sCommentEnd
		} else {
			in.st = sComment
			return true
		}
	case sCommentEnd:
		switch c {
		case '>':
			in.st = sData
		case '!':
			in.st = sCommentEndBang
		case '-':
		default:
			in.st = sComment
			return true
		}
	case sCommentEndBang:
		switch c {
		case '-':
			in.st = sCommentEndDash
		case '>':
			in.st = sData
		default:
			in.st = sComment
			return true
		}
	case sRaw:
		if c == '<' {
			in.st = sRawLT
		}
	case sRawLT:
		if c == '/' {
			in.st, in.match = sRawEndName, 0
		} else {
			in.st = sRaw
			return true
		}
	case sRawEndName:
		if in.endOfRawName(c, sRaw) {
			return true
		}
	case sPlaintext:
	case sScript:
		if c == '<' {
			in.st = sScriptLT
		}
	case sScriptLT:
		switch c {
		case '/':
			in.st, in.match = sScriptEndName, 0
		case '!':
			in.st = sScriptEscapeStart
		default:
			in.st = sScript
			return true
		}
	case sScriptEndName:
		if in.endOfRawName(c, sScript) {
			return true
		}
	case sScriptEscapeStart:
		if c == '-' {
			in.st = sScriptEscapeStartDash
		} else {
			in.st = sScript
			return true
		}
	case sScriptEscapeStartDash:
		if c == '-' {
			in.st = sScriptEscapedDashDash
		} else {
			in.st = sScript
			return true
		}
	case sScriptEscaped:
		switch c {
		case '-':
			in.st = sScriptEscapedDash
		case '<':
			in.st = sScriptEscapedLT
		}
	case sScriptEscapedDash:
		switch c {
		case '-':
			in.st = sScriptEscapedDashDash
		case '<':
			in.st = sScriptEscapedLT
		default:
			in.st = sScriptEscaped
		}
	case sScriptEscapedDashDash:
		switch c {
		case '-':
		case '<':
			in.st = sScriptEscapedLT
		case '>':
			in.st = sScript
		default:
			in.st = sScriptEscaped
		}
	case sScriptEscapedLT:
		switch {
		case c == '/':
			in.st, in.match = sScriptEscapedEndName, 0
		case isAlpha(c):
			in.st, in.match = sScriptDoubleEscapeStart, 0
			return true
		default:
			in.st = sScriptEscaped
			return true
		}
	case sScriptEscapedEndName:
		if in.endOfRawName(c, sScriptEscaped) {
			return true
		}
	case sScriptDoubleEscapeStart:
		switch in.matchScript(c) {
		case matchMore:
		case matchWord:
			in.st = sScriptDoubleEscaped
		case matchFail:
			in.st = sScriptEscaped
			return true
		}
	case sScriptDoubleEscaped:
		switch c {
		case '-':
			in.st = sScriptDoubleEscapedDash
		case '<':
			in.st = sScriptDoubleEscapedLT
		}
	case sScriptDoubleEscapedDash:
		switch c {
		case '-':
			in.st = sScriptDoubleEscapedDashDash
		case '<':
			in.st = sScriptDoubleEscapedLT
		default:
			in.st = sScriptDoubleEscaped
		}
	case sScriptDoubleEscapedDashDash:
		switch c {
		case '-':
		case '<':
			in.st = sScriptDoubleEscapedLT
		case '>':
			in.st = sScript
		default:
			in.st = sScriptDoubleEscaped
		}
	case sScriptDoubleEscapedLT:
		if c == '/' {
			in.st, in.match = sScriptDoubleEscapeEnd, 0
		} else {
			in.st = sScriptDoubleEscaped
			return true
		}
	case sScriptDoubleEscapeEnd:
		switch in.matchScript(c) {
		case matchMore:
		case matchWord:
			in.st = sScriptEscaped
		case matchFail:
			in.st = sScriptDoubleEscaped
			return true
		}
	}
	return false
}

type matchResult uint8

const (
	matchMore matchResult = iota // a prefix of the word so far
	matchWord                    // the word, ended by whitespace, '/' or '>'
	matchFail
)

// matchScript matches "script" followed by a delimiter, case-insensitively, one byte at a time.
func (in *Injector) matchScript(c byte) matchResult {
	const word = "script"
	switch {
	case in.match < len(word) && lower(c) == word[in.match]:
		in.match++
		return matchMore
	case in.match == len(word) && isDelim(c):
		return matchWord
	}
	return matchFail
}

// endOfRawName matches the raw-text element's end tag name after "</". On a match the end tag
// continues in the tag states; on a mismatch the state falls back to back, and c is reconsumed.
func (in *Injector) endOfRawName(c byte, back state) (reconsume bool) {
	switch {
	case in.match < in.rawLen && lower(c) == in.rawName[in.match]:
		in.match++
		return false
	case in.match == in.rawLen && isDelim(c):
		in.endTag = true
		in.name, in.nname = in.rawName, in.rawLen
		switch c {
		case '>':
			in.tagDone()
		case '/':
			in.st = sSelfClosing
		default:
			in.st = sBeforeAttrName
		}
		return false
	}
	in.st = back
	return true
}

func (in *Injector) startName(c byte, endTag bool) {
	in.st = sTagName
	in.endTag = endTag
	in.nname = 0
	in.addName(c)
	in.decide(false)
}

func (in *Injector) addName(c byte) {
	if in.nname < len(in.name) {
		in.name[in.nname] = lower(c)
		in.nname++
	}
}

func is(name []byte, s string) bool { return string(name) == s }

func prefix(name []byte, s string) bool {
	return len(name) <= len(s) && string(name) == s[:len(name)]
}

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// isSpace reports whether c is HTML whitespace. The tokenizer sees CR as LF after newline
// normalization, so CR counts too.
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r' }

func isDelim(c byte) bool { return isSpace(c) || c == '/' || c == '>' }

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
