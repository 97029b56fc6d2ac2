package cli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/treatyhq/treaty/internal/bundle"
)

// Bundle formats, spelled as spire-server spells them.
const (
	formatPEM    = "pem"
	formatSPIFFE = "spiffe"
)

// Output styles for read commands.
const (
	outputPretty = "pretty"
	outputJSON   = "json"
)

func bundleCommands() []command {
	return []command{
		{"bundle show", "print this trust domain's bundle", runBundleShow},
		{"bundle list", "print federated bundles", runBundleList},
		{"bundle set", "store a partner trust domain's bundle (bootstrap)", runBundleSet},
		{"bundle delete", "delete a partner trust domain's bundle", runBundleDelete},
		{"bundle count", "count stored bundles, this trust domain's included", runBundleCount},
	}
}

func formatFlag(fs *flag.FlagSet) *string {
	return fs.String("format", formatPEM, "bundle format: pem or spiffe")
}

func outputFlag(fs *flag.FlagSet) *string {
	return fs.String("output", outputPretty, "output style: pretty or json")
}

func checkChoice(flagName, value string, choices ...string) error {
	if slices.Contains(choices, value) {
		return nil
	}
	return usagef("-%s %q: use %s", flagName, value, strings.Join(choices, " or "))
}

func runBundleShow(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "bundle show")
	socketPath, format, output := socketFlag(fs), formatFlag(fs), outputFlag(fs)
	id := fs.String("id", "", "show the federated bundle of this trust domain (e.g. spiffe://partner.example) instead of our own")
	sign := fs.Bool("sign", false, "with -format spiffe: our bundle signed by its JWT authorities, for bundle set -verify (docs/offline-federation.md)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := checkFormatOutput(*format, *output); err != nil {
		return err
	}
	if *sign {
		if *format != formatSPIFFE || *id != "" {
			return usagef("-sign signs our own bundle as a SPIFFE bundle: use -format spiffe, without -id")
		}
		return showSigned(ctx, e, *socketPath, *output)
	}
	return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		client := bundlev1.NewBundleClient(conn)
		var b *types.Bundle
		var err error
		if *id == "" {
			b, err = client.GetBundle(ctx, &bundlev1.GetBundleRequest{})
		} else {
			td, tdErr := trustDomainArg("id", *id)
			if tdErr != nil {
				return tdErr
			}
			b, err = client.GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: td.Name()})
		}
		if err != nil {
			return err
		}
		if *output == outputJSON {
			return printJSON(e.stdout, b)
		}
		return printBundle(e.stdout, b, *format)
	})
}

func checkFormatOutput(format, output string) error {
	if err := checkChoice("format", format, formatPEM, formatSPIFFE); err != nil {
		return err
	}
	return checkChoice("output", output, outputPretty, outputJSON)
}

// printBundle writes b as PEM certificates or as a SPIFFE bundle document.
func printBundle(w io.Writer, b *types.Bundle, format string) error {
	sb, err := apiToSPIFFE(b)
	if err != nil {
		return err
	}
	if format == formatPEM {
		for _, cert := range sb.X509Authorities() {
			if err := pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}); err != nil {
				return err
			}
		}
		return nil
	}
	doc, err := bundle.MarshalIndent(sb)
	if err != nil {
		return err
	}
	_, err = w.Write(doc)
	return err
}

// apiToSPIFFE converts an API bundle received from the server.
func apiToSPIFFE(b *types.Bundle) (*spiffebundle.Bundle, error) {
	td, err := spiffeid.TrustDomainFromString(b.GetTrustDomain())
	if err != nil {
		return nil, fmt.Errorf("server sent a bundle with a bad trust domain %q: %w", b.GetTrustDomain(), err)
	}
	sb := spiffebundle.New(td)
	for _, c := range b.GetX509Authorities() {
		cert, err := x509.ParseCertificate(c.GetAsn1())
		if err != nil {
			return nil, fmt.Errorf("server sent a bad certificate for %q: %w", td.Name(), err)
		}
		sb.AddX509Authority(cert)
	}
	for _, k := range b.GetJwtAuthorities() {
		pub, err := x509.ParsePKIXPublicKey(k.GetPublicKey())
		if err != nil {
			return nil, fmt.Errorf("server sent a bad JWT key %q for %q: %w", k.GetKeyId(), td.Name(), err)
		}
		if err := sb.AddJWTAuthority(k.GetKeyId(), pub); err != nil {
			return nil, err
		}
	}
	sb.SetRefreshHint(time.Duration(b.GetRefreshHint()) * time.Second)
	sb.SetSequenceNumber(b.GetSequenceNumber())
	return sb, nil
}

