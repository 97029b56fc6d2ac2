package cli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"google.golang.org/grpc"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/finding"
	"github.com/treatyhq/treaty/internal/probe"
	"github.com/treatyhq/treaty/internal/profile"
)

func probeCommands() []command {
	return []command{{"probe", "check a bundle endpoint like a federation client would, and explain what is wrong", runProbe}}
}

// parseWithArg parses flags around exactly one positional argument, so
// that `treaty probe URL -caFile f` and `treaty probe -caFile f URL` both
// work.
func parseWithArg(fs *flag.FlagSet, args []string, what string) (string, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", err
		}
		return "", usagef("%v", err)
	}
	if fs.NArg() == 0 {
		return "", usagef("%s is required", what)
	}
	arg := fs.Arg(0)
	if err := fs.Parse(fs.Args()[1:]); err != nil {
		return "", usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return "", usagef("unexpected argument %q", fs.Arg(0))
	}
	return arg, nil
}

func runProbe(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "probe")
	caFile := fs.String("caFile", "", "extra PEM roots for https_web validation (enterprise or test CA)")
	bundleFile := fs.String("bundle", "", "the partner's SPIFFE bundle, to verify an https_spiffe endpoint")
	socketPath := fs.String("socketPath", "", "use the bundle a running treaty server holds for the endpoint's trust domain")
	trustDomain := fs.String("trustDomain", "", "the partner's trust domain (default: from the endpoint's SPIFFE ID or bundle)")
	endpointID := fs.String("endpointSpiffeID", "", "the SPIFFE ID the endpoint should present")
	insecure := fs.Bool("insecure", false, "read the bundle even if no profile validates the endpoint")
	endpointProfile := fs.String("bundleEndpointProfile", "", "the profile the relationship uses, https_web or https_spiffe (default: detect it)")
	output := outputFlag(fs)
	target, err := parseWithArg(fs, args, "the endpoint URL (e.g. https://bundle.partner.example:8443)")
	if err != nil {
		return err
	}
	if err := checkChoice("output", *output, outputPretty, outputJSON); err != nil {
		return err
	}
	if *endpointProfile != "" {
		if err := checkChoice("bundleEndpointProfile", *endpointProfile, string(profile.HTTPSWeb), string(profile.HTTPSSPIFFE)); err != nil {
			return err
		}
	}
	cfg := probe.Config{URL: target, Insecure: *insecure, Profile: *endpointProfile}
	if err := probeTrust(&cfg, *caFile, *bundleFile, *trustDomain, *endpointID); err != nil {
		return err
	}
	if *socketPath != "" {
		cfg.LookupBundle = lookupBundle(*socketPath)
	}
	report := probe.Run(ctx, cfg)
	if *output == outputJSON {
		out, err := json.MarshalIndent(report, "", "  ")
		if err != nil {
			return err
		}
		e.printf("%s\n", out)
	} else {
		printProbe(e, report)
	}
	if report.Verdict == finding.Fail {
		return errors.New("the endpoint would not work for federation (see above)")
	}
	return nil
}

func probeTrust(cfg *probe.Config, caFile, bundleFile, trustDomain, endpointID string) error {
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return fmt.Errorf("-caFile: %w", err)
		}
		roots, err := x509.SystemCertPool()
		if err != nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("-caFile %s: no PEM certificate found", caFile)
		}
		cfg.Roots = roots
	}
	var err error
	if trustDomain != "" {
		if cfg.TrustDomain, err = trustDomainArg("trustDomain", trustDomain); err != nil {
			return err
		}
	}
	if endpointID != "" {
		if cfg.EndpointID, err = spiffeid.FromString(endpointID); err != nil {
			return usagef("-endpointSpiffeID %q: %v", endpointID, err)
		}
		if cfg.TrustDomain.IsZero() {
			cfg.TrustDomain = cfg.EndpointID.TrustDomain()
		}
	}
	if bundleFile != "" {
		return probeBundle(cfg, bundleFile)
	}
	return nil
}

// probeBundle reads -bundle for the partner's trust domain (which must be
// known, from -trustDomain or -endpointSpiffeID, or from the file itself).
func probeBundle(cfg *probe.Config, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("-bundle: %w", err)
	}
	td := cfg.TrustDomain
	if td.IsZero() {
		return usagef("-bundle needs -trustDomain or -endpointSpiffeID, to know whose bundle it is")
	}
	res, err := bundle.Parse(td, data, bundle.Options{})
	if err != nil {
		return fmt.Errorf("-bundle %s: %w", path, err)
	}
	cfg.Bundle = res.Bundle
	return nil
}

// lookupBundle asks a running server for the bundle it holds.
func lookupBundle(socketPath string) func(context.Context, spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	return func(ctx context.Context, td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
		var out *spiffebundle.Bundle
		err := withClient(ctx, socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
			b, err := bundlev1.NewBundleClient(conn).GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: td.Name()})
			if err != nil {
				return err
			}
			out, err = apiToSPIFFE(b)
			return err
		})
		return out, err
	}
}

var probeMarks = map[finding.Severity]string{finding.Pass: "ok  ", finding.Warn: "WARN", finding.Fail: "FAIL", finding.Skip: "skip"}

func printProbe(e *env, r *probe.Report) {
	e.printf("Probing %s\n\n", r.URL)
	for i, s := range r.Steps {
		e.printf("  %s %-13s %s\n", probeMarks[s.Severity], s.Check, s.Message)
		if s.Fix != "" {
			e.printf("       %-13s fix: %s\n", "", s.Fix)
		}
		if s.Check == "tls" && len(r.Chain) > 0 && i >= 0 {
			printChain(e, r.Chain)
		}
	}
	e.printf("\nVerdict: %s: %s\n", strings.ToUpper(strings.TrimSpace(probeMarks[r.Verdict])), r.Summary)
	if r.Create != "" {
		e.printf("\nRelationship:\n  %s\n\nOnboarding file:\n%s", r.Create, indentLines(r.Onboarding, "  "))
	}
}

func printChain(e *env, chain []probe.Certificate) {
	for i, c := range chain {
		e.printf("       chain[%d] subject %q, issuer %q\n", i, c.Subject, c.Issuer)
		var sans []string
		sans = append(sans, c.DNSNames...)
		sans = append(sans, c.IPs...)
		sans = append(sans, c.URIs...)
		e.printf("                SANs %s; valid %s to %s; CA %t\n", strings.Join(sans, ", "),
			c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), c.IsCA)
	}
}

func indentLines(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = prefix + lines[i]
	}
	return strings.Join(lines, "\n") + "\n"
}
