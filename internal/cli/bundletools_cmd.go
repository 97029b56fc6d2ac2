package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/finding"
)

// clock is the time offline checks judge expiry by; tests pin it.
var clock = time.Now

// Offline bundle tools: no server needed.
func bundleToolCommands() []command {
	return []command{
		{"bundle inspect", "describe a bundle file: each authority, its key, validity and fingerprint (offline)", runBundleInspect},
		{"bundle validate", "check a bundle file the way a careful operator would, and explain each finding (offline)", runBundleValidate},
		{"bundle convert", "convert a bundle between SPIFFE JSON, PEM and a plain JWK Set (offline)", runBundleConvert},
	}
}

// optionalTrustDomain parses -trustDomain when given.
func optionalTrustDomain(value string) (spiffeid.TrustDomain, error) {
	if value == "" {
		return spiffeid.TrustDomain{}, nil
	}
	return trustDomainArg("trustDomain", value)
}

func runBundleInspect(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "bundle inspect")
	tdFlag := fs.String("trustDomain", "", "the bundle's trust domain (default: from its certificates' SPIFFE IDs)")
	output := outputFlag(fs)
	path, err := parseWithArg(fs, args, "a bundle file (or - for standard input)")
	if err != nil {
		return err
	}
	if err := checkChoice("output", *output, outputPretty, outputJSON); err != nil {
		return err
	}
	td, err := optionalTrustDomain(*tdFlag)
	if err != nil {
		return err
	}
	data, err := readInput(e, path)
	if err != nil {
		return err
	}
	in, err := bundle.Inspect(td, data, clock())
	if err != nil {
		return fmt.Errorf("%w\nRun `treaty bundle validate %s -trustDomain <td>` for every finding and its fix", err, path)
	}
	if *output == outputJSON {
		err = printIndented(e, in)
	} else {
		printInspection(e, in)
	}
	if err == nil && in.EffectivelyEmpty {
		err = fmt.Errorf("every entry of the bundle is ignored (see the warnings), so it is effectively empty: no SVID of %s can be verified with it", in.TrustDomain)
	}
	return err
}

func printInspection(e *env, in *bundle.Inspection) {
	w := tabwriter.NewWriter(e.stdout, 0, 4, 1, ' ', 0)
	fmt.Fprintf(w, "Trust domain:\t%s\n", in.TrustDomain)
	fmt.Fprintf(w, "Format:\t%s\n", in.Format)
	fmt.Fprintf(w, "Refresh hint:\t%s\n", orDash(in.RefreshHint))
	seq := "-"
	if in.Sequence != nil {
		seq = fmt.Sprint(*in.Sequence)
	}
	fmt.Fprintf(w, "Sequence:\t%s\n", seq)
	fmt.Fprintf(w, "Fingerprint:\tsha256:%s\n", in.Fingerprint)
	_ = w.Flush()
	for i, a := range in.Authorities {
		e.printf("\n[%d] %s, %s\n", i+1, a.Use, a.KeyType)
		w := tabwriter.NewWriter(e.stdout, 0, 4, 1, ' ', 0)
		if a.Use == bundle.UseJWTSVID {
			fmt.Fprintf(w, "    Key ID:\t%s\n", a.KeyID)
		} else {
			fmt.Fprintf(w, "    Subject key ID:\t%s\n", a.KeyID)
			if a.SPIFFEID != "" {
				fmt.Fprintf(w, "    SPIFFE ID:\t%s\n", a.SPIFFEID)
			}
			fmt.Fprintf(w, "    Subject:\t%s\n", a.Subject)
			fmt.Fprintf(w, "    Issuer:\t%s\n", a.Issuer)
			fmt.Fprintf(w, "    CA:\t%t\n", a.IsCA)
			fmt.Fprintf(w, "    Valid:\t%s to %s (%s)\n", a.NotBefore.UTC().Format(time.RFC3339), a.NotAfter.UTC().Format(time.RFC3339), expiresPhrase(a.ExpiresIn))
		}
		fmt.Fprintf(w, "    SHA-256:\t%s\n", a.SHA256)
		_ = w.Flush()
	}
	if len(in.Warnings) > 0 {
		e.printf("\nWarnings:\n")
		for _, warning := range in.Warnings {
			e.printf("  %s\n", warning)
		}
	}
}

func expiresPhrase(in string) string {
	if strings.HasPrefix(in, "expired") {
		return in
	}
	return "expires in " + in
}

