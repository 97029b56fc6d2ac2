package bundleendpoint

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// ACMEConfig configures certificates from an ACME CA (https_web).
type ACMEConfig struct {
	DirectoryURL string
	DomainName   string
	Email        string
	// CAFile holds extra roots for the ACME directory's TLS.
	CAFile string
	// RenewBefore is passed to autocert; zero means its default (30 days),
	// which autocert shortens for short-lived certificates.
	RenewBefore time.Duration
	// CacheDir keeps the account key and certificates (mode 0700).
	CacheDir string
}

// acmeCert obtains the https_web certificate from an ACME CA with
// golang.org/x/crypto/acme/autocert: tls-alpn-01 on the endpoint's own
// port, certificates cached on disk, renewal in the background while the
// current certificate keeps being served.
type acmeCert struct {
	m      *autocert.Manager
	domain string
}

func newACMECert(cfg ACMEConfig) (*acmeCert, error) {
	client, err := acmeHTTPClient(cfg.CAFile)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("acme cache: %w", err)
	}
	m := &autocert.Manager{
		Prompt:      autocert.AcceptTOS, // the operator accepted the terms in the configuration
		Cache:       autocert.DirCache(cfg.CacheDir),
		HostPolicy:  autocert.HostWhitelist(cfg.DomainName),
		RenewBefore: cfg.RenewBefore,
		Email:       cfg.Email,
		Client:      &acme.Client{DirectoryURL: cfg.DirectoryURL, HTTPClient: client},
	}
	return &acmeCert{m: m, domain: cfg.DomainName}, nil
}

func acmeHTTPClient(caFile string) (*http.Client, error) {
	if caFile == "" {
		return &http.Client{Timeout: time.Minute}, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("acme ca_file: %w", err)
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("acme ca_file %s: no PEM certificate found", caFile)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: transport, Timeout: time.Minute}, nil
}

// getCertificate answers tls-alpn-01 challenges and serves the domain's
// certificate. Clients that send no SNI (they dialled an IP address) get
// the domain's certificate too, and see a clear name mismatch.
func (a *acmeCert) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if hello.ServerName == "" {
		h := *hello
		h.ServerName = a.domain
		hello = &h
	}
	return a.m.GetCertificate(hello)
}

// current returns the certificate being served, obtaining it if needed.
// The hello is that of a modern client: autocert keeps ECDSA and RSA
// certificates apart and picks by what the client offers, and an empty
// hello would make it order an RSA certificate that real partners, which
// all offer ECDSA, never get.
func (a *acmeCert) current() (*tls.Certificate, error) {
	return a.m.GetCertificate(&tls.ClientHelloInfo{
		ServerName:       a.domain,
		CipherSuites:     []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		SupportedCurves:  []tls.CurveID{tls.CurveP256},
	})
}

// obtain gets the first certificate as soon as the endpoint listens (the
// CA validates by connecting to it), retrying with backoff until ctx ends.
func (a *acmeCert) obtain(ctx context.Context, log *slog.Logger) {
	wait := 5 * time.Second
	for {
		cert, err := a.current()
		if err == nil {
			log.Info("ACME certificate ready", attrDomain, a.domain, attrExpiresAt, cert.Leaf.NotAfter)
			return
		}
		hint := "check that the CA can reach this endpoint's port under that name (tls-alpn-01)"
		if _, ok := errors.AsType[*acme.AuthorizationError](err); ok {
			hint = "the CA could not validate the domain: " + hint
		}
		log.Error("could not obtain the ACME certificate; will retry", attrDomain, a.domain, attrError, err, attrHint, hint)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Minute)
	}
}

// cachedExpiry reads the expiry of the stored certificate without asking
// the CA, so that a metrics scrape never triggers an issuance.
func (a *acmeCert) cachedExpiry() time.Time {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	data, err := a.m.Cache.Get(ctx, a.domain)
	if err != nil {
		return time.Time{}
	}
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return time.Time{}
		}
		if block.Type == "CERTIFICATE" {
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return time.Time{}
			}
			return cert.NotAfter
		}
	}
}
