package cli

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"google.golang.org/grpc"
)

// Minting: SVIDs for devices and programs that cannot use the Workload
// API, with spire-server's flags and output.
func mintCommands() []command {
	return []command{
		{"x509 mint", "mint an X509-SVID for a device or program without the Workload API", runX509Mint},
		{"jwt mint", "mint a JWT-SVID for a device or program without the Workload API", runJWTMint},
	}
}

// ttlSeconds rounds a duration up to whole seconds, as spire-server does.
func ttlSeconds(ttl time.Duration) (int32, error) {
	secs := (ttl + time.Second - 1) / time.Second
	if ttl < 0 || secs > 1<<31-1 {
		return 0, usagef("-ttl %s is out of range", ttl)
	}
	return int32(secs), nil
}

// mintResult is what `x509 mint -output json` prints, as spire-server does.
type mintResult struct {
	X509SVID   [][]byte `json:"x509_svid"`
	PrivateKey []byte   `json:"private_key,omitempty"`
	RootCAs    [][]byte `json:"root_cas"`
}

func runX509Mint(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "x509 mint")
	socketPath, output := socketFlag(fs), outputFlag(fs)
	spiffeID := fs.String("spiffeID", "", "SPIFFE ID of the X509-SVID (required unless -csr names it)")
	ttl := fs.Duration("ttl", 0, "lifetime of the X509-SVID (default: the server's ca.x509_svid_ttl; never beyond the signing authority)")
	var dns listFlag
	fs.Var(&dns, "dns", "a DNS name to include in the SVID (repeatable)")
	write := fs.String("write", "", "write svid.pem, key.pem (0600) and bundle.pem into this directory instead of printing")
	csrFile := fs.String("csr", "", "a PEM or DER PKCS#10 request made on the device: the private key never leaves it (its URI SAN is the SPIFFE ID)")
	if err := parseOutput(fs, args, output); err != nil {
		return err
	}
	secs, err := ttlSeconds(*ttl)
	if err != nil {
		return err
	}
	csr, key, err := mintCSR(*csrFile, *spiffeID, dns)
	if err != nil {
		return err
	}
	return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		start := time.Now()
		resp, err := svidv1.NewSVIDClient(conn).MintX509SVID(ctx, &svidv1.MintX509SVIDRequest{Csr: csr, Ttl: secs})
		if err != nil {
			return err
		}
		b, err := bundlev1.NewBundleClient(conn).GetBundle(ctx, &bundlev1.GetBundleRequest{})
		if err != nil {
			return err
		}
		res := mintResult{X509SVID: resp.GetSvid().GetCertChain(), PrivateKey: key}
		for _, a := range b.GetX509Authorities() {
			res.RootCAs = append(res.RootCAs, a.GetAsn1())
		}
		warnCapped(e, "X509-SVID", start, *ttl, time.Unix(resp.GetSvid().GetExpiresAt(), 0))
		return printMinted(e, res, *write, *output)
	})
}

// capSlack absorbs the expiry's truncation to whole seconds: a granted
// ttl ends no earlier than a second before start+ttl.
const capSlack = time.Second

// warnCapped says, in spire-server's words and then with the fix, when the
// server granted less than the ttl asked for (a zero ttl asks for the
// default, which is never capped from here). start is when the request was
// sent; the SVID cannot have been signed before it.
func warnCapped(e *env, kind string, start time.Time, ttl time.Duration, eol time.Time) {
	if ttl <= 0 || !eol.Before(start.Add(ttl).Add(-capSlack)) {
		return
	}
	most := eol.Sub(start).Truncate(time.Hour)
	fix := fmt.Sprintf("ask for -ttl %s or less", strings.TrimSuffix(most.String(), "0m0s"))
	if most <= 0 {
		fix = fmt.Sprintf("the signing authority expires within the hour; rotate it (treaty localauthority %s prepare, then activate) and mint again", strings.ToLower(strings.TrimSuffix(kind, "-SVID")))
	}
	fmt.Fprintf(e.stderr, "%s lifetime was capped shorter than specified ttl; expires %q\n", kind, eol.UTC().Format(time.RFC3339))
	fmt.Fprintf(e.stderr, "  an SVID never outlives the authority that signs it: %s, or raise ca.ca_ttl in the server's configuration (a -ttl of up to a sixth of ca_ttl is always granted in full)\n", fix)
}

