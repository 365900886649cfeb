package platform

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestDecimalNumberAcceptsWhatJSONAcceptsAndNoMore(t *testing.T) {
	for _, ok := range []string{"0", "49.90", "-3", "0.5", "10", "-0.01", "123456789012345678901234567890.1"} {
		n, err := DecimalNumber(ok)
		if err != nil {
			t.Errorf("%q: %v", ok, err)
			continue
		}
		if b, err := json.Marshal(n); err != nil || string(b) != ok {
			t.Errorf("%q marshals as %s (%v)", ok, b, err)
		}
	}
	for _, bad := range []string{"", "-", ".5", "1.", "01", "1e9", "49,90", "+1", "1.2.3", "NaN", " 1", "--1", "١"} {
		if _, err := DecimalNumber(bad); !errors.Is(err, ErrNotDecimal) {
			t.Errorf("%q: err = %v, want ErrNotDecimal", bad, err)
		}
	}
}

func FuzzDecimalNumber(f *testing.F) {
	for _, s := range []string{"49.90", "01", "-0", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := DecimalNumber(s)
		if err != nil {
			return
		}
		// Whatever it accepts, encoding/json writes unchanged as a number.
		if b, err := json.Marshal(n); err != nil || string(b) != s {
			t.Fatalf("%q accepted but marshals as %s (%v)", s, b, err)
		}
	})
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		value string
		want  time.Duration
	}{
		{"", 0}, {"120", 2 * time.Minute}, {"0", 0}, {"-5", 0}, {"soon", 0},
		{"99999999999999999999", 0}, {"9999999999", 24 * time.Hour},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{now.Add(100 * 24 * time.Hour).Format(http.TimeFormat), 24 * time.Hour},
	}
	for _, tt := range tests {
		if got := RetryAfter(http.Header{"Retry-After": {tt.value}}, now); got != tt.want {
			t.Errorf("Retry-After %q = %v, want %v", tt.value, got, tt.want)
		}
	}
}

func TestRedactCoversEscapedForms(t *testing.T) {
	secret := "a/b+c d"
	in := `Post "https://x/?t=a%2Fb%2Bc+d": token a/b+c d, path a%2Fb+c%20d`
	got := Redact(in, "", secret)
	if got != `Post "https://x/?t=[redacted]": token [redacted], path [redacted]` {
		t.Errorf("got %s", got)
	}
}

func TestTriageMapsRequestPositionsToBatchIndices(t *testing.T) {
	var tr Triage
	tr.Settle(0, Permanent, "too old")
	tr.Send(1)
	tr.Send(2)
	r := tr.Result(Result{Outcome: Delivered, Events: map[int]EventResult{1: {Outcome: Retry, Reason: "x"}}})
	if r.Outcome != Delivered || len(r.Events) != 2 || r.Events[0].Reason != "too old" || r.Events[2].Outcome != Retry {
		t.Errorf("result = %+v", r)
	}
	var none Triage
	none.Settle(0, Permanent, "bad")
	if r := none.Unsent(); r.Outcome != Permanent || r.Events[0].Reason != "bad" {
		t.Errorf("unsent = %+v", r)
	}
}
