package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/keystore"
)

// Upstream is a CA that treaty does not own: treaty's X.509 authorities are
// intermediates signed by it, and Roots are what partners must trust.
type Upstream struct {
	// Chain is the upstream signing certificate first, then any
	// intermediates between it and a root.
	Chain []*x509.Certificate
	Key   crypto.Signer
	// Roots are the upstream trust anchors published in the bundle.
	Roots []*x509.Certificate
}

// LoadUpstream reads an upstream CA from PEM files: certFile holds the
// signing certificate (then any intermediates), keyFile its private key, and
// bundleFile the roots. Without bundleFile the last certificate of certFile
// must be self-signed and becomes the root.
func LoadUpstream(certFile, keyFile, bundleFile string) (*Upstream, error) {
	chain, err := readCertificates(certFile)
	if err != nil {
		return nil, fmt.Errorf("upstream cert_file: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("upstream key_file: %w", err)
	}
	key, err := keystore.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("upstream key_file %s: %w", keyFile, err)
	}
	up := &Upstream{Chain: chain, Key: key}
	if err := up.loadRoots(bundleFile); err != nil {
		return nil, err
	}
	return up, up.check()
}

func (up *Upstream) loadRoots(bundleFile string) error {
	if bundleFile != "" {
		roots, err := readCertificates(bundleFile)
		if err != nil {
			return fmt.Errorf("upstream bundle_file: %w", err)
		}
		up.Roots = roots
		return nil
	}
	last := up.Chain[len(up.Chain)-1]
	if last.CheckSignatureFrom(last) != nil {
		return errors.New("upstream cert_file does not end in a self-signed root: set ca.upstream.bundle_file to the upstream roots")
	}
	up.Roots = []*x509.Certificate{last}
	return nil
}

// check verifies that the key matches the certificate, that the certificate
// may sign CAs, and that it chains to one of the roots.
func (up *Upstream) check() error {
	signing := up.Chain[0]
	if !signing.IsCA || !signing.BasicConstraintsValid {
		return fmt.Errorf("upstream certificate %q is not a CA certificate", signing.Subject)
	}
	type publicKeyer interface{ Equal(crypto.PublicKey) bool }
	if pk, ok := up.Key.Public().(publicKeyer); !ok || !pk.Equal(signing.PublicKey) {
		return fmt.Errorf("upstream key_file does not match the certificate %q (key type %s)", signing.Subject, reflect.TypeOf(up.Key.Public()))
	}
	roots := x509.NewCertPool()
	for _, r := range up.Roots {
		roots.AddCert(r)
	}
	inter := x509.NewCertPool()
	for _, c := range up.Chain[1:] {
		inter.AddCert(c)
	}
	_, err := signing.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return fmt.Errorf("upstream certificate %q does not chain to the upstream roots: %w", signing.Subject, err)
	}
	return nil
}

func readCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no CERTIFICATE block found", path)
	}
	return certs, nil
}

// TaintUpstream is SPIRE's TaintX509UpstreamAuthority: skid (hex, any case)
// must be the subject key ID of the upstream certificate that signed the
// old X.509 authority, not the one that signs the active authority, as
// after the upstream CA was replaced. treaty publishes only the configured
// upstream's roots, so the old upstream has already left the bundle; what
// remains trusted of it is the old authority it signed, which is tainted:
// what that authority signed should be replaced. It returns skid in lower
// case, as SPIRE does.
func (c *CA) TaintUpstream(ctx context.Context, skid string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := c.begin()
	a, skid, err := ch.oldUpstream(skid)
	if err != nil {
		return "", err
	}
	if a.Tainted {
		return "", fmt.Errorf("the X.509 authority %s signed by upstream authority %s is already tainted: %w", a.ID, skid, ErrFailedPrecondition)
	}
	a.Tainted = true
	ch.touch(a, "tainted", "upstream authority "+skid+" tainted by operator")
	return skid, ch.commit(ctx)
}

// RevokeUpstream is SPIRE's RevokeX509UpstreamAuthority: after
// TaintUpstream, it removes the old X.509 authority the upstream
// authority skid signed, and its key.
func (c *CA) RevokeUpstream(ctx context.Context, skid string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := c.begin()
	a, skid, err := ch.oldUpstream(skid)
	if err != nil {
		return "", err
	}
	if !a.Tainted {
		return "", fmt.Errorf("upstream authority %s must be tainted before it is revoked: %w", skid, ErrFailedPrecondition)
	}
	ch.remove(a, "revoked", "upstream authority "+skid+" revoked by operator")
	return skid, ch.commit(ctx)
}

// oldUpstream finds the old X.509 authority that the upstream authority
// skid signed, checking skid as SPIRE's LocalAuthority API does.
func (ch *change) oldUpstream(skid string) (*authority, string, error) {
	if ch.c.cfg.Upstream == nil {
		return nil, "", fmt.Errorf("upstream authority is not configured: %w", ErrFailedPrecondition)
	}
	skid = strings.ToLower(skid)
	active, old := ch.inState(datastore.KindX509, datastore.StateActive), ch.inState(datastore.KindX509, datastore.StateOld)
	switch {
	case skid == "":
		return nil, "", fmt.Errorf("a subject key ID is required (see treaty localauthority x509 show): %w", ErrUnknownAuthority)
	case active != nil && skid == active.UpstreamSKID:
		return nil, "", fmt.Errorf("upstream authority %s signs the active X.509 authority; replace the upstream CA and let a new authority take over first: %w", skid, ErrUnknownAuthority)
	case old == nil || skid != old.UpstreamSKID:
		return nil, "", fmt.Errorf("upstream authority %s did not sign the old X.509 authority: %w", skid, ErrUnknownAuthority)
	}
	return old, skid, nil
}
