package config

import (
	"fmt"
	"slices"
	"strings"
)

// sections lists the keys each section of the file may hold, by section
// path, in the order the documentation gives them.
var sections = map[string][]string{
	"": {"trust_domain", "data_dir", "admin_socket", "workload_socket", "audit_log", "log_level",
		"ca", "bundle_endpoint", "federation", "telemetry", "datastore"},
	"ca":                       {"key_type", "ca_ttl", "x509_svid_ttl", "jwt_svid_ttl", "upstream"},
	"ca.upstream":              {"cert_file", "key_file", "bundle_file"},
	"bundle_endpoint":          {"address", "refresh_hint", "profile", "endpoint_spiffe_id", "web", "rate_limit"},
	"bundle_endpoint.web":      {"cert_file", "key_file", "acme"},
	"bundle_endpoint.web.acme": {"directory_url", "domain_name", "email", "tos_accepted", "ca_file", "renew_before"},
	"federation":               {"onboarding_dir", "class_name", "min_refresh", "max_refresh", "ca_file"},
	"telemetry":                {"address", "dashboard"},
	"datastore":                {"driver", "dsn"},
}

// unknownKey explains that key is not allowed in the section at path, and
// guesses what was meant.
func unknownKey(path, key string) string {
	known := sections[path]
	msg := fmt.Sprintf("unknown key (known keys here: %s)", strings.Join(known, ", "))
	if s := suggest(path, key); s != "" {
		msg += "; did you mean " + s + "?"
	}
	return msg
}

// suggest returns a known key close to key in the section at path, or else
// the full paths of other sections holding key, or "".
func suggest(path, key string) string {
	const maxLen = 64 // keep the edit distance cheap on garbage input
	if len(key) > maxLen {
		return ""
	}
	for _, k := range sections[path] {
		if distance(strings.ToLower(key), k) <= max(1, len(k)/3) {
			return k
		}
	}
	var elsewhere []string
	for section, keys := range sections {
		if section != path && slices.Contains(keys, strings.ToLower(key)) {
			elsewhere = append(elsewhere, join(section, strings.ToLower(key)))
		}
	}
	slices.Sort(elsewhere)
	return strings.Join(elsewhere, " or ")
}

// distance returns the Levenshtein edit distance between a and b in bytes.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
