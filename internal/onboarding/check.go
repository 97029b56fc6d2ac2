package onboarding

import (
	"cmp"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/federation"
	"github.com/treatyhq/treaty/internal/finding"
	"github.com/treatyhq/treaty/internal/profile"
	"github.com/treatyhq/treaty/internal/yamldoc"
)

// Finding is one thing Check found about a file: a finding.Finding (fail or
// warn) at a line of the file, or about the file as a whole when Line is 0.
type Finding struct {
	finding.Finding
	Path string `json:"path"`
	Line int    `json:"line,omitempty"`
}

// String formats f as "path:line: error: message", or "warning: " for a
// warning: the form editors and CI logs link to and annotate.
func (f Finding) String() string {
	return yamldoc.Problem{File: f.Path, Line: f.Line, Message: f.Severity.Diagnostic() + ": " + f.Message}.String()
}

// CheckedFile summarises one file Check read.
type CheckedFile struct {
	Path        string   `json:"path"`
	TrustDomain string   `json:"trust_domain,omitempty"`
	Profile     string   `json:"profile,omitempty"`
	Endpoints   []string `json:"endpoints,omitempty"`
	ClassName   string   `json:"class_name,omitempty"`
	// Status is the worst severity of the file's findings: pass, warn or
	// fail; skip for a file of another className.
	Status finding.Severity `json:"status"`
	// Relationship is the relationship a good file describes.
	Relationship *federation.Relationship `json:"-"`
}

// CheckOptions tune Check.
type CheckOptions struct {
	// ClassName, when set, is the class of the server the files are for:
	// files of another class are skipped, as the server would skip them.
	ClassName string
	// Now judges bootstrap bundle expiry; zero means time.Now().
	Now time.Time
	// ExpiryWarning flags bootstrap bundles whose newest authority
	// expires within it; zero means relative to that authority's lifetime
	// and the bundle's refresh hint (see checkNewest).
	ExpiryWarning time.Duration
}

// CheckReport is the outcome of Check.
type CheckReport struct {
	Files    []CheckedFile `json:"files"`
	Findings []Finding     `json:"findings"`
}

// Errors counts the findings that fail.
func (r *CheckReport) Errors() int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == finding.Fail {
			n++
		}
	}
	return n
}

// Check validates onboarding files as a reviewer of an onboarding pull
// request would: every file is parsed as the server parses it, and the
// set is checked as a whole (one file per trust domain, consistent
// className). It is stricter than the server in one way: an https_spiffe
// file without trustDomainBundle is an error, because the relationship
// could not authenticate its endpoint until someone ran bundle set by hand.
// paths are files or directories (read like the onboarding directory:
// visible .yaml and .yml files, not recursively).
func Check(paths []string, opts CheckOptions) (*CheckReport, error) {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	files, err := expand(paths)
	if err != nil {
		return nil, err
	}
	r := &CheckReport{Files: []CheckedFile{}, Findings: []Finding{}}
	var good []File
	for _, path := range files {
		f, cf := r.checkFile(path, opts)
		r.Files = append(r.Files, cf)
		if f != nil {
			good = append(good, *f)
		}
	}
	r.checkDuplicates(good)
	r.checkClassNames()
	r.settle()
	return r, nil
}

// expand lists the files named by paths, directories expanded.
func expand(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("cannot read %s: %w", p, err)
		}
		if !info.IsDir() {
			out = append(out, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("cannot read %s: %w", p, err)
		}
		for _, e := range entries {
			if !e.IsDir() && isOnboardingFile(e.Name()) {
				out = append(out, filepath.Join(p, e.Name()))
			}
		}
	}
	return out, nil
}

// The checks of onboarding check, named in its findings.
const (
	// CheckFile: the file parses as the server would read it.
	CheckFile finding.CheckID = "file"
	// CheckClass: the file's className is the server's.
	CheckClass finding.CheckID = "class-name"
	// CheckBootstrap: an https_spiffe file carries the partner's bundle.
	CheckBootstrap finding.CheckID = "bootstrap-bundle"
	// CheckSpec: what works but deserves attention in the spec.
	CheckSpec finding.CheckID = "spec"
	// CheckBundle: trustDomainBundle's entries are all usable.
	CheckBundle finding.CheckID = "bundle"
	// CheckBundleExpiry: trustDomainBundle's authorities are valid now
	// and for a while.
	CheckBundleExpiry finding.CheckID = "bundle-expiry"
	// CheckDuplicate: one file per trust domain.
	CheckDuplicate finding.CheckID = "duplicate-trust-domain"
	// CheckClassNames: the files agree on className.
	CheckClassNames finding.CheckID = "class-names"
)

