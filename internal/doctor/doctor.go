// Package doctor runs named health checks against a running server: CA
// health, rotation schedule, the bundle endpoint as partners see it, its
// certificate, partners' freshness and expiry, federation gaps, file
// permissions and datastore integrity. Each check passes, warns or fails
// with a one-line fix and a docs anchor.
package doctor

import (
	"cmp"
	"context"
	"crypto/x509"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/federation"
	"github.com/treatyhq/treaty/internal/finding"
	"github.com/treatyhq/treaty/internal/probe"
	"github.com/treatyhq/treaty/internal/profile"
)

// Authority is what the checks read of the local CA.
type Authority interface {
	TrustDomain() spiffeid.TrustDomain
	Bundle() *spiffebundle.Bundle
	State(kind datastore.AuthorityKind) ca.State
}

// Doctor holds what the checks look at.
type Doctor struct {
	CA          Authority
	CATTL       time.Duration
	RefreshHint time.Duration
	// EndpointURL is our advertised bundle endpoint ("" without one);
	// EndpointProfile and EndpointID how partners authenticate it.
	EndpointURL     string
	EndpointProfile string
	EndpointID      spiffeid.ID
	// EndpointRoots are the roots an https_web endpoint is checked with:
	// the roots the server trusts for https_web partners (the system's
	// plus federation.ca_file), so that an endpoint whose certificate comes
	// from a private CA passes once that CA is in ca_file, as it must be
	// for partners. nil means the system roots.
	EndpointRoots  *x509.CertPool
	EndpointExpiry func() time.Time
	Federation     func() []federation.Status
	Gaps           func() int
	DataDir        string
	KeysDir        string
	Sockets        map[string]string // name → path
	AuditLog       string
	Integrity      func(ctx context.Context) error
	// SPIRE, when set, checks the SPIRE server treaty is the federation
	// layer of; its CA is SPIRE's, so the ca and rotation checks give way
	// to this one.
	SPIRE func(ctx context.Context) error
	// NextAuthority, when set, says which partners with receipts have the
	// prepared authority of a kind (ca.CA.NextAuthorityCoverage).
	NextAuthority func(ctx context.Context, kind datastore.AuthorityKind) (ca.Coverage, bool, error)
	// Datastore describes the store Integrity checks and what to do when
	// the check fails; zero means the SQLite file in DataDir.
	Datastore DatastoreCheck
	Now       func() time.Time
}

// Run runs every check. Each finding's check is the check's name, and its
// Doc the anchor in docs/doctor.md that explains it.
func (d *Doctor) Run(ctx context.Context) []finding.Finding {
	if d.Now == nil {
		d.Now = time.Now
	}
	rest := []finding.Finding{
		d.endpoint(ctx), d.endpointCert(), d.relationships(), d.partnerExpiry(),
		d.gaps(), d.permissions(), d.integrity(ctx),
	}
	if d.SPIRE != nil {
		return append([]finding.Finding{d.spire(ctx)}, rest...)
	}
	own := []finding.Finding{d.ca(), d.rotation()}
	if d.NextAuthority != nil {
		own = append(own, d.nextAuthority(ctx))
	}
	return append(own, rest...)
}

// nextAuthority warns while partners with receipts lack a prepared
// authority: the rotation waits for them, and at its deadline they break.
func (d *Doctor) nextAuthority(ctx context.Context) finding.Finding {
	now := d.Now()
	var held, lacking []string
	for _, kind := range []datastore.AuthorityKind{datastore.KindX509, datastore.KindJWT} {
		cov, prepared, err := d.NextAuthority(ctx, kind)
		switch {
		case err != nil:
			return check("next-authority", finding.Warn, "could not read which partners fetched our bundle: "+err.Error(), "check the datastore")
		case !prepared:
			continue
		case len(cov.Lack) == 0:
			held = append(held, fmt.Sprintf("all %d partners with receipts have the next %s authority %s", len(cov.Have), ca.KindName(kind), cov.AuthorityID))
			continue
		}
		lack := make([]string, len(cov.Lack))
		for i, r := range cov.Lack {
			lack[i] = fmt.Sprintf("%s (last fetched sequence %d, %s ago)", r.TrustDomain.Name(), r.Sequence, now.Sub(r.FetchedAt).Round(time.Minute))
		}
		lacking = append(lacking, fmt.Sprintf("%d/%d partners have the next %s authority %s (sequence %d); lacking: %s", len(cov.Have), len(cov.Have)+len(cov.Lack),
			ca.KindName(kind), cov.AuthorityID, cov.Sequence, strings.Join(lack, ", ")))
	}
	switch {
	case len(lacking) > 0:
		return check("next-authority", finding.Warn, strings.Join(lacking, "; "),
			"ask them why they do not fetch our bundle (are they up, can they reach our endpoint?); activation waits for them until its deadline, then they reject SVIDs it signs")
	case len(held) > 0:
		return check("next-authority", finding.Pass, strings.Join(held, "; "), "")
	}
	return check("next-authority", finding.Pass, "no authority is prepared", "")
}

