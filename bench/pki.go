package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// webPKI is a CA and a 127.0.0.1 server certificate, both EC P-256: the
// https_web certificate for treaty, the bare server and the fleet server.
type webPKI struct {
	caFile, certFile, keyFile string
	cert                      tls.Certificate
	caCert                    *x509.Certificate
}

func newWebPKI(dir string) (*webPKI, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, caKey.Public(), caKey)
	if err != nil {
		return nil, err
	}
	ca, _ = x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, key.Public(), caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	p := &webPKI{caFile: filepath.Join(dir, "ca.pem"), certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem"), caCert: ca}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	for path, data := range map[string][]byte{p.caFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), p.certFile: certPEM, p.keyFile: keyPEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, err
		}
	}
	p.cert, err = tls.X509KeyPair(certPEM, keyPEM)
	return p, err
}

// fleet serves N partner bundles from one listener, one URL path per
// partner trust domain (p<i>.fleet.test at /p<i>), refresh hint 60 s.
type fleet struct {
	url string
	srv *http.Server
}

func startFleet(ctx context.Context, pki *webPKI, n int) (*fleet, error) {
	// One CA certificate without a SPIFFE ID serves every partner's bundle:
	// treaty and SPIRE accept it for any trust domain.
	doc, err := fleetBundle(pki.caCert)
	if err != nil {
		return nil, err
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/p"))
		if err != nil || i < 0 || i >= n {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	})
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &fleet{url: "https://" + l.Addr().String(), srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: quietLog,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pki.cert}, MinVersion: tls.VersionTLS12}}}
	go func() { _ = f.srv.ServeTLS(l, "", "") }()
	return f, nil
}

func fleetBundle(ca *x509.Certificate) ([]byte, error) {
	key := jose.JSONWebKey{Key: ca.PublicKey, Use: "x509-svid", Certificates: []*x509.Certificate{ca}}
	raw, err := json.Marshal(key)
	if err != nil {
		return nil, err
	}
	return []byte(fmt.Sprintf(`{"keys":[%s],"spiffe_refresh_hint":60,"spiffe_sequence":1}`, raw)), nil
}

func (f *fleet) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = f.srv.Shutdown(ctx)
}
