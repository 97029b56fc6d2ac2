package cli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/socket"
)

// Client commands of the Workload API, like `spire-agent api fetch`: what
// a workload on this host receives, printed or written as PEM files for
// programs that only read files.
func workloadCommands() []command {
	return []command{
		{"x509 fetch", "fetch this process's X509-SVIDs and bundles from the Workload API", runX509Fetch},
		{"jwt fetch", "fetch JWT-SVIDs for an audience from the Workload API", runJWTFetch},
		{"bundle fetch", "fetch the X.509 bundles this process may trust from the Workload API", runBundleFetch},
	}
}

func workloadSocketFlag(fs *flag.FlagSet) *string {
	return fs.String("socketPath", socket.DefaultWorkloadPath, "path to the Workload API socket (the server's workload_socket)")
}

func timeoutFlag(fs *flag.FlagSet) *time.Duration {
	return fs.Duration("timeout", 10*time.Second, "how long to wait for the Workload API")
}

// withWorkloadClient connects to the Workload API and calls fn with a
// bounded context.
func withWorkloadClient(ctx context.Context, socketPath string, timeout time.Duration, fn func(context.Context, *workloadapi.Client) error) error {
	abs, err := filepath.Abs(socketPath)
	if err != nil {
		return fmt.Errorf("socket path %q: %w", socketPath, err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr("unix://"+abs))
	if err != nil {
		return fmt.Errorf("connect to the Workload API at %s: %w", abs, err)
	}
	defer client.Close()
	return workloadError(abs, timeout, fn(ctx, client))
}

// workloadError explains Workload API failures.
func workloadError(socketPath string, timeout time.Duration, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("no answer from the Workload API at %s within %s: is a treaty server running with this workload_socket?", socketPath, timeout)
	}
	switch status.Code(err) {
	case codes.Unavailable:
		return fmt.Errorf("cannot reach the Workload API at %s: is a treaty server running with this workload_socket? (%s)", socketPath, status.Convert(err).Message())
	case codes.PermissionDenied, codes.InvalidArgument:
		return errors.New(status.Convert(err).Message())
	}
	return err
}

