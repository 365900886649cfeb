package identity

import (
	"net/http"
	"testing"
)

func BenchmarkResolve(b *testing.B) {
	b.Run("new visitor from an ad click", func(b *testing.B) {
		r := request("www.example.com", "fbclid=IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk&utm_source=fb")
		b.ReportAllocs()
		for b.Loop() {
			Resolve(r, Options{})
		}
	})
	b.Run("returning visitor", func(b *testing.B) {
		first := Resolve(request("www.example.com", "fbclid=abc&gclid=def&ttclid=ghi"), Options{})
		r := request("www.example.com", "")
		for _, c := range first.Cookies {
			r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
		b.ReportAllocs()
		for b.Loop() {
			if res := Resolve(r, Options{}); res.NewVisitor {
				b.Fatal("returning visitor not recognized")
			}
		}
	})
}
