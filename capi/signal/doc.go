// Package signal normalizes and SHA-256 hashes customer data (email, phone, name, date of birth,
// gender, address) into one event.Profile per ad platform, and reports which matching signals a
// user carries for each platform (coverage).
//
// It owns the platforms' normalization rules and nothing else: it does not store, log or send
// anything, and it must never put a plaintext value in an error, a Drop or any other output that is
// not itself the normalized value asked for. Callers hash on arrival: plaintext goes in through
// Customer, and only Profiles (hashed where the platform requires it) come out.
//
// # What each platform receives
//
// Every hash is the lowercase hex SHA-256 of the UTF-8 (NFC) normalized value.
//
//	field          Meta (user_data)            TikTok (user)                 Google (enhanced conversions)
//	email          em: hash                    email: hash                   hash, gmail/googlemail dot+plus rule
//	phone          ph: hash of digits, no '+'  phone: hash of E.164 with '+' hash of E.164 with '+'
//	first/last     fn/ln: hash                 first_name/last_name: hash    hash (prefixes/suffixes dropped)
//	date of birth  db: hash of YYYYMMDD        —                             —
//	gender         ge: hash of f|m             —                             —
//	street         —                           —                             hash
//	city           ct: hash                    city: plain                   city: plain
//	state          st: hash                    state: plain                  region: plain
//	zip            zp: hash                    zip_code: hash                postal_code: plain
//	country        country: hash (lower)       country: plain (lower)        country: plain (UPPER)
//
// TikTok's split follows the spec note (tiktok-google.md A2): email, phone, names and zip_code are
// hashed; city, state and country are sent plain. Google's follows the enhanced-conversions page
// (B2): email, phone, names and street hashed; city, region, postal code and country plain, the
// country upper-case alpha-2 as in Google's examples.
//
// Values that arrive already hashed (64 hex digits, any case) cannot be normalized again: they are
// lower-cased and passed to every platform that hashes that field, and dropped (with a Drop) for a
// platform that needs the field plain.
//
// # Where Meta's sources disagree
//
// The disagreement table in meta-capi.md §5 is resolved by following Meta's own documentation
// (Customer Information Parameters, DOC-CIP), falling back to the parameter builder where the
// documentation is silent:
//   - names: punctuation and whitespace removed ("O'Connor" → "oconnor"), Unicode letters kept;
//   - state: US state and Canadian province names mapped to their 2-letter codes;
//   - city: accented letters kept in NFC ("São Paulo" → "sãopaulo"), as the docs allow UTF-8;
//   - zip: all spaces and dashes removed ("SW1A 1AA" → "sw1a1aa"), US zips cut to 5 digits;
//   - phone: symbols, letters and leading zeros removed by formatting to E.164 with libphonenumber;
//   - date of birth: any common format reformatted to YYYYMMDD, years 1900..now;
//   - external_id: hashed (lowercase hex SHA-256 of the visitor ID);
//   - country: names mapped to ISO 3166-1 alpha-2.
package signal
