package bundle

import (
	"crypto/x509"
	"encoding/pem"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/finding"
)

// ParsePEM decodes PEM certificates as the X.509 authorities of trust
// domain td, block by block like Parse: a block that is not a usable CA
// certificate is ignored and reported, and the rest stand.
func ParsePEM(td spiffeid.TrustDomain, data []byte, opts Options) (*Result, error) {
	p := newParser(td, opts)
	p.parsePEM(data)
	return p.result()
}

func (p *parser) parsePEM(data []byte) {
	if !p.fits(data) {
		return
	}
	var blocks []*pem.Block
	for rest := data; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		blocks = append(blocks, block)
	}
	switch {
	case len(blocks) == 0:
		p.problem(CheckFormat, "no PEM block found: expected one or more -----BEGIN CERTIFICATE----- blocks%s", jsonHint(data))
		return
	case len(blocks) > MaxKeys:
		p.problem(CheckKeys, "%d PEM blocks, over the limit of %d certificates per bundle", len(blocks), MaxKeys)
		return
	}
	p.entries = len(blocks)
	for i, block := range blocks {
		p.pemBlock(entry{index: i + 1, pemBlock: true}, block)
	}
	// PEM cannot say "revoke everything" the way an empty JWK Set can, so
	// a PEM file with no usable certificate is always a mistake.
	if p.bundle.Empty() {
		p.noUsableKeys()
	}
}

func (p *parser) pemBlock(e entry, block *pem.Block) {
	switch {
	case strings.Contains(block.Type, "PRIVATE KEY"):
		p.ignore(e, CheckPrivateKey, finding.Fail, "is a %s: a bundle must hold public certificates only, and this private key must be considered compromised", block.Type)
	case block.Type != "CERTIFICATE":
		p.ignore(e, CheckFormat, finding.Warn, "is a %s; only CERTIFICATE blocks are used", block.Type)
	default:
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			p.ignore(e, CheckX5C, finding.Fail, "not a valid X.509 certificate: %v", err)
			return
		}
		p.addX509(e, cert)
	}
}
