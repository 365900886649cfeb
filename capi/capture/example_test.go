package capture_test

import (
	"fmt"

	"github.com/caddy-capi/caddy-capi/capi/capture"
)

func ExampleExtract() {
	body := []byte("checkout%5Bemail%5D=jane%40example.com&checkout%5Bbilling_address%5D%5Bfirst_name%5D=Jane" +
		"&checkout%5Bbilling_address%5D%5Bzip%5D=83702&checkout%5Bshipping_address%5D%5Bzip%5D=10117&plz=99999")
	sub, err := capture.Extract("application/x-www-form-urlencoded", body, capture.Fields{capture.City: {"ort"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(sub.Customer.Emails, sub.Customer.FirstName, sub.Customer.Zip)
	// Output: [jane@example.com] Jane 83702
}
