package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/treatyhq/treaty/internal/finding"
	"github.com/treatyhq/treaty/internal/onboarding"
	"github.com/treatyhq/treaty/internal/probe"
)

func onboardingCommands() []command {
	return []command{{"onboarding check", "check ClusterFederatedTrustDomain onboarding files, e.g. in CI for onboarding pull requests (offline)", runOnboardingCheck}}
}

// parseArgs parses flags that may come before, between or after the
// positional arguments, and returns the positional ones.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%v", err)
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// probeResult is one endpoint probed by `onboarding check -probe`.
type probeResult struct {
	Path    string           `json:"path"`
	URL     string           `json:"url"`
	Verdict finding.Severity `json:"verdict"`
	Summary string           `json:"summary"`
	Report  *probe.Report    `json:"report"`
}

func runOnboardingCheck(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "onboarding check")
	className := fs.String("className", "", "the federation.class_name of the server the files are for; files of another class are skipped")
	doProbe := fs.Bool("probe", false, "also probe each file's bundle endpoint, with the file's bundle (https_spiffe) or -caFile (https_web)")
	caFile := fs.String("caFile", "", "extra PEM roots for probing https_web endpoints")
	output := outputFlag(fs)
	paths, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		return usagef("name at least one onboarding file or directory")
	}
	if err := checkChoice("output", *output, outputPretty, outputJSON); err != nil {
		return err
	}
	report, err := onboarding.Check(paths, onboarding.CheckOptions{ClassName: *className, Now: clock()})
	if err != nil {
		return err
	}
	var probes []probeResult
	if *doProbe {
		if probes, err = probeFiles(ctx, report, *caFile); err != nil {
			return err
		}
	}
	summary, failed := checkSummary(report, probes, *doProbe)
	if *output == outputJSON {
		if err := printIndented(e, struct {
			*onboarding.CheckReport
			Probes []probeResult `json:"probes,omitempty"`
		}{report, probes}); err != nil {
			return err
		}
	} else {
		printCheck(e, report, probes)
		if !failed {
			e.printf("\n%s\n", summary)
		}
	}
	if failed {
		return errors.New(summary) // the one summary, on stderr
	}
	return nil
}

// checkSummary sums up a check in one line, and says whether it failed:
// an error in a file or an endpoint that fails.
func checkSummary(r *onboarding.CheckReport, probes []probeResult, probed bool) (string, bool) {
	errs := "no errors"
	if n := r.Errors(); n > 0 {
		errs = fmt.Sprintf("%d error(s)", n)
	}
	s := fmt.Sprintf("%d file(s), %s", len(r.Files), errs)
	failing := 0
	for _, p := range probes {
		if p.Verdict == finding.Fail {
			failing++
		}
	}
	if probed {
		f := "none failing"
		if failing > 0 {
			f = fmt.Sprintf("%d failing", failing)
		}
		s += fmt.Sprintf("; %d endpoint(s) probed, %s", len(probes), f)
	}
	return s, r.Errors() > 0 || failing > 0
}

// probeFiles probes every endpoint URL of every good file, with its profile.
func probeFiles(ctx context.Context, report *onboarding.CheckReport, caFile string) ([]probeResult, error) {
	var roots *x509.CertPool
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("-caFile: %w", err)
		}
		if roots, err = x509.SystemCertPool(); err != nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-caFile %s: no PEM certificate found", caFile)
		}
	}
	var out []probeResult
	for _, f := range report.Files {
		rel := f.Relationship
		if rel == nil {
			continue
		}
		for _, u := range rel.BundleEndpointURLs {
			rep := probe.Run(ctx, probe.Config{
				URL: u.String(), Roots: roots, Bundle: rel.TrustDomainBundle, TrustDomain: rel.TrustDomain,
				EndpointID: rel.EndpointSPIFFEID, Profile: string(rel.Profile), Timeout: 10 * time.Second, Now: clock,
			})
			out = append(out, probeResult{Path: f.Path, URL: rep.URL, Verdict: rep.Verdict, Summary: rep.Summary, Report: rep})
		}
	}
	return out, nil
}

func printCheck(e *env, r *onboarding.CheckReport, probes []probeResult) {
	for _, f := range r.Findings {
		e.printf("%s\n", f)
	}
	if len(r.Findings) > 0 {
		e.printf("\n")
	}
	for _, f := range r.Files {
		detail := ""
		if f.TrustDomain != "" {
			detail = fmt.Sprintf("  %s, %s", f.TrustDomain, f.Profile)
		}
		e.printf("%-8s %s%s\n", f.Status, f.Path, detail)
	}
	if len(probes) > 0 {
		e.printf("\n")
	}
	for _, p := range probes {
		e.printf("probe    %s  %s: %s: %s\n", p.Path, p.URL, p.Verdict, p.Summary)
		for _, s := range p.Report.Steps {
			if s.Severity != finding.Fail && s.Severity != finding.Warn {
				continue
			}
			e.printf("           %s %-13s %s\n", probeMarks[s.Severity], s.Check, s.Message)
			if s.Fix != "" {
				e.printf("                %-13s fix: %s\n", "", s.Fix)
			}
		}
	}
}