// mintCSR reads the CSR from file, or makes a P-256 key and a CSR for id.
// It returns the DER CSR and, when it made the key, the PKCS#8 key.
func mintCSR(file, id string, dns []string) ([]byte, []byte, error) {
	if file != "" {
		if id != "" || len(dns) > 0 {
			return nil, nil, usagef("-csr carries the SPIFFE ID and DNS names; do not also pass -spiffeID or -dns")
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, nil, err
		}
		if block, _ := pem.Decode(data); block != nil {
			data = block.Bytes
		}
		if _, err := x509.ParseCertificateRequest(data); err != nil {
			return nil, nil, fmt.Errorf("%s is not a PKCS#10 certificate request: %w (make one with openssl req -new -key device.key -subj /CN=device -addext subjectAltName=URI:spiffe://...)", file, err)
		}
		return data, nil, nil
	}
	if id == "" {
		return nil, nil, usagef("-spiffeID is required (or -csr)")
	}
	parsed, err := spiffeid.FromString(id)
	if err != nil {
		return nil, nil, usagef("-spiffeID %q: %v", id, err)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{parsed.URL()}, DNSNames: dns}, crypto.Signer(priv))
	if err != nil {
		return nil, nil, fmt.Errorf("make CSR: %w", err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	return csr, key, nil
}

func printMinted(e *env, res mintResult, dir, output string) error {
	svidPEM, keyPEM, bundlePEM := pemBlocks("CERTIFICATE", res.X509SVID...), pemBlocks("PRIVATE KEY", res.PrivateKey), pemBlocks("CERTIFICATE", res.RootCAs...)
	if res.PrivateKey == nil {
		keyPEM = nil
	}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		files := []struct {
			name, what string
			data       []byte
			mode       os.FileMode
		}{{"svid.pem", "X509-SVID", svidPEM, 0o644}, {"key.pem", "Private key", keyPEM, 0o600}, {"bundle.pem", "Root CAs", bundlePEM, 0o644}}
		for _, f := range files {
			if f.data == nil {
				continue
			}
			path := filepath.Join(dir, f.name)
			if err := writeFile(path, f.data, f.mode); err != nil {
				return err
			}
			e.printf("%s written to %s\n", f.what, path)
		}
		return nil
	}
	if output == outputJSON {
		out, err := json.Marshal(res) //nolint:gosec // the key is printed on purpose, as spire-server does; -csr keeps it on the device
		if err != nil {
			return err
		}
		e.printf("%s\n", out)
		return nil
	}
	e.printf("X509-SVID:\n%s\n", svidPEM)
	if keyPEM != nil {
		e.printf("Private key:\n%s\n", keyPEM)
	}
	e.printf("Root CAs:\n%s\n", bundlePEM)
	return nil
}

func pemBlocks(typ string, ders ...[]byte) []byte {
	var b bytes.Buffer
	for _, der := range ders {
		_ = pem.Encode(&b, &pem.Block{Type: typ, Bytes: der})
	}
	return b.Bytes()
}

func runJWTMint(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "jwt mint")
	socketPath, output := socketFlag(fs), outputFlag(fs)
	spiffeID := fs.String("spiffeID", "", "SPIFFE ID of the JWT-SVID (required)")
	ttl := fs.Duration("ttl", 0, "lifetime of the JWT-SVID (default: the server's ca.jwt_svid_ttl)")
	var audience listFlag
	fs.Var(&audience, "audience", "an audience for the token (repeatable, at least one)")
	write := fs.String("write", "", "write the token to this file (mode 0600) instead of printing it")
	if err := parseOutput(fs, args, output); err != nil {
		return err
	}
	if *spiffeID == "" {
		return usagef("-spiffeID is required")
	}
	if len(audience) == 0 {
		return usagef("at least one -audience is required")
	}
	id, err := spiffeid.FromString(*spiffeID)
	if err != nil {
		return usagef("-spiffeID %q: %v", *spiffeID, err)
	}
	secs, err := ttlSeconds(*ttl)
	if err != nil {
		return err
	}
	return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		start := time.Now()
		resp, err := svidv1.NewSVIDClient(conn).MintJWTSVID(ctx, &svidv1.MintJWTSVIDRequest{Id: apiID(id), Audience: audience, Ttl: secs})
		if err != nil {
			return err
		}
		token := resp.GetSvid().GetToken()
		if token == "" {
			return errors.New("the server returned no token")
		}
		warnCapped(e, "JWT-SVID", start, *ttl, time.Unix(resp.GetSvid().GetExpiresAt(), 0))
		if *write != "" {
			if err := writeFile(*write, []byte(token), 0o600); err != nil {
				return err
			}
			e.printf("JWT-SVID written to %s\n", *write)
			return nil
		}
		if *output == outputJSON {
			return printJSON(e.stdout, resp)
		}
		e.printf("%s\n", token)
		return nil
	})
}
