package nodeattest

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"text/template"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// DefaultAgentPathTemplate names an x509pop agent by its leaf's fingerprint:
// spiffe://<trust domain>/spire/agent/x509pop/<SHA-1 of the leaf DER>, as
// spire-server does by default.
//
// A template (text/template) may use these fields of the leaf certificate,
// a subset of what spire-server offers:
//
//	.Fingerprint         SHA-1 of the DER, lower-case hex
//	.PluginName          "x509pop"
//	.SerialNumberHex     serial number, lower-case hex, even length
//	.TrustDomain         the server's trust domain name
//	.Subject.CommonName  the subject's common name
const DefaultAgentPathTemplate = "/{{ .PluginName }}/{{ .Fingerprint }}"

// pathData is what an agent path template sees.
type pathData struct {
	Fingerprint     string
	PluginName      string
	SerialNumberHex string
	TrustDomain     string
	Subject         pathSubject
}

type pathSubject struct {
	CommonName string
}

func newPathData(td spiffeid.TrustDomain, leaf *x509.Certificate) pathData {
	return pathData{
		Fingerprint:     fingerprint(leaf),
		PluginName:      TypeX509POP,
		SerialNumberHex: serialNumberHex(leaf.SerialNumber),
		TrustDomain:     td.Name(),
		Subject:         pathSubject{CommonName: leaf.Subject.CommonName},
	}
}

// samplePathData stands for a certificate when a template is checked at
// start-up.
func samplePathData(td spiffeid.TrustDomain) pathData {
	return pathData{
		Fingerprint:     strings.Repeat("0f", 20),
		PluginName:      TypeX509POP,
		SerialNumberHex: "01",
		TrustDomain:     td.Name(),
		Subject:         pathSubject{CommonName: "node"},
	}
}

// parseAgentPathTemplate parses text (empty: the default) and runs it on a
// sample certificate, so that a misspelt field or a template that can never
// make a valid path stops start-up instead of failing every agent.
func parseAgentPathTemplate(td spiffeid.TrustDomain, text string) (*template.Template, error) {
	if text == "" {
		text = DefaultAgentPathTemplate
	}
	t, err := template.New("agent path").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, err
	}
	path, err := execute(t, samplePathData(td))
	if err != nil {
		return nil, fmt.Errorf("on a sample certificate: %w", err)
	}
	if err := validAgentPath(path); err != nil {
		return nil, fmt.Errorf("on a sample certificate it makes %q, not a valid SPIFFE ID path: %w", path, err)
	}
	return t, nil
}

func execute(t *template.Template, data pathData) (string, error) {
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// agentID is spiffe://<trust domain>/spire/agent followed by the template's
// output for leaf, which must be a valid path (SPIFFE ID §2.2).
func (p *X509POP) agentID(leaf *x509.Certificate) (spiffeid.ID, error) {
	path, err := execute(p.path, newPathData(p.td, leaf))
	if err == nil {
		err = validAgentPath(path)
	}
	if err != nil {
		return spiffeid.ID{}, denied(fmt.Sprintf("the agent path template does not make a valid SPIFFE ID path from the agent's certificate (%q)", path), err,
			"change the server's x509pop agent path template, or issue the node certificate with values it can use")
	}
	return spiffeid.FromPath(p.td, "/spire/agent"+path)
}

// validAgentPath checks a template's output: a path of at least one segment
// (SPIFFE ID §2.2), so that the agent gets an ID of its own below
// /spire/agent.
func validAgentPath(path string) error {
	if path == "" {
		return errors.New("the path is empty")
	}
	return spiffeid.ValidatePath(path)
}