// printJSON writes m as compact protobuf JSON with the proto field names,
// as spire-server's -output json does. protojson varies its whitespace on
// purpose; compacting makes the output stable for scripts.
func printJSON(w io.Writer, m proto.Message) error {
	raw, err := protojson.MarshalOptions{EmitUnpopulated: true, UseProtoNames: true}.Marshal(m)
	if err != nil {
		return err
	}
	// spire-server re-encodes through a map: keys sorted, nulls dropped,
	// compact, HTML-escaped. Do the same so scripts see identical bytes.
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	return json.NewEncoder(w).Encode(dropNulls(v))
}

// dropNulls removes null members and array elements, recursively.
func dropNulls(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, val := range t {
			if val == nil {
				delete(t, k)
				continue
			}
			t[k] = dropNulls(val)
		}
	case []any:
		out := make([]any, 0, len(t))
		for _, val := range t {
			if val != nil {
				out = append(out, dropNulls(val))
			}
		}
		return out
	}
	return v
}

func runBundleList(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "bundle list")
	socketPath, format, output := socketFlag(fs), formatFlag(fs), outputFlag(fs)
	id := fs.String("id", "", "SPIFFE ID of the trust domain to print, e.g. spiffe://partner.example (default: all)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := checkFormatOutput(*format, *output); err != nil {
		return err
	}
	return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		client := bundlev1.NewBundleClient(conn)
		if *id != "" {
			td, err := trustDomainArg("id", *id)
			if err != nil {
				return err
			}
			b, err := client.GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: td.Name()})
			if err != nil {
				return err
			}
			if *output == outputJSON {
				return printJSON(e.stdout, b)
			}
			return printBundle(e.stdout, b, *format)
		}
		return listAll(ctx, e, client, *format, *output)
	})
}

func listAll(ctx context.Context, e *env, client bundlev1.BundleClient, format, output string) error {
	resp := &bundlev1.ListFederatedBundlesResponse{}
	token := ""
	for {
		page, err := client.ListFederatedBundles(ctx, &bundlev1.ListFederatedBundlesRequest{PageSize: 500, PageToken: token})
		if err != nil {
			return err
		}
		resp.Bundles = append(resp.Bundles, page.GetBundles()...)
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	if output == outputJSON {
		return printJSON(e.stdout, resp)
	}
	for i, b := range resp.GetBundles() {
		if i > 0 {
			e.printf("\n")
		}
		e.printf("****************************************\n* %s\n****************************************\n", b.GetTrustDomain())
		if err := printBundle(e.stdout, b, format); err != nil {
			return err
		}
	}
	return nil
}

// trustDomainArg accepts a trust domain given as a SPIFFE ID
// (spiffe://example.org), as spire-server's -id flags do, or as a bare name.
func trustDomainArg(flagName, value string) (spiffeid.TrustDomain, error) {
	td, err := spiffeid.TrustDomainFromString(value)
	if err != nil {
		return td, usagef("-%s %q is not a trust domain: %v (write it like spiffe://partner.example)", flagName, value, err)
	}
	return td, nil
}

func runBundleSet(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "bundle set")
	socketPath, format := socketFlag(fs), formatFlag(fs)
	id := fs.String("id", "", "SPIFFE ID of the partner trust domain, e.g. spiffe://partner.example (required)")
	path := fs.String("path", "", "file holding the bundle (default: read standard input)")
	verify := fs.Bool("verify", false, "the file is a signed bundle (bundle show -sign): store it only if a key of the bundle held signed it and it is not older")
	pin := fs.String("pinSHA256", "", "with -verify and no bundle held yet: the fingerprint the partner's bundle must have")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *verify {
		return setSigned(ctx, e, *socketPath, *id, *path, *pin)
	} else if *pin != "" {
		return usagef("-pinSHA256 checks a signed bundle: add -verify")
	}
	if *id == "" {
		return usagef("-id is required: the trust domain the bundle belongs to, e.g. -id spiffe://partner.example")
	}
	if err := checkChoice("format", *format, formatPEM, formatSPIFFE); err != nil {
		return err
	}
	td, err := trustDomainArg("id", *id)
	if err != nil {
		return err
	}
	b, err := readBundleInput(e, td, *path, *format)
	if err != nil {
		return err
	}
	return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp, err := bundlev1.NewBundleClient(conn).BatchSetFederatedBundle(ctx, &bundlev1.BatchSetFederatedBundleRequest{
			Bundle: []*types.Bundle{spiffeToAPI(b)},
		})
		if err != nil {
			return err
		}
		if err := resultError(resp.GetResults()[0].GetStatus()); err != nil {
			return err
		}
		e.printf("bundle set.\n")
		return nil
	})
}