func runBundleValidate(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "bundle validate")
	tdFlag := fs.String("trustDomain", "", "the trust domain the bundle must belong to (required)")
	within := fs.Duration("expiryWarning", bundle.DefaultExpiryWarning, "warn about authorities expiring within this time")
	strict := fs.Bool("strict", false, "exit 1 on warnings too")
	output := outputFlag(fs)
	path, err := parseWithArg(fs, args, "a bundle file (or - for standard input)")
	if err != nil {
		return err
	}
	if err := checkChoice("output", *output, outputPretty, outputJSON); err != nil {
		return err
	}
	if *tdFlag == "" {
		return usagef("-trustDomain is required: a bundle is only valid for the trust domain it belongs to")
	}
	td, err := trustDomainArg("trustDomain", *tdFlag)
	if err != nil {
		return err
	}
	data, err := readInput(e, path)
	if err != nil {
		return err
	}
	v := bundle.Validate(td, data, bundle.ValidateOptions{Now: clock(), ExpiryWarning: *within})
	worst := v.Worst()
	if *output == outputJSON {
		out := struct {
			TrustDomain string            `json:"trust_domain"`
			Format      string            `json:"format"`
			Result      finding.Severity  `json:"result"`
			Findings    []finding.Finding `json:"findings"`
			Ignored     []bundle.Ignored  `json:"ignored"`
		}{v.TrustDomain, v.Format, worst, v.Findings, v.Ignored}
		if err := printIndented(e, out); err != nil {
			return err
		}
	} else {
		printValidation(e, path, v)
	}
	return validationExit(worst, *strict)
}

func printValidation(e *env, path string, v *bundle.Validation) {
	e.printf("Checking %s as a %s bundle of %s\n\n", path, v.Format, v.TrustDomain)
	warns, fails := 0, 0
	for _, f := range v.Findings {
		e.printf("  %-4s %-13s %s\n", f.Severity, f.Check, f.Message)
		switch f.Severity {
		case finding.Warn:
			warns++
		case finding.Fail:
			fails++
		}
		if f.Fix != "" {
			e.printf("  %-18s fix: %s\n", "", f.Fix)
		}
	}
	e.printf("\nResult: %s (%d failure(s), %d warning(s))\n", verdict(v, fails, warns), fails, warns)
}

// verdict sums a validation up the way a server would treat the bundle.
func verdict(v *bundle.Validation, fails, warns int) string {
	switch {
	case v.Bundle == nil:
		return "INVALID: treaty would refuse this bundle"
	case len(v.Ignored) > 0 && v.Bundle.Empty():
		return "INVALID: every entry would be ignored, so the bundle is effectively empty"
	case fails > 0 && len(v.Ignored) > 0:
		return fmt.Sprintf("INVALID: treaty would use the rest but ignore %d entr%s", len(v.Ignored), plural(len(v.Ignored), "y", "ies"))
	case fails > 0:
		return "INVALID: fix the failures above"
	case warns > 0:
		return "usable, with warnings"
	}
	return "OK: the bundle is valid"
}

func validationExit(worst finding.Severity, strict bool) error {
	switch {
	case worst == finding.Fail:
		return errors.New("the bundle is invalid (see above)")
	case worst == finding.Warn && strict:
		return errors.New("the bundle has warnings and -strict is set (see above)")
	}
	return nil
}

func runBundleConvert(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "bundle convert")
	from := fs.String("from", bundle.FormatSPIFFE, "input format: spiffe, pem or jwks")
	to := fs.String("to", bundle.FormatPEM, "output format: spiffe, pem or jwks")
	tdFlag := fs.String("trustDomain", "", "the bundle's trust domain (default: from its certificates' SPIFFE IDs)")
	in := fs.String("in", "-", "input file; - for standard input")
	out := fs.String("out", "", "output file (default: standard output)")
	if err := parse(fs, args); err != nil {
		return err
	}
	for name, v := range map[string]string{"from": *from, "to": *to} {
		if err := checkChoice(name, v, bundle.FormatSPIFFE, bundle.FormatPEM, bundle.FormatJWKS); err != nil {
			return err
		}
	}
	td, err := optionalTrustDomain(*tdFlag)
	if err != nil {
		return err
	}
	data, err := readInput(e, *in)
	if err != nil {
		return err
	}
	if td.IsZero() {
		td = bundle.InferTrustDomain(data)
	}
	converted, notes, err := bundle.Convert(td, data, *from, *to)
	if err != nil {
		return err
	}
	for _, n := range notes {
		e.warnf("%s", n)
	}
	if *out == "" {
		_, err = e.stdout.Write(converted)
		return err
	}
	return writeFile(*out, converted, 0o644)
}
