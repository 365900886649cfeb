package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/caddy-capi/caddy-capi/capi/event"
)

// recordFixture is one Bolt store on a file of its own for a fuzz target, with a clock the target
// sets. Its file is not synced: the targets check encodings and decisions, not durability.
type recordFixture struct {
	db  *bbolt.DB
	s   *Bolt
	now time.Time
}

func newRecordFixture(f *testing.F) *recordFixture {
	db, err := bbolt.Open(filepath.Join(f.TempDir(), "fuzz.db"), 0o600, &bbolt.Options{Timeout: time.Second, NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	fx := &recordFixture{db: db, now: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
	fx.s, err = OpenBolt(db, Options{CacheSize: -1, Now: func() time.Time { return fx.now }})
	if err != nil {
		db.Close()
		f.Fatal(err)
	}
	f.Cleanup(func() {
		fx.s.Close()
		db.Close()
	})
	return fx
}

// reset empties every visitor bucket, so that each input starts from an empty store.
func (fx *recordFixture) reset(t *testing.T) {
	t.Helper()
	err := fx.db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketVisitors, bucketByClick, bucketByEmail, bucketByCart,
			bucketByUpdated, bucketSeen, bucketSeenByExpiry} {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// recordInput is the visitor a fuzz input describes, with the plaintext it holds (IP, user agent,
// page URL, cart token, click ID, city), which must never show in an error.
type recordInput struct {
	v         Visitor
	plaintext []string
}

func makeRecord(id, ip, ua, page, cart, click, city string) recordInput {
	// Fields the store does not check are made valid UTF-8, as the conversion package leaves them:
	// JSON would replace invalid bytes, and the round trip would differ for a reason that is not
	// the store's.
	ip, ua, page, city = strings.ToValidUTF8(ip, ""), strings.ToValidUTF8(ua, ""), strings.ToValidUTF8(page, ""), strings.ToValidUTF8(city, "")
	sum := sha256.Sum256([]byte(ip + ua))
	hash := hex.EncodeToString(sum[:])
	v := Visitor{
		ID: id,
		User: event.User{
			IP: ip, UserAgent: ua, GCLID: click, ExternalID: hash,
			Meta:   event.Profile{Emails: []string{hash}, City: hash},
			Google: event.Profile{Emails: []string{hash}, City: city},
		},
		LastPageURL: page,
	}
	if click != "" {
		v.Clicks = map[string]Click{ClickGCLID: {Value: click, FirstSeen: time.Unix(1_700_000_000, 5).UTC(), LastSeen: time.Unix(1_700_000_100, 0).UTC()}}
	}
	if cart != "" {
		v.CartTokens = []string{cart}
	}
	return recordInput{v: v, plaintext: []string{ip, ua, page, cart, click, city}}
}

// write stores in.v through Update, the store's own writer, and returns what Update answered and
// the bytes it put on disk; ok is false when the writer refuses the record.
func (fx *recordFixture) write(t *testing.T, in recordInput) (Visitor, []byte, bool) {
	t.Helper()
	want, err := fx.s.Update(context.Background(), in.v.ID, func(v *Visitor) error {
		*v = in.v
		return nil
	})
	if errors.Is(err, ErrInvalid) {
		return Visitor{}, nil, false
	}
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	var raw []byte
	fx.db.View(func(tx *bbolt.Tx) error {
		raw = bytes.Clone(tx.Bucket(bucketVisitors).Get([]byte(in.v.ID)))
		return nil
	})
	if raw == nil {
		t.Fatalf("Update of %q left no record", in.v.ID)
	}
	return want, raw, true
}

func (fx *recordFixture) put(t *testing.T, id string, raw []byte) {
	t.Helper()
	if err := fx.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketVisitors).Put([]byte(id), raw) }); err != nil {
		t.Fatal(err)
	}
}

func (fx *recordFixture) load(id string) (v Visitor, found bool, err error) {
	fx.db.View(func(tx *bbolt.Tx) error {
		v, found, err = load(tx, id)
		return nil
	})
	return v, found, err
}

// addRecordSeeds seeds a record target with realistic visitors and hostile values.
func addRecordSeeds(f *testing.F) {
	for _, tc := range []struct {
		id, ip, ua, page, cart, click, city string
		at                                  uint16
		xor                                 byte
		junk                                []byte
	}{
		{"0123456789abcdef0123456789abcdef", "203.0.113.7", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36", "https://shop.example.com/p/tee?utm_source=fb", "c1-7a2b9f0e4d3c2b1a", "Cj0KCQiA-gclid-value", "springfield", 0, 0, nil},
		{"0123456789abcdef0123456789abcdef", "2001:db8::1", "curl/8.5.0", "https://shop.example.com/", "", "", "", 3, 0x01, nil},
		{"0123456789abcdef0123456789abcdef", "203.0.113.7", "Mozilla/5.0", "", "cart-2", "gclid-2", "", 180, 0x20, nil},
		{"v", "198.51.100.23", "ua \"quoted\" \\ <tag>", "https://shop.example.com/?q=a%20b", "tok", "x", "zürich", 0, 0, []byte(`{"id":"v","created":"Alice Example <alice@example.com>"}`)},
		{"v", "198.51.100.23", "ua", "", "", "", "", 0, 0, []byte(`{"id":"v","user":{"ip":12345678901}}`)},
		{"v", "198.51.100.23", "ua", "", "", "", "", 0, 0, []byte(`{"id":"v","updated":"1999-01-01T00:00:00Z"}`)},
		{"v", "", "", "", "", "", "", 0, 0, []byte("\x00\xff{")},
		{"v", "", "", "", "", "", "", 0, 0, []byte(`{"id":"v","clicks":{"gclid":"not an object"}}`)},
	} {
		f.Add(tc.id, tc.ip, tc.ua, tc.page, tc.cart, tc.click, tc.city, tc.at, tc.xor, tc.junk)
	}
}

// FuzzBoltRecordCorrupt writes a visitor through the store's own writer and reads it back: it
// round-trips exactly, through Get and through load. Then it flips one byte of the stored record
// (or replaces it with arbitrary bytes) and reads again: nothing panics; load either decodes a
// record the store would write under that key or fails with ErrDamaged, whose text names the
// visitor only as redactID does and holds none of the plaintext (IP, user agent, page URL, cart
// token, click ID, city) before or after the flip; Get answers a damaged record as absent (and
// never errs for it), the visitor's next Update replaces it and Erase deletes it; a live record
// that decodes is found, and is a fixed point of the writer's encoding, so writing it back loses
// nothing more.
func FuzzBoltRecordCorrupt(f *testing.F) {
	addRecordSeeds(f)
	fx := newRecordFixture(f)
	f.Fuzz(func(t *testing.T, id, ip, ua, page, cart, click, city string, at uint16, xor byte, junk []byte) {
		fx.reset(t)
		in := makeRecord(id, ip, ua, page, cart, click, city)
		want, raw, ok := fx.write(t, in)
		if !ok {
			return
		}
		ctx := context.Background()
		got, found, err := fx.s.Get(ctx, id)
		if err != nil || !found || !reflect.DeepEqual(got, want) {
			t.Fatalf("Get after Update = %+v, %v, %v; want %+v", got, found, err, want)
		}
		if got, found, err := fx.load(id); err != nil || !found || !reflect.DeepEqual(got, want) {
			t.Fatalf("load after Update = %+v, %v, %v; want %+v", got, found, err, want)
		}

		bad := bytes.Clone(raw)
		if xor == 0 && len(junk) > 0 {
			bad = junk
		} else {
			bad[int(at)%len(bad)] ^= xor
		}
		fx.put(t, id, bad)
		// The plaintext as it may now read: each value's encoding at its place in the flipped bytes.
		secrets := append([]string(nil), in.plaintext...)
		if len(bad) == len(raw) {
			for _, s := range in.plaintext {
				enc, _ := json.Marshal(s)
				enc = enc[1 : len(enc)-1]
				if i := bytes.Index(raw, enc); i >= 0 {
					secrets = append(secrets, string(bad[i:i+len(enc)]))
				}
			}
		}

		v, loaded, lerr := fx.load(id)
		got, found, err = fx.s.Get(ctx, id)
		if err != nil {
			t.Fatalf("Get over %q: %v; want a damaged record answered as absent", bad, err)
		}
		if lerr != nil {
			if !errors.Is(lerr, ErrDamaged) {
				t.Fatalf("load over %q: %v; want ErrDamaged", bad, lerr)
			}
			checkErrorText(t, lerr, id, secrets)
			if found {
				t.Fatalf("Get found the damaged record %q", bad)
			}
			const page = "https://shop.example.com/after-repair"
			if _, err := fx.s.Update(ctx, id, func(v *Visitor) error { v.LastPageURL = page; return nil }); err != nil {
				t.Fatalf("Update over the damaged record %q: %v", bad, err)
			}
			if got, found, err := fx.s.Get(ctx, id); err != nil || !found || got.ID != id || got.LastPageURL != page {
				t.Fatalf("after the repairing Update: %+v, %v, %v", got, found, err)
			}
			fx.put(t, id, bad)
			if err := fx.s.Erase(ctx, id); err != nil {
				t.Fatalf("Erase of the damaged record %q: %v", bad, err)
			}
			if _, found, err := fx.load(id); found || err != nil {
				t.Fatalf("Erase left the damaged record: %v, %v", found, err)
			}
			return
		}
		if !loaded {
			t.Fatalf("load found no record under %q, which holds %q", id, bad)
		}
		if !found && !expired(v.Updated, fx.now, fx.s.opts.TTL) {
			t.Fatalf("Get treats the live record %q as absent", bad)
		}
		if found && !reflect.DeepEqual(got, v) {
			t.Fatalf("Get = %+v, load = %+v", got, v)
		}
		again, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		var back Visitor
		if err := json.Unmarshal(again, &back); err != nil || !reflect.DeepEqual(back, v) {
			t.Fatalf("decoded record %+v does not survive being written back: %+v, %v", v, back, err)
		}
	})
}

// FuzzBoltRecordFlip holds load to the rule for corrupt bytes on disk: one flipped byte of a
// record the store wrote either still decodes to a record the store would write under that key
// (its own ID, passing CheckVisitor), or is an error. A record that decodes to another visitor's ID,
// a click of an unknown kind or a profile hash that is no longer hex is neither: Get answers it as
// valid, Update refuses every change to it until it expires, and Sweep deletes by the decoded ID.
//
// Its seeds are flips the rule allows (none, or inside a value); a flip it refuses is reported,
// not kept in testdata, while load does not enforce the rule (see the task report).
func FuzzBoltRecordFlip(f *testing.F) {
	fx := newRecordFixture(f)
	const ua = "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0"
	for _, tc := range []struct {
		id, ip, page, cart, click, city string
		in                              string // the flip lands on the first byte of this
		xor                             byte
	}{
		{"0123456789abcdef0123456789abcdef", "203.0.113.7", "https://shop.example.com/", "c1-7a2b", "gclid-1", "springfield", "", 0},
		{"0123456789abcdef0123456789abcdef", "203.0.113.7", "https://shop.example.com/", "", "", "", "Firefox", 0x01},
		{"v", "198.51.100.23", "https://shop.example.com/p?x=1", "", "", "", "shop", 0x20},
		{"v", "198.51.100.23", "", "tok-1", "", "zürich", "ürich", 0x80},
	} {
		in := makeRecord(tc.id, tc.ip, ua, tc.page, tc.cart, tc.click, tc.city)
		in.v.Created, in.v.Updated = fx.now, fx.now
		raw, err := json.Marshal(in.v)
		if err != nil {
			f.Fatal(err)
		}
		at := max(0, bytes.Index(raw, []byte(tc.in)))
		f.Add(tc.id, tc.ip, ua, tc.page, tc.cart, tc.click, tc.city, uint16(at), tc.xor, []byte(nil))
	}
	f.Fuzz(func(t *testing.T, id, ip, ua, page, cart, click, city string, at uint16, xor byte, _ []byte) {
		fx.reset(t)
		in := makeRecord(id, ip, ua, page, cart, click, city)
		_, raw, ok := fx.write(t, in)
		if !ok {
			return
		}
		bad := bytes.Clone(raw)
		bad[int(at)%len(bad)] ^= xor
		fx.put(t, id, bad)
		v, found, err := fx.load(id)
		if err != nil {
			return
		}
		if !found {
			t.Fatalf("load found no record under %q", id)
		}
		if v.ID != id {
			t.Fatalf("record under %q decodes as visitor %q (stored %q)", id, v.ID, bad)
		}
		if err := CheckVisitor(&v); err != nil {
			t.Fatalf("record under %q decodes to one the store refuses (%v): %q", id, err, bad)
		}
	})
}

// checkErrorText fails when err shows the visitor ID beyond its redacted prefix or any secret of
// eight bytes or more, as it is or as Go quotes it.
func checkErrorText(t *testing.T, err error, id string, secrets []string) {
	t.Helper()
	msg := err.Error()
	if len(id) > 6 && strings.Contains(msg, id) {
		t.Fatalf("error shows the visitor ID %q: %s", id, msg)
	}
	for _, s := range secrets {
		if len(s) < 8 {
			continue
		}
		q := strconv.Quote(s)
		if strings.Contains(msg, s) || strings.Contains(msg, q[1:len(q)-1]) {
			t.Fatalf("error shows the plaintext %q: %s", s, msg)
		}
	}
}

// FuzzMarkSeenStored runs MarkSeen and Seen over whatever an idempotency key's stored expiry holds
// (a valid mark, an expired one, or corrupt bytes of any length): Seen reports a mark exactly when
// the stored value is eight bytes naming a time after now; MarkSeen claims the key exactly when Seen
// did not see it, leaves a live mark untouched, and otherwise stores now+ttl with its expiry index
// entry (dropping the old one); after it the key is seen and a second MarkSeen is refused, so a
// retried postback is never counted twice; once the mark expires, Sweep removes it and the key is
// claimable again; and the key itself never reaches the file in plaintext.
func FuzzMarkSeenStored(f *testing.F) {
	exp := func(t time.Time) []byte { return binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano())) }
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	epoch := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		key    string
		stored []byte
		index  bool
		ttl    int64
	}{
		{"postback:clickbank:RCPT-0001", exp(base.Add(time.Hour)), true, int64(48 * time.Hour)},
		{"postback:clickbank:RCPT-0001", exp(base.Add(-time.Hour)), true, int64(48 * time.Hour)},
		{"postback:clickbank:RCPT-0001", exp(base.Add(-time.Hour)), false, int64(48 * time.Hour)},
		{"order:alice@example.com", exp(base), false, 1},
		{"order:1001", nil, false, int64(time.Minute)},
		{"order:1001", []byte{}, false, int64(time.Minute)},
		{"order:1001", []byte("\xff\xff\xff\xff\xff\xff\xff"), false, int64(time.Minute)},
		{"order:1001", []byte("\x7f\xff\xff\xff\xff\xff\xff\xff\x00"), false, int64(time.Minute)},
		{"order:1001", []byte("\x80\x00\x00\x00\x00\x00\x00\x00"), true, int64(time.Minute)},
		{"order:1001", []byte("\x7f\xff\xff\xff\xff\xff\xff\xff"), true, -5},
	} {
		f.Add(tc.key, tc.stored, tc.index, tc.ttl, int64(base.Sub(epoch)))
	}
	fx := newRecordFixture(f)
	f.Fuzz(func(t *testing.T, key string, stored []byte, index bool, ttlNanos, skew int64) {
		if key == "" {
			return
		}
		fx.reset(t)
		// A clock between 2000 and 2200 and a TTL from 1 ns to a year: UnixNano, which the marks
		// are stored in, covers 1678 to 2262, so now+ttl never overflows it.
		fx.now = epoch.Add(time.Duration(uint64(skew) % uint64(200*365*24*time.Hour)))
		ttl := 1 + time.Duration(uint64(ttlNanos)%uint64(365*24*time.Hour))
		h := sha256.Sum256([]byte(key))
		storedExp, valid := int64(0), len(stored) == 8
		if valid {
			storedExp = int64(binary.BigEndian.Uint64(stored))
		}
		if stored != nil {
			err := fx.db.Update(func(tx *bbolt.Tx) error {
				if err := tx.Bucket(bucketSeen).Put(h[:], stored); err != nil {
					return err
				}
				if valid && index {
					return tx.Bucket(bucketSeenByExpiry).Put(timeKey(storedExp, h[:]), nil)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		ctx := context.Background()
		live := valid && fx.now.UnixNano() < storedExp
		if seen, err := fx.s.Seen(ctx, key); err != nil || seen != live {
			t.Fatalf("Seen over stored %x at %v = %v, %v; want %v", stored, fx.now, seen, err, live)
		}
		first, err := fx.s.MarkSeen(ctx, key, ttl)
		if err != nil || first == live {
			t.Fatalf("MarkSeen over stored %x at %v = %v, %v; want %v", stored, fx.now, first, err, !live)
		}
		wantExp := storedExp
		if first {
			wantExp = fx.now.Add(ttl).UnixNano()
		}
		fx.db.View(func(tx *bbolt.Tx) error {
			got := tx.Bucket(bucketSeen).Get(h[:])
			switch {
			case !first && !bytes.Equal(got, stored):
				t.Fatalf("a live mark %x was rewritten to %x", stored, got)
			case first && (len(got) != 8 || int64(binary.BigEndian.Uint64(got)) != wantExp):
				t.Fatalf("mark stored as %x, want expiry %d", got, wantExp)
			}
			idx := tx.Bucket(bucketSeenByExpiry)
			if first && idx.Get(timeKey(wantExp, h[:])) == nil {
				t.Fatalf("new mark has no expiry index entry")
			}
			if first && valid && index && storedExp != wantExp && idx.Get(timeKey(storedExp, h[:])) != nil {
				t.Fatalf("the replaced mark's expiry index entry was left behind")
			}
			if first { // a live mark stays as it was, and the fuzzer may have put anything there
				checkNoPlaintextKey(t, tx, key)
			}
			return nil
		})
		if seen, err := fx.s.Seen(ctx, key); err != nil || !seen {
			t.Fatalf("Seen right after MarkSeen = %v, %v", seen, err)
		}
		if again, err := fx.s.MarkSeen(ctx, key, ttl); err != nil || again {
			t.Fatalf("second MarkSeen = %v, %v; want false", again, err)
		}
		if !first || (valid && index) {
			return // an old mark's index entry may be stale; sweeping is the index target's business
		}
		fx.now = time.Unix(0, wantExp)
		if _, err := fx.s.Sweep(ctx); err != nil {
			t.Fatalf("Sweep: %v", err)
		}
		if seen, err := fx.s.Seen(ctx, key); err != nil || seen {
			t.Fatalf("Seen after the mark expired and was swept = %v, %v", seen, err)
		}
		fx.db.View(func(tx *bbolt.Tx) error {
			if tx.Bucket(bucketSeen).Get(h[:]) != nil || tx.Bucket(bucketSeenByExpiry).Get(timeKey(wantExp, h[:])) != nil {
				t.Fatalf("Sweep left the expired mark")
			}
			return nil
		})
		if again, err := fx.s.MarkSeen(ctx, key, ttl); err != nil || !again {
			t.Fatalf("MarkSeen after expiry = %v, %v; want true", again, err)
		}
	})
}

// checkNoPlaintextKey fails when an idempotency key of eight bytes or more shows in any key or
// value of the store's buckets.
func checkNoPlaintextKey(t *testing.T, tx *bbolt.Tx, key string) {
	t.Helper()
	if len(key) < 8 {
		return
	}
	for _, name := range [][]byte{bucketVisitors, bucketByClick, bucketByEmail, bucketByCart,
		bucketByUpdated, bucketSeen, bucketSeenByExpiry} {
		tx.Bucket(name).ForEach(func(k, v []byte) error {
			if bytes.Contains(k, []byte(key)) || bytes.Contains(v, []byte(key)) {
				t.Fatalf("bucket %s holds the key %q in plaintext", name, key)
			}
			return nil
		})
	}
}