func (r *CheckReport) add(check finding.CheckID, severity finding.Severity, path string, line int, format string, args ...any) {
	f := finding.Finding{Check: check, Severity: severity, Message: fmt.Sprintf(format, args...)}
	r.Findings = append(r.Findings, Finding{Finding: f, Path: path, Line: line})
}

// checkFile parses one file and records what is wrong with it.
func (r *CheckReport) checkFile(path string, opts CheckOptions) (*File, CheckedFile) {
	cf := CheckedFile{Path: path}
	f, class, problems := load(path)
	cf.ClassName = class
	if opts.ClassName != "" && class != "" && class != opts.ClassName {
		cf.Status = finding.Skip
		r.add(CheckClass, finding.Warn, path, 0, "skipped: its className %q is not %q, so a server with federation.class_name %q ignores this file", class, opts.ClassName, opts.ClassName)
		return nil, cf
	}
	for _, p := range problems {
		r.add(CheckFile, finding.Fail, p.File, p.Line, "%s", p.Message)
	}
	if f == nil {
		return nil, cf
	}
	rel := f.Relationship
	cf.TrustDomain, cf.Profile, cf.Relationship = rel.TrustDomain.Name(), string(rel.Profile), &f.Relationship
	for _, u := range rel.BundleEndpointURLs {
		cf.Endpoints = append(cf.Endpoints, u.String())
	}
	for _, w := range f.Warnings {
		switch {
		case strings.HasPrefix(w, bundleWarningPrefix):
			// checkBundle reports these, at the bundle's line and clock.
		case rel.Profile == profile.HTTPSSPIFFE && rel.TrustDomainBundle == nil && strings.Contains(w, "cannot authenticate the endpoint"):
			r.add(CheckBootstrap, finding.Fail, path, f.trustDomainLine, "https_spiffe without trustDomainBundle: %s; add the partner's bundle (treaty bundle show -format spiffe on their side) as trustDomainBundle", w)
		default:
			r.add(CheckSpec, finding.Warn, path, f.trustDomainLine, "%s", w)
		}
	}
	if f.bundleText != nil {
		r.checkBundle(f, opts)
	}
	return f, cf
}

// checkBundle looks at trustDomainBundle as a new partner would bootstrap
// from it: every entry the parser ignores or finds odd is a warning, and an
// authority that has expired is an error, since nothing it signed verifies
// any more and the partner has surely rotated since the file was written.
func (r *CheckReport) checkBundle(f *File, opts CheckOptions) {
	td := f.Relationship.TrustDomain
	res, err := bundle.Parse(td, f.bundleText, bundle.Options{Now: opts.Now})
	if err != nil {
		return // parse reported it as a problem already
	}
	for _, fd := range res.Findings {
		if fd.Check != bundle.CheckExpiry { // checkAuthority judges validity
			r.add(CheckBundle, finding.Warn, f.Path, f.bundleLine, "%s%s", bundleWarningPrefix, fd.Message)
		}
	}
	authorities := res.Bundle.X509Authorities()
	for _, c := range authorities {
		r.checkAuthority(f, c, opts)
	}
	r.checkNewest(f, authorities, res.Bundle, opts)
}

// checkAuthority reports an X.509 authority of trustDomainBundle that is
// expired or not yet valid.
func (r *CheckReport) checkAuthority(f *File, c *x509.Certificate, opts CheckOptions) {
	switch left := c.NotAfter.Sub(opts.Now); {
	case left <= 0:
		r.add(CheckBundleExpiry, finding.Fail, f.Path, f.bundleLine, "%sauthority %q expired at %s (%s ago): a new partner cannot bootstrap from it; the partner must publish a fresh bundle (treaty bundle show -format spiffe on their side) and this file must carry it",
			bundleWarningPrefix, c.Subject, rfc3339(c.NotAfter), roughly(-left))
	case opts.Now.Before(c.NotBefore):
		r.add(CheckBundleExpiry, finding.Warn, f.Path, f.bundleLine, "%sauthority %q is not valid until %s: nothing it signs verifies before then; check the clocks on both sides",
			bundleWarningPrefix, c.Subject, rfc3339(c.NotBefore))
	}
}