type x509SVIDOut struct {
	SPIFFEID  string    `json:"spiffe_id"`
	Hint      string    `json:"hint,omitempty"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	DNSNames  []string  `json:"dns_names,omitempty"`
	CertsPEM  string    `json:"certificates_pem"`
	Written   []string  `json:"written,omitempty"`
}

type bundleOut struct {
	TrustDomain string   `json:"trust_domain"`
	Authorities int      `json:"authorities"`
	PEM         string   `json:"pem"`
	Written     []string `json:"written,omitempty"`
}

func runX509Fetch(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "x509 fetch")
	socketPath, timeout, output := workloadSocketFlag(fs), timeoutFlag(fs), outputFlag(fs)
	write := fs.String("write", "", "write svid.N.pem, svid.N.key, bundle.pem and federated/<trust domain>.pem into this directory")
	if err := parseOutput(fs, args, output); err != nil {
		return err
	}
	return withWorkloadClient(ctx, *socketPath, *timeout, func(ctx context.Context, c *workloadapi.Client) error {
		start := time.Now()
		x509ctx, err := c.FetchX509Context(ctx)
		if err != nil {
			return err
		}
		elapsed := time.Since(start)
		svids := make([]x509SVIDOut, len(x509ctx.SVIDs))
		for i, s := range x509ctx.SVIDs {
			svids[i] = x509SVIDOut{SPIFFEID: s.ID.String(), Hint: s.Hint, NotBefore: s.Certificates[0].NotBefore,
				NotAfter: s.Certificates[0].NotAfter, DNSNames: s.Certificates[0].DNSNames, CertsPEM: certsPEM(s.Certificates)}
		}
		bundles := bundlesOut(x509ctx.Bundles)
		if *write != "" {
			if err := writeX509(*write, x509ctx, svids, bundles); err != nil {
				return err
			}
		}
		if *output == outputJSON {
			return printIndented(e, map[string]any{"svids": svids, "bundles": bundles})
		}
		e.printf("Received %d X509-SVID(s) after %s\n", len(svids), elapsed.Round(time.Millisecond))
		for _, s := range svids {
			e.printf("\nSPIFFE ID:         %s\n", s.SPIFFEID)
			if s.Hint != "" {
				e.printf("Hint:              %s\n", s.Hint)
			}
			e.printf("Valid after:       %s\nValid until:       %s (%s left)\n",
				s.NotBefore.UTC().Format(time.RFC3339), s.NotAfter.UTC().Format(time.RFC3339), time.Until(s.NotAfter).Round(time.Second))
			if len(s.DNSNames) > 0 {
				e.printf("DNS names:         %s\n", strings.Join(s.DNSNames, ", "))
			}
		}
		printBundleSummary(e, bundles)
		for _, s := range svids {
			for _, f := range s.Written {
				e.printf("Wrote %s\n", f)
			}
		}
		for _, b := range bundles {
			for _, f := range b.Written {
				e.printf("Wrote %s\n", f)
			}
		}
		return nil
	})
}

func printBundleSummary(e *env, bundles []bundleOut) {
	e.printf("\nTrust bundles:\n")
	for _, b := range bundles {
		e.printf("  %-40s %d authorit%s\n", b.TrustDomain, b.Authorities, plural(b.Authorities, "y", "ies"))
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func bundlesOut(set *x509bundle.Set) []bundleOut {
	var out []bundleOut
	for _, b := range set.Bundles() {
		out = append(out, bundleOut{TrustDomain: b.TrustDomain().Name(), Authorities: len(b.X509Authorities()), PEM: certsPEM(b.X509Authorities())})
	}
	slices.SortFunc(out, func(a, b bundleOut) int { return strings.Compare(a.TrustDomain, b.TrustDomain) })
	return out
}

// writeX509 writes the SVIDs, keys (0600) and bundles (0644) into dir.
func writeX509(dir string, x509ctx *workloadapi.X509Context, svids []x509SVIDOut, bundles []bundleOut) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	for i, s := range x509ctx.SVIDs {
		certFile := filepath.Join(dir, fmt.Sprintf("svid.%d.pem", i))
		keyFile := filepath.Join(dir, fmt.Sprintf("svid.%d.key", i))
		_, keyDER, err := s.MarshalRaw()
		if err != nil {
			return fmt.Errorf("encode SVID %s: %w", s.ID, err)
		}
		if err := writeFile(certFile, []byte(svids[i].CertsPEM), 0o644); err != nil {
			return err
		}
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
		if err := writeFile(keyFile, keyPEM, 0o600); err != nil {
			return err
		}
		svids[i].Written = []string{certFile, keyFile}
	}
	return writeBundles(dir, x509ctx.SVIDs[0].ID.TrustDomain(), bundles)
}

// writeBundles writes the local trust domain's bundle to bundle.pem and
// each other one to federated/<trust domain>.pem.
func writeBundles(dir string, local spiffeid.TrustDomain, bundles []bundleOut) error {
	for i, b := range bundles {
		file := filepath.Join(dir, "federated", b.TrustDomain+".pem")
		if b.TrustDomain == local.Name() {
			file = filepath.Join(dir, "bundle.pem")
		}
		if err := os.MkdirAll(filepath.Dir(file), 0o750); err != nil {
			return fmt.Errorf("create %s: %w", filepath.Dir(file), err)
		}
		if err := writeFile(file, []byte(b.PEM), 0o644); err != nil {
			return err
		}
		bundles[i].Written = []string{file}
	}
	return nil
}

// writeFile replaces path atomically, so a program reading it never sees
// half a certificate.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func certsPEM(certs []*x509.Certificate) string {
	var b strings.Builder
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.String()
}

func printIndented(e *env, v any) error {
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	e.printf("%s\n", out)
	return nil
}

type jwtSVIDOut struct {
	SPIFFEID string    `json:"spiffe_id"`
	Audience []string  `json:"audience"`
	Expiry   time.Time `json:"expiry"`
	Hint     string    `json:"hint,omitempty"`
	Token    string    `json:"token"`
}

func runJWTFetch(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "jwt fetch")
	socketPath, timeout, output := workloadSocketFlag(fs), timeoutFlag(fs), outputFlag(fs)
	audience := fs.String("audience", "", "comma-separated audiences the token is for (required)")
	spiffeID := fs.String("spiffeID", "", "only the JWT-SVID for this SPIFFE ID (default: all of this workload's)")
	write := fs.String("write", "", "write each token to <dir>/jwt.N.token (mode 0600)")
	if err := parseOutput(fs, args, output); err != nil {
		return err
	}
	auds := splitList(*audience)
	if len(auds) == 0 {
		return usagef("-audience is required")
	}
	params := jwtsvid.Params{Audience: auds[0], ExtraAudiences: auds[1:]}
	if *spiffeID != "" {
		id, err := spiffeid.FromString(*spiffeID)
		if err != nil {
			return usagef("-spiffeID %q: %v", *spiffeID, err)
		}
		params.Subject = id
	}
	return withWorkloadClient(ctx, *socketPath, *timeout, func(ctx context.Context, c *workloadapi.Client) error {
		svids, err := c.FetchJWTSVIDs(ctx, params)
		if err != nil {
			return err
		}
		out := make([]jwtSVIDOut, len(svids))
		for i, s := range svids {
			out[i] = jwtSVIDOut{SPIFFEID: s.ID.String(), Audience: s.Audience, Expiry: s.Expiry, Hint: s.Hint, Token: s.Marshal()}
		}
		if *write != "" {
			if err := os.MkdirAll(*write, 0o750); err != nil {
				return fmt.Errorf("create %s: %w", *write, err)
			}
			for i, s := range out {
				if err := writeFile(filepath.Join(*write, fmt.Sprintf("jwt.%d.token", i)), []byte(s.Token+"\n"), 0o600); err != nil {
					return err
				}
			}
		}
		if *output == outputJSON {
			return printIndented(e, map[string]any{"svids": out})
		}
		for _, s := range out {
			e.printf("SPIFFE ID:   %s\nAudience:    %s\nExpires:     %s\nToken:\n%s\n\n",
				s.SPIFFEID, strings.Join(s.Audience, ", "), s.Expiry.UTC().Format(time.RFC3339), s.Token)
		}
		return nil
	})
}

func splitList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func runBundleFetch(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "bundle fetch")
	socketPath, timeout, output := workloadSocketFlag(fs), timeoutFlag(fs), outputFlag(fs)
	write := fs.String("write", "", "write <trust domain>.pem for each bundle into this directory")
	if err := parseOutput(fs, args, output); err != nil {
		return err
	}
	return withWorkloadClient(ctx, *socketPath, *timeout, func(ctx context.Context, c *workloadapi.Client) error {
		set, err := c.FetchX509Bundles(ctx)
		if err != nil {
			return err
		}
		bundles := bundlesOut(set)
		if *write != "" {
			if err := os.MkdirAll(*write, 0o750); err != nil {
				return fmt.Errorf("create %s: %w", *write, err)
			}
			for i, b := range bundles {
				file := filepath.Join(*write, b.TrustDomain+".pem")
				if err := writeFile(file, []byte(b.PEM), 0o644); err != nil {
					return err
				}
				bundles[i].Written = []string{file}
			}
		}
		if *output == outputJSON {
			return printIndented(e, map[string]any{"bundles": bundles})
		}
		for _, b := range bundles {
			if len(b.Written) > 0 {
				e.printf("%s: %d authorit%s, wrote %s\n", b.TrustDomain, b.Authorities, plural(b.Authorities, "y", "ies"), b.Written[0])
				continue
			}
			e.printf("# %s\n%s", b.TrustDomain, b.PEM)
		}
		return nil
	})
}