func (d *Doctor) spire(ctx context.Context) finding.Finding {
	if err := d.SPIRE(ctx); err != nil {
		return check("spire-server", finding.Fail, err.Error(),
			"check that spire-server runs and that treaty's user may use its admin socket (spire_server.admin_socket)")
	}
	return check("spire-server", finding.Pass, "the SPIRE server answers; its CA signs, treaty publishes its bundle", "")
}

func check(id finding.CheckID, sev finding.Severity, msg, fix string) finding.Finding {
	return finding.Finding{Check: id, Severity: sev, Message: msg, Fix: fix, Doc: "docs/doctor.md#" + string(id)}
}

func (d *Doctor) ca() finding.Finding {
	now := d.Now()
	var notes []string
	for _, kind := range []datastore.AuthorityKind{datastore.KindX509, datastore.KindJWT} {
		st := d.CA.State(kind)
		if st.Active == nil {
			return check("ca", finding.Fail, fmt.Sprintf("no active %s authority: nothing can be signed", kind),
				fmt.Sprintf("treaty localauthority %s prepare, then activate", kind))
		}
		left := st.Active.ExpiresAt.Sub(now)
		if left < d.CATTL/6 && st.Prepared == nil {
			return check("ca", finding.Warn, fmt.Sprintf("the active %s authority expires in %s and no successor is prepared", kind, left.Round(time.Minute)),
				"check the server log for rotation errors; treaty localauthority "+string(kind)+" prepare")
		}
		notes = append(notes, fmt.Sprintf("%s authority %s… expires in %s", kind, st.Active.ID[:min(8, len(st.Active.ID))], left.Round(time.Hour)))
	}
	return check("ca", finding.Pass, strings.Join(notes, "; "), "")
}

func (d *Doctor) rotation() finding.Finding {
	need := time.Duration(ca.MinPublishedHints) * d.RefreshHint
	published := d.CATTL / 3 // prepared at 1/2 of the lifetime, activated at 5/6
	msg := fmt.Sprintf("a successor is published %s before use, %.1f refresh hints of %s (at least %d needed)",
		published.Round(time.Minute), float64(published)/float64(d.RefreshHint), d.RefreshHint, ca.MinPublishedHints)
	if published < need {
		return check("rotation", finding.Fail, msg, "lengthen ca.ca_ttl or shorten bundle_endpoint.refresh_hint")
	}
	return check("rotation", finding.Pass, msg, "")
}

func (d *Doctor) endpoint(ctx context.Context) finding.Finding {
	if d.EndpointURL == "" {
		return check("bundle-endpoint", finding.Warn, "no bundle endpoint: partners cannot fetch our bundle, so every rotation has to be carried to them by hand",
			"set bundle_endpoint.address (and a public address for partners)")
	}
	cfg := probe.Config{URL: d.EndpointURL, Timeout: 5 * time.Second, TrustDomain: d.CA.TrustDomain(), Profile: d.EndpointProfile, Now: d.Now}
	switch d.EndpointProfile {
	case string(profile.HTTPSSPIFFE):
		cfg.Bundle, cfg.EndpointID = d.CA.Bundle(), d.EndpointID
	case string(profile.HTTPSWeb):
		cfg.Roots = d.EndpointRoots
	}
	r := probe.Run(ctx, cfg)
	if r.Verdict != finding.Fail {
		return check("bundle-endpoint", finding.Pass, fmt.Sprintf("%s answers as %s", d.EndpointURL, d.EndpointProfile), "")
	}
	step := firstFailed(r.Steps)
	fix := cmp.Or(step.Fix, "run treaty probe "+d.EndpointURL+" for each step and its fix")
	if step.Check == finding.CheckID(profile.HTTPSWeb) && strings.Contains(step.Message, "unknown authority") {
		fix = "if the certificate comes from a private CA, put that CA in federation.ca_file: doctor checks our endpoint with the roots we trust partners' with, and partners need the CA in theirs too"
	}
	return check("bundle-endpoint", finding.Fail, fmt.Sprintf("%s does not work as %s: %s failed: %s", d.EndpointURL, d.EndpointProfile, step.Check, step.Message), fix)
}

// firstFailed returns the first failed step of a probe.
func firstFailed(steps []finding.Finding) finding.Finding {
	for _, s := range steps {
		if s.Severity == finding.Fail {
			return s
		}
	}
	return finding.Finding{Check: "probe", Message: "a step failed"}
}

func (d *Doctor) endpointCert() finding.Finding {
	if d.EndpointExpiry == nil || d.EndpointURL == "" {
		return check("endpoint-certificate", finding.Pass, "no bundle endpoint", "")
	}
	exp := d.EndpointExpiry()
	switch left := exp.Sub(d.Now()); {
	case exp.IsZero():
		return check("endpoint-certificate", finding.Fail, "the bundle endpoint has no certificate yet", "see the server log (ACME or certificate files)")
	case left <= 0:
		return check("endpoint-certificate", finding.Fail, "the bundle endpoint's certificate has expired", "renew it (web profile: replace cert_file; ACME: see the server log)")
	case left < 14*24*time.Hour && d.EndpointProfile == string(profile.HTTPSWeb):
		return check("endpoint-certificate", finding.Warn, fmt.Sprintf("the web certificate expires in %s", left.Round(time.Hour)), "renew the certificate files; treaty reloads them when they change")
	default:
		return check("endpoint-certificate", finding.Pass, "expires "+exp.UTC().Format(time.RFC3339), "")
	}
}

