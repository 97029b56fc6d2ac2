package adminapi

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// checkDNSNames accepts the DNS names of a CSR for an X509-SVID: host names
// of letters, digits and hyphens (RFC 1123, section 2.1), labels of 1 to 63
// characters, at most 253 in all, a wildcard only as the whole first label,
// and no wildcard that covers another name of the list, which some TLS
// stacks reject.
func checkDNSNames(names []string) error {
	seen := map[string]bool{}
	for _, name := range names {
		if err := checkDNSName(name); err != nil {
			return status.Errorf(codes.InvalidArgument, "csr DNS name %q: %v", name, err)
		}
		seen[strings.ToLower(name)] = true
	}
	for name := range seen {
		if strings.HasPrefix(name, "*.") {
			continue
		}
		if _, parent, ok := strings.Cut(name, "."); ok && seen["*."+parent] {
			return status.Errorf(codes.InvalidArgument, "csr DNS name %q is already covered by the wildcard %q: drop one of them", name, "*."+parent)
		}
	}
	return nil
}

func checkDNSName(name string) error {
	if name == "" {
		return errors.New("empty name")
	}
	if len(name) > 253 {
		return errors.New("longer than 253 characters")
	}
	if strings.HasSuffix(name, ".") {
		return errors.New("ends with a dot: leave it out")
	}
	labels := strings.Split(name, ".")
	if labels[0] == "*" && len(labels) > 1 {
		labels = labels[1:]
	}
	for _, l := range labels {
		if err := checkLabel(l); err != nil {
			return err
		}
	}
	return nil
}

func checkLabel(l string) error {
	switch {
	case l == "":
		return errors.New("empty label (two dots in a row)")
	case len(l) > 63:
		return fmt.Errorf("label %q is longer than 63 characters", l)
	case strings.HasPrefix(l, "-") || strings.HasSuffix(l, "-"):
		return fmt.Errorf("label %q starts or ends with a hyphen", l)
	}
	for _, r := range l {
		if !isHostRune(r) {
			return fmt.Errorf("label %q has %q: only letters, digits and hyphens are allowed (a wildcard only as the whole first label; internationalised names in their xn-- form)", l, r)
		}
	}
	return nil
}

func isHostRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-'
}
