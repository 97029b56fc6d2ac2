package bundleendpoint

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// webCert is the https_web serving certificate, read from files that a tool
// such as cert-manager rewrites. A pair that does not load (half written, or
// key and certificate from different renewals) is ignored until it does.
type webCert struct {
	certFile, keyFile string
	current           atomic.Pointer[tls.Certificate]
	stamp             string // modification times and sizes of the loaded files
}

// load reads the pair. It reports whether a new pair is now served; on
// error the previous pair stays.
func (w *webCert) load() (bool, error) {
	stamp, err := fileStamp(w.certFile, w.keyFile)
	if err != nil {
		return false, err
	}
	if stamp == w.stamp {
		return false, nil
	}
	cert, err := tls.LoadX509KeyPair(w.certFile, w.keyFile)
	if err != nil {
		return false, fmt.Errorf("load web certificate %s and key %s: %w", w.certFile, w.keyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return false, fmt.Errorf("parse web certificate %s: %w", w.certFile, err)
		}
	}
	w.current.Store(&cert)
	w.stamp = stamp
	return true, nil
}

func fileStamp(paths ...string) (string, error) {
	var stamp strings.Builder
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("web certificate: %w", err)
		}
		fmt.Fprintf(&stamp, "%s:%d:%d;", p, info.ModTime().UnixNano(), info.Size())
	}
	return stamp.String(), nil
}

func (w *webCert) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return w.current.Load(), nil
}

// webReloadInterval is how often the certificate files are checked.
const webReloadInterval = 5 * time.Second