func (d *Doctor) relationships() finding.Finding {
	var bad, soso []string
	n := 0
	for _, st := range d.Federation() {
		switch st.State {
		case federation.StateStale:
			bad = append(bad, st.TrustDomain+" (stale: "+st.LastError+")")
		case federation.StateFailing, federation.StateNeverFetched:
			soso = append(soso, st.TrustDomain+" ("+string(st.State)+reason(st.LastError)+")")
		}
		if st.State != federation.StateStatic {
			n++
		}
	}
	switch {
	case len(bad) > 0:
		return check("relationships", finding.Fail, strings.Join(bad, "; "), "treaty federation status explains each failure; treaty probe <url> checks the endpoint")
	case len(soso) > 0:
		return check("relationships", finding.Warn, strings.Join(soso, "; "), "treaty federation status shows the last error and its fix")
	}
	return check("relationships", finding.Pass, fmt.Sprintf("%d relationship(s), all healthy", n), "")
}

// reason is ": err", or nothing without one.
func reason(err string) string {
	if err == "" {
		return ""
	}
	return ": " + err
}

func (d *Doctor) partnerExpiry() finding.Finding {
	now := d.Now()
	var soon, gone []string
	for _, st := range d.Federation() {
		switch left := st.EarliestExpiry.Sub(now); {
		case st.EarliestExpiry.IsZero():
		case left <= 0:
			gone = append(gone, st.TrustDomain)
		case left < 7*24*time.Hour:
			soon = append(soon, fmt.Sprintf("%s in %s", st.TrustDomain, left.Round(time.Hour)))
		}
	}
	switch {
	case len(gone) > 0:
		return check("partner-expiry", finding.Fail, "partners with an expired authority: "+strings.Join(gone, ", "), "refresh them (treaty federation refresh), or import their current bundle")
	case len(soon) > 0:
		return check("partner-expiry", finding.Warn, "authorities expiring within 7 days: "+strings.Join(soon, ", "), "check that their newer authorities arrive (treaty bundle list -id …)")
	}
	return check("partner-expiry", finding.Pass, "no partner authority expires within 7 days", "")
}

func (d *Doctor) gaps() finding.Finding {
	if n := d.Gaps(); n > 0 {
		return check("federation-gaps", finding.Warn, fmt.Sprintf("%d entry/trust-domain pair(s) without a bundle", n), "treaty federation status lists them; create the relationship or bundle set")
	}
	return check("federation-gaps", finding.Pass, "every trust domain entries federate with has a bundle", "")
}

func (d *Doctor) permissions() finding.Finding {
	var problems []string
	if info, err := os.Stat(d.DataDir); err == nil && info.Mode().Perm()&0o077 != 0 {
		problems = append(problems, fmt.Sprintf("data directory %s is %s", d.DataDir, info.Mode().Perm()))
	}
	_ = filepath.WalkDir(d.KeysDir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		if info, err := e.Info(); err == nil && info.Mode().Perm()&0o077 != 0 {
			problems = append(problems, fmt.Sprintf("key %s is %s", path, info.Mode().Perm()))
		}
		return nil
	})
	for name, path := range d.Sockets {
		if info, err := os.Stat(path); err == nil && name == "admin_socket" && info.Mode().Perm()&0o077 != 0 {
			problems = append(problems, fmt.Sprintf("%s %s is %s", name, path, info.Mode().Perm()))
		}
	}
	if d.AuditLog != "" {
		if info, err := os.Stat(d.AuditLog); err == nil && info.Mode().Perm()&0o077 != 0 {
			problems = append(problems, fmt.Sprintf("audit log %s is %s", d.AuditLog, info.Mode().Perm()))
		}
	}
	if len(problems) > 0 {
		return check("permissions", finding.Fail, strings.Join(problems, "; "), "chmod 700 the data directory and 600 the keys, the admin socket and the audit log")
	}
	return check("permissions", finding.Pass, "data directory, keys, admin socket and audit log are private", "")
}

// DatastoreCheck names what the datastore check found when it passed, and
// the fix when it failed.
type DatastoreCheck struct {
	OK, Fix string
}

func (d *Doctor) integrity(ctx context.Context) finding.Finding {
	dc := d.Datastore
	if dc.OK == "" {
		dc = DatastoreCheck{OK: "SQLite integrity check ok", Fix: "stop the server, copy the data directory aside, and restore from backup"}
	}
	if err := d.Integrity(ctx); err != nil {
		return check("datastore", finding.Fail, err.Error(), dc.Fix)
	}
	return check("datastore", finding.Pass, dc.OK, "")
}
