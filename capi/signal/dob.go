package signal

import (
	"strconv"
	"time"
)

// NormalizeDateOfBirth returns a date of birth as Meta hashes it (db): YYYYMMDD. It reads the
// common ways people and shops write dates:
//
//	1997-02-16, 1997/2/16, 1997-02-16T00:00:00Z   year first
//	2/16/1997, 02-16-1997                         month first (US), unless the first number is > 12
//	16/2/1997                                     day first, because 16 cannot be a month
//	16.02.1997                                    day first: dots are the European convention
//	19970216                                      compact, year first
//	16 Feb 1997, February 16, 1997, 16. Februar 1997
//
// When day and month are both ≤ 12 and the separator is not a dot, the month comes first, as
// Meta's parameter builder reads it. Two-digit years are refused rather than given a century. The
// year must lie between 1900 and now's year and the date must exist and not be after now;
// otherwise ErrDateOutOfRange or ErrInvalidDate. An empty input gives "".
func NormalizeDateOfBirth(s string, now time.Time) (string, error) {
	s, err := prepare(s)
	if err != nil || s == "" {
		return "", err
	}
	return normalizeDateOfBirthPrepared(s, now)
}

// normalizeDateOfBirthPrepared is NormalizeDateOfBirth after prepare.
func normalizeDateOfBirthPrepared(s string, now time.Time) (string, error) {
	var numsBuf [7]string
	var sepsBuf [4]byte
	nums, seps := numsBuf[:0], sepsBuf[:0]
	month := 0
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			j := i
			for j < len(s) && '0' <= s[j] && s[j] <= '9' {
				j++
			}
			nums = append(nums, s[i:j])
			i = j
		case 'a' <= c && c <= 'z' || c >= 0x80:
			j := i
			for j < len(s) && ('a' <= s[j] && s[j] <= 'z' || s[j] >= 0x80) {
				j++
			}
			word := s[i:j]
			i = j
			if m, ok := monthNames[word]; ok && month == 0 {
				month = m
				continue
			}
			if word == "t" && len(nums) == 3 {
				// ISO 8601 time part: everything after it is time of day.
				i = len(s)
				continue
			}
			if !dateFiller[word] {
				return "", ErrInvalidDate
			}
		default:
			if len(seps) < 4 {
				seps = append(seps, c)
			}
			i++
		}
		if len(nums) > 6 {
			return "", ErrInvalidDate
		}
	}
	var y, m, d int
	switch {
	case month != 0 && len(nums) == 2:
		m = month
		if len(nums[0]) == 4 {
			y, d = atoi(nums[0]), atoi(nums[1])
		} else if len(nums[1]) == 4 {
			d, y = atoi(nums[0]), atoi(nums[1])
		} else {
			return "", ErrInvalidDate
		}
	case month == 0 && len(nums) == 1 && len(nums[0]) == 8:
		n := nums[0]
		y, m, d = atoi(n[:4]), atoi(n[4:6]), atoi(n[6:])
	case month == 0 && len(nums) >= 3 && len(nums[0]) == 4:
		// Year first; anything after the third number is a time of day.
		y, m, d = atoi(nums[0]), atoi(nums[1]), atoi(nums[2])
	case month == 0 && len(nums) == 3 && len(nums[2]) == 4 && len(nums[0]) <= 2 && len(nums[1]) <= 2:
		a, b := atoi(nums[0]), atoi(nums[1])
		y = atoi(nums[2])
		dayFirst := a > 12 || len(seps) > 0 && seps[0] == '.' && b <= 12
		if dayFirst {
			d, m = a, b
		} else {
			m, d = a, b
		}
	default:
		return "", ErrInvalidDate
	}
	if m < 1 || m > 12 || d < 1 || d > 31 {
		return "", ErrInvalidDate
	}
	date := time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC)
	if date.Day() != d {
		return "", ErrInvalidDate // 31 February and the like
	}
	if y < 1900 || y > now.Year() || date.After(now) {
		return "", ErrDateOutOfRange
	}
	var out [8]byte
	b := strconv.AppendInt(out[:0], int64(y*10000+m*100+d), 10)
	return string(b), nil
}

func atoi(s string) int {
	n := 0
	for i := 0; i < len(s) && i < 9; i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

// dateFiller are words that may sit in a written date without changing it ("16th of February").
var dateFiller = setOf("st", "nd", "rd", "th", "of", "the", "de", "del", "der", "den", "le", "am")

// monthNames maps month names and abbreviations (English, German, French, Spanish, Italian,
// Portuguese, Dutch), lower case, to month numbers.
var monthNames = func() map[string]int {
	m := map[string]int{}
	lists := [][]string{
		{"january", "jan", "januar", "jänner", "janvier", "janv", "enero", "ene", "gennaio", "gen", "janeiro", "januari"},
		{"february", "feb", "februar", "février", "fevrier", "févr", "fevr", "febrero", "febbraio", "fevereiro", "fev", "februari"},
		{"march", "mar", "märz", "maerz", "mars", "marzo", "março", "marco", "maart", "mrt"},
		{"april", "apr", "avril", "avr", "abril", "abr", "aprile"},
		{"may", "mai", "mayo", "maggio", "mag", "maio", "mei"},
		{"june", "jun", "juni", "juin", "junio", "giugno", "giu", "junho"},
		{"july", "jul", "juli", "juillet", "juil", "julio", "luglio", "lug", "julho"},
		{"august", "aug", "août", "aout", "agosto", "ago", "augustus"},
		{"september", "sep", "sept", "septembre", "septiembre", "settembre", "set", "setembro"},
		{"october", "oct", "oktober", "okt", "octobre", "octubre", "ottobre", "ott", "outubro", "out"},
		{"november", "nov", "novembre", "noviembre", "novembro"},
		{"december", "dec", "dezember", "dez", "décembre", "decembre", "déc", "diciembre", "dic", "dicembre", "dezembro"},
	}
	for i, names := range lists {
		for _, n := range names {
			m[n] = i + 1
		}
	}
	return m
}()
