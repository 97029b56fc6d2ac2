package cli

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/treatyhq/treaty/internal/adminwire"
	"github.com/treatyhq/treaty/internal/signedbundle"
)

// showSigned prints our bundle as a signed bundle file (bundle show -sign),
// signed by the server, which holds the keys.
func showSigned(ctx context.Context, e *env, socketPath, output string) error {
	return withClient(ctx, socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		raw := &structpb.Struct{}
		if err := conn.Invoke(ctx, adminwire.SignBundleMethod, &structpb.Struct{}, raw); err != nil {
			return err
		}
		if output == outputJSON {
			return printJSON(e.stdout, raw)
		}
		var resp adminwire.SignBundleResponse
		if err := adminwire.FromStruct(raw, &resp); err != nil {
			return err
		}
		e.printf("%s", resp.File)
		// Guidance on stderr, so that stdout is the file alone.
		fmt.Fprintf(e.stderr, "Signed bundle of %s, sequence %d, fingerprint %s. Partners read it with\n"+
			"  treaty bundle set -verify -path FILE\n"+
			"and, for their first file, -pinSHA256 %s told them over a channel they trust.\n",
			resp.TrustDomain, resp.Sequence, resp.Fingerprint, resp.Fingerprint)
		return nil
	})
}

// setSigned stores a partner's signed bundle (bundle set -verify) if it
// verifies against the bundle held for its trust domain, or against pin
// when none is held, and is not older.
func setSigned(ctx context.Context, e *env, socketPath, id, path, pin string) error {
	name, data, err := readSignedFile(e, path)
	if err != nil {
		return err
	}
	signed, err := signedbundle.Parse(data)
	if err != nil {
		return fmt.Errorf("%s: %w; nothing was stored", name, err)
	}
	if id != "" {
		td, err := trustDomainArg("id", id)
		if err != nil {
			return err
		}
		if td != signed.TrustDomain {
			return fmt.Errorf("%s is signed for %s, not %s; nothing was stored", name, signed.TrustDomain.Name(), td.Name())
		}
	}
	for _, w := range signed.Warnings {
		e.warnf("%s: %s", name, w)
	}
	return withClient(ctx, socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		client := bundlev1.NewBundleClient(conn)
		held, ok, err := heldBundle(ctx, client, signed.TrustDomain)
		if err != nil {
			return err
		}
		if !ok {
			held = nil // the first file: verified by pin
		}
		decision, kid, err := signed.Accept(held, pin)
		if err != nil {
			return fmt.Errorf("%s refused: %w; nothing was stored", name, err)
		}
		if decision == signedbundle.Unchanged {
			e.printf("bundle unchanged: %s sequence %d is the one held.\n", signed.TrustDomain.Name(), signed.Sequence)
			return nil
		}
		resp, err := client.BatchSetFederatedBundle(ctx, &bundlev1.BatchSetFederatedBundleRequest{Bundle: []*types.Bundle{spiffeToAPI(signed.Bundle)}})
		if err != nil {
			return err
		}
		if err := resultError(resp.GetResults()[0].GetStatus()); err != nil {
			return err
		}
		e.printf("bundle set: %s sequence %d, signed by JWT authority %s.\n", signed.TrustDomain.Name(), signed.Sequence, kid)
		return nil
	})
}

// readSignedFile reads a signed bundle file from path, or standard input.
func readSignedFile(e *env, path string) (string, []byte, error) {
	name, r := "standard input", e.stdin
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return "", nil, fmt.Errorf("read signed bundle: %w", err)
		}
		defer func() { _ = f.Close() }()
		name, r = path, f
	}
	data, err := io.ReadAll(io.LimitReader(r, signedbundle.MaxFileBytes+1))
	if err != nil {
		return "", nil, fmt.Errorf("read signed bundle: %w", err)
	}
	return name, data, nil
}

// heldBundle returns the bundle the server holds for td and whether it
// holds one.
func heldBundle(ctx context.Context, client bundlev1.BundleClient, td spiffeid.TrustDomain) (*spiffebundle.Bundle, bool, error) {
	b, err := client.GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: td.Name()})
	if status.Code(err) == codes.NotFound {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	sb, err := apiToSPIFFE(b)
	return sb, err == nil, err
}

// printSignedBundles lists the files of the signed bundles directory
// (federation status), with why each refused one was refused.
func printSignedBundles(e *env, files []adminwire.SignedBundleFile) {
	if len(files) == 0 {
		return
	}
	e.printf("\nSigned bundles directory (federation.signed_bundles_dir):\n")
	for _, f := range files {
		line := fmt.Sprintf("  %s: %s", f.File, f.Result)
		if f.TrustDomain != "" {
			line += fmt.Sprintf(" (%s sequence %d)", f.TrustDomain, f.Sequence)
		}
		if f.Reason != "" {
			line += ": " + f.Reason
		}
		e.printf("%s\n", line)
	}
}