// checkNewest warns when the authority of trustDomainBundle that expires
// last is near its end: then the partner signs, or will soon sign, with a
// successor this file lacks, and a new partner bootstrapping from it
// would not authenticate the endpoint. Near is relative to the
// authority's own lifetime, not a fixed window, so that a fresh bundle of
// short-lived authorities passes: the last sixth of it (treaty hands over
// to the successor at five sixths), and never less than three refresh
// hints (how far ahead the SPIFFE Federation standard, section 4.1, asks a
// new authority to be published). CheckOptions.ExpiryWarning, when set,
// is the window instead.
func (r *CheckReport) checkNewest(f *File, authorities []*x509.Certificate, b *spiffebundle.Bundle, opts CheckOptions) {
	var newest *x509.Certificate
	for _, c := range authorities {
		if newest == nil || c.NotAfter.After(newest.NotAfter) {
			newest = c
		}
	}
	if newest == nil {
		return
	}
	lifetime, left := newest.NotAfter.Sub(newest.NotBefore), newest.NotAfter.Sub(opts.Now)
	window := opts.ExpiryWarning
	if window == 0 {
		hint, _ := b.RefreshHint()
		window = max(lifetime/6, 3*hint)
	}
	if left <= 0 || left >= window || opts.Now.Before(newest.NotBefore) {
		return // expired and not yet valid are checkAuthority's
	}
	r.add(CheckBundleExpiry, finding.Warn, f.Path, f.bundleLine, "%sauthority %q expires %s, with %s of its %s lifetime left: the partner has likely begun signing with a successor this bundle lacks; ask the partner for a current bundle (treaty bundle show -format spiffe on their side)",
		bundleWarningPrefix, newest.Subject, rfc3339(newest.NotAfter), roughly(left), lifetimeWords(lifetime))
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// lifetimeWords writes a lifetime as "30-day", or as a duration when
// shorter than two days.
func lifetimeWords(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d-day", int(d.Round(time.Hour)/(24*time.Hour)))
	}
	return d.Round(time.Minute).String()
}

// roughly writes d in days when it is more than two, else in hours and
// minutes.
func roughly(d time.Duration) string {
	if d > 48*time.Hour {
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
	return d.Round(time.Minute).String()
}

// checkDuplicates reports trust domains defined by more than one file.
func (r *CheckReport) checkDuplicates(good []File) {
	_, dups := dropDuplicates(good)
	for _, p := range dups {
		r.add(CheckDuplicate, finding.Fail, p.File, p.Line, "%s", p.Message)
	}
}

// checkClassNames warns when files disagree on className.
func (r *CheckReport) checkClassNames() {
	var classes []string
	for _, f := range r.Files {
		if f.ClassName != "" && f.Status != finding.Skip && !slices.Contains(classes, f.ClassName) {
			classes = append(classes, f.ClassName)
		}
	}
	if len(classes) < 2 {
		return
	}
	slices.Sort(classes)
	for _, f := range r.Files {
		if f.ClassName != "" && f.Status != finding.Skip {
			r.add(CheckClassNames, finding.Warn, f.Path, 0, "className %q: the files disagree (%s); a server applies only those of its own class_name and those without one",
				f.ClassName, strings.Join(classes, ", "))
		}
	}
}

// settle gives each file its status and orders the findings.
func (r *CheckReport) settle() {
	slices.SortStableFunc(r.Findings, func(a, b Finding) int {
		return cmp.Or(strings.Compare(a.Path, b.Path), cmp.Compare(a.Line, b.Line))
	})
	for i := range r.Files {
		f := &r.Files[i]
		if f.Status == finding.Skip {
			continue
		}
		f.Status = finding.Pass
		for _, fd := range r.Findings {
			if fd.Path == f.Path && fd.Severity.Worse(f.Status) {
				f.Status = fd.Severity
			}
		}
	}
}