// readBundleInput reads and checks a bundle locally, so that mistakes are
// explained before anything is sent; warnings go to stderr.
func readBundleInput(e *env, td spiffeid.TrustDomain, path, format string) (*spiffebundle.Bundle, error) {
	name := "standard input"
	var data []byte
	var err error
	if path == "" {
		data, err = io.ReadAll(io.LimitReader(e.stdin, 16<<20))
	} else {
		name = path
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	opts := bundle.Options{RequireKeys: true}
	var res *bundle.Result
	if format == formatPEM {
		res, err = bundle.ParsePEM(td, data, opts)
	} else {
		res, err = bundle.Parse(td, data, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w; nothing was stored", name, err)
	}
	for _, w := range res.Warnings {
		e.warnf("%s: %s", name, w)
	}
	return res.Bundle, nil
}

func spiffeToAPI(b *spiffebundle.Bundle) *types.Bundle {
	out := &types.Bundle{TrustDomain: b.TrustDomain().Name()}
	for _, cert := range b.X509Authorities() {
		out.X509Authorities = append(out.X509Authorities, &types.X509Certificate{Asn1: cert.Raw})
	}
	for kid, pub := range b.JWTAuthorities() {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err == nil {
			out.JwtAuthorities = append(out.JwtAuthorities, &types.JWTKey{KeyId: kid, PublicKey: der})
		}
	}
	if hint, ok := b.RefreshHint(); ok {
		out.RefreshHint = int64(hint / time.Second)
	}
	out.SequenceNumber, _ = b.SequenceNumber()
	return out
}

func resultError(st *types.Status) error {
	if codes.Code(st.GetCode()) == codes.OK { //nolint:gosec // gRPC codes are small
		return nil
	}
	return fmt.Errorf("%s", st.GetMessage())
}

func runBundleDelete(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "bundle delete")
	socketPath := socketFlag(fs)
	id := fs.String("id", "", "SPIFFE ID of the trust domain whose bundle to delete (required)")
	mode := fs.String("mode", "restrict", "what to do with entries that federate with it: restrict, delete or dissociate")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *id == "" {
		return usagef("-id is required, e.g. -id spiffe://partner.example")
	}
	modes := map[string]bundlev1.BatchDeleteFederatedBundleRequest_Mode{
		"restrict": bundlev1.BatchDeleteFederatedBundleRequest_RESTRICT, "delete": bundlev1.BatchDeleteFederatedBundleRequest_DELETE,
		"dissociate": bundlev1.BatchDeleteFederatedBundleRequest_DISSOCIATE,
	}
	m, ok := modes[*mode]
	if !ok {
		return usagef("-mode %q: use restrict, delete or dissociate", *mode)
	}
	td, err := trustDomainArg("id", *id)
	if err != nil {
		return err
	}
	return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp, err := bundlev1.NewBundleClient(conn).BatchDeleteFederatedBundle(ctx, &bundlev1.BatchDeleteFederatedBundleRequest{
			TrustDomains: []string{td.Name()}, Mode: m,
		})
		if err != nil {
			return err
		}
		if err := resultError(resp.GetResults()[0].GetStatus()); err != nil {
			return err
		}
		e.printf("bundle deleted.\n")
		return nil
	})
}

func runBundleCount(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "bundle count")
	socketPath, output := socketFlag(fs), outputFlag(fs)
	if err := parseOutput(fs, args, output); err != nil {
		return err
	}
	return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp, err := bundlev1.NewBundleClient(conn).CountBundles(ctx, &bundlev1.CountBundlesRequest{})
		if err != nil {
			return err
		}
		if *output == outputJSON {
			return printJSON(e.stdout, resp)
		}
		noun := "bundles"
		if resp.GetCount() == 1 {
			noun = "bundle"
		}
		e.printf("%d %s\n", resp.GetCount(), noun)
		return nil
	})
}
