package ca

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"reflect"

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
