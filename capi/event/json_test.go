package event

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"testing"
	"time"
)

// fill sets every field reachable from v to a non-zero value derived from seed, so that a field the
// hand-written encoder leaves out shows up as a difference from json.Marshal.
func fill(t *testing.T, v reflect.Value, seed string) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(seed)
	case reflect.Int:
		v.SetInt(int64(len(seed)) + 1)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			fill(t, s.Index(i), seed+strconv.Itoa(i))
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for _, k := range []string{"b<" + seed, "a&" + seed} {
			val := reflect.New(v.Type().Elem()).Elem()
			fill(t, val, seed+k)
			m.SetMapIndex(reflect.ValueOf(k), val)
		}
		v.Set(m)
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Date(2026, 11, 27, 15, 4, 5, 123456789, time.FixedZone("", 3600))))
			return
		}
		for i := range v.NumField() {
			fill(t, v.Field(i), seed+"."+v.Type().Field(i).Name)
		}
	default:
		t.Fatalf("fill: %s fields are new here: teach fill and AppendJSON about them", v.Type())
	}
}

func assertSameAsMarshal(t *testing.T, e *Event) {
	t.Helper()
	want, wantErr := json.Marshal(e)
	got, gotErr := e.AppendJSON([]byte("prefix"))
	if (wantErr == nil) != (gotErr == nil) {
		t.Fatalf("AppendJSON error %v, json.Marshal error %v", gotErr, wantErr)
	}
	if wantErr != nil {
		if gotErr.Error() != wantErr.Error() || string(got) != "prefix" {
			t.Fatalf("AppendJSON failed with %q and appended %q; json.Marshal failed with %q", gotErr, got, wantErr)
		}
		return
	}
	if !bytes.Equal(got[len("prefix"):], want) {
		t.Fatalf("AppendJSON differs from json.Marshal:\n got %s\nwant %s", got[len("prefix"):], want)
	}
}

func TestAppendJSONCoversEveryField(t *testing.T) {
	var e Event
	assertSameAsMarshal(t, &e) // every omitempty field left out, the struct fields kept
	fill(t, reflect.ValueOf(&e).Elem(), "v\"<\u2028\xff")
	assertSameAsMarshal(t, &e)
	// Each field on its own, so one the encoder misplaces cannot hide behind the others.
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		for i := range v.NumField() {
			f := v.Field(i)
			name := path + v.Type().Field(i).Name
			if f.Kind() == reflect.Struct && f.Type() != reflect.TypeFor[time.Time]() {
				walk(f, name+".")
				continue
			}
			t.Run(name, func(t *testing.T) {
				var one Event
				fill(t, reflect.ValueOf(&one).Elem().FieldByIndex(fieldIndex(t, reflect.TypeFor[Event](), name)), "x")
				assertSameAsMarshal(t, &one)
			})
		}
	}
	walk(reflect.ValueOf(e), "")
}

func fieldIndex(t *testing.T, typ reflect.Type, path string) []int {
	var index []int
	for name := range bytes.SplitSeq([]byte(path), []byte(".")) {
		f, ok := typ.FieldByName(string(name))
		if !ok {
			t.Fatalf("no field %s", path)
		}
		index = append(index, f.Index...)
		typ = f.Type
	}
	return index
}

func TestAppendJSONRefusesWhatMarshalRefuses(t *testing.T) {
	for _, when := range []time.Time{
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 24*3600)),
	} {
		e := Event{Name: "Purchase", ID: "e1", Time: when}
		if _, err := json.Marshal(&e); err == nil {
			t.Fatalf("json.Marshal accepts %v: pick another case", when)
		}
		assertSameAsMarshal(t, &e)
	}
}

func FuzzAppendJSONIsMarshal(f *testing.F) {
	f.Add("Purchase", "e-1", int64(1764255845), "https://shop.example/p?a=1&b=<2>", "49.90", "k", "v", "a@b.c", 2, true)
	f.Add("", "", int64(0), "", "", "", "", "", 0, false)
	f.Add("x", "y", int64(300000000000), "", "", "", "", "", 7, true) // year 11476: refused by both
	f.Add("\u2029\x00\x1f\t", "\xff\xfe", int64(-62135596800), "\"\\", "\b\f", "\r\n", "ü", "日本", -1, true)
	f.Fuzz(func(t *testing.T, name, id string, unix int64, url, value, key, val, email string, n int, flag bool) {
		e := Event{
			Name: name, ID: id, Time: time.Unix(unix, int64(n)).UTC(), SourceURL: url, Referrer: val,
			ActionSource: key, Value: value, Currency: val, OrderID: id, ContentType: key,
			NumItems: n, SearchString: url, Test: flag,
			Consent: Consent{LimitedDataUse: flag, AdUserDataDenied: !flag},
			User: User{ExternalID: id, IP: key, UserAgent: url, FBC: value, GBRAID: val,
				Meta:   Profile{Emails: []string{email}, City: val},
				Google: Profile{Phones: []string{email, key}, Zip: value, Country: name}},
		}
		if flag {
			e.ContentIDs = []string{id, name}
			e.Contents = []Content{{ID: id, Quantity: n, ItemPrice: value}, {ID: key, Brand: url}}
			e.Custom = map[string]string{key: val, name: url}
			e.Time = e.Time.In(time.FixedZone("", n%(30*3600)))
		}
		assertSameAsMarshal(t, &e)
	})
}

func BenchmarkEncode(b *testing.B) {
	e := Event{Name: "Purchase", ID: "evt-0123456789", Time: time.Now(), SourceURL: "https://shop.example/thanks?order=1&x=2",
		ActionSource: ActionWebsite, Value: "49.90", Currency: "EUR", OrderID: "1001", ContentIDs: []string{"sku-1", "sku-2"},
		User: User{ExternalID: "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b", IP: "203.0.113.9",
			UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36", FBC: "fb.1.1700000000000.IwAR", FBP: "fb.1.1700000000000.123",
			Meta: Profile{Emails: []string{"973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"}, City: "3b5f2"}}}
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(&e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			var err error
			if buf, err = e.AppendJSON(buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
