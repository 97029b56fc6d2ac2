package adminwire

// SignBundleMethod takes an empty Struct and answers a SignBundleResponse:
// our bundle as a signed bundle file (internal/signedbundle), signed in the
// server, which holds the keys. The call is audited like a change.
const SignBundleMethod = "/treaty.admin.v1.SignedBundles/Sign"

// SignBundleResponse is our bundle, signed.
type SignBundleResponse struct {
	// File is the signed bundle file, as `treaty bundle set -verify` reads it.
	File        string `json:"file"`
	TrustDomain string `json:"trust_domain"`
	// Sequence is the bundle's spiffe_sequence, as a decimal string (see
	// RelationshipStatus.Sequence).
	Sequence uint64 `json:"sequence,string"`
	// Fingerprint is the bundle's (bundle.Fingerprint), which a partner
	// pins to accept the first signed file.
	Fingerprint string `json:"fingerprint"`
}
