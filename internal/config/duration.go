package config

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
)

const day = 24 * time.Hour

var errDays = errors.New("bad number of days")

// parseDuration parses a duration in the syntax of time.ParseDuration, and
// also a whole number of days in front, as in "30d" or "1d12h".
func parseDuration(s string) (time.Duration, error) {
	daysText, rest, ok := strings.Cut(s, "d")
	if !ok {
		return time.ParseDuration(s)
	}
	days, err := strconv.ParseUint(daysText, 10, 64)
	if err != nil || days > math.MaxInt64/uint64(day) {
		return 0, errDays
	}
	total := time.Duration(days) * day
	if rest == "" {
		return total, nil
	}
	if rest[0] < '0' || rest[0] > '9' {
		return 0, errDays // no sign or second "d" after the days
	}
	more, err := time.ParseDuration(rest)
	if err != nil {
		return 0, err
	}
	if more > math.MaxInt64-total {
		return 0, errDays
	}
	return total + more, nil
}

// formatDuration writes d the short way people write it: "30d", "1h",
// "1h30m" rather than "720h0m0s".
func formatDuration(d time.Duration) string {
	if d >= day && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
