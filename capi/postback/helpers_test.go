package postback

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The test vectors build real notifications with the sources' own schemes: these helpers are the
// sending side, written independently of the parsers' verification code.

// clickBankEnvelope encrypts plaintext the way ClickBank does and returns the JSON body. zeroPad
// selects the older NUL padding instead of PKCS#7.
func clickBankEnvelope(t testing.TB, secret string, iv []byte, plaintext []byte, zeroPad bool) []byte {
	t.Helper()
	sum := sha1.Sum([]byte(secret))
	key := []byte(hex.EncodeToString(sum[:])[:32])
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	pad := aes.BlockSize - len(plaintext)%aes.BlockSize
	padded := append([]byte(nil), plaintext...)
	if zeroPad {
		if pad == aes.BlockSize {
			pad = 0
		}
		padded = append(padded, make([]byte, pad)...)
	} else {
		padded = append(padded, bytes.Repeat([]byte{byte(pad)}, pad)...)
	}
	ct := make([]byte, len(padded))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, padded)
	body, _ := json.Marshal(map[string]string{
		"notification": base64.StdEncoding.EncodeToString(ct),
		"iv":           base64.StdEncoding.EncodeToString(iv),
	})
	return body
}

func hmacBase64(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func stripeSignature(secret string, t int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(t, 10) + "."))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// jvzooForm signs fields with JVZIPN v1's cverify and encodes them as a body.
func jvzooForm(secret string, fields url.Values) []byte {
	names := make([]string, 0, len(fields))
	for k := range fields {
		if k != "cverify" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var pre string
	for _, k := range names {
		pre += fields.Get(k) + "|"
	}
	sum := sha1.Sum([]byte(pre + secret))
	form := url.Values{}
	for k, v := range fields {
		form[k] = v
	}
	form.Set("cverify", strings.ToUpper(hex.EncodeToString(sum[:])[:8]))
	return []byte(form.Encode())
}

func shopifyRequest(secret, topic string, body []byte) Request {
	return Request{Method: http.MethodPost, Body: body, Header: http.Header{
		"X-Shopify-Topic":       {topic},
		"X-Shopify-Hmac-Sha256": {hmacBase64(secret, body)},
		"X-Shopify-Webhook-Id":  {"b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"},
		"Content-Type":          {"application/json"},
	}}
}

func wooRequest(secret string, body []byte) Request {
	return Request{Method: http.MethodPost, Body: body, Header: http.Header{
		"X-Wc-Webhook-Topic":     {"order.updated"},
		"X-Wc-Webhook-Signature": {hmacBase64(secret, body)},
		"Content-Type":           {"application/json"},
	}}
}

func stripeRequest(header string, body []byte) Request {
	return Request{Method: http.MethodPost, Body: body, Header: http.Header{"Stripe-Signature": {header}}}
}

func fixedClock(unix int64) func() time.Time {
	return func() time.Time { return time.Unix(unix, 0) }
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
