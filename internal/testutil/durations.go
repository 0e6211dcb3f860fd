package testutil

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// durationToken is a Go duration string: numbers each followed by a unit,
// one or more ("524µs", "1.2s", "1m1.2s").
var durationToken = regexp.MustCompile(`(?:\d+(?:\.\d+)?(?:ns|µs|us|ms|s|m|h))+`)

// OverPreciseDurations returns the durations written in s with more than
// three significant digits ("524.288µs", "10.002s", "2m3.45s"): what
// people read shows durations rounded by logs.Round3. Significant digits
// are the digits of the whole duration, leading and trailing zeros not
// counted ("1.200s" has two, "0.000524s" three). A token inside a longer
// word or number ("v1.25s", "12.5MiB") is not a duration.
func OverPreciseDurations(s string) []string {
	var out []string
	for _, loc := range durationToken.FindAllStringIndex(s, -1) {
		if loc[0] > 0 {
			if r, _ := utf8.DecodeLastRuneInString(s[:loc[0]]); r == '.' || unicode.IsLetter(r) || unicode.IsDigit(r) {
				continue
			}
		}
		if loc[1] < len(s) {
			if r, _ := utf8.DecodeRuneInString(s[loc[1]:]); unicode.IsLetter(r) || unicode.IsDigit(r) {
				continue
			}
		}
		tok := s[loc[0]:loc[1]]
		digits := strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return r
			}
			return -1
		}, tok)
		if len(strings.Trim(digits, "0")) > 3 {
			out = append(out, tok)
		}
	}
	return out
}
