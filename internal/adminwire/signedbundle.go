package adminwire

// SignBundleMethod takes an empty Struct and answers a SignBundleResponse:
// our bundle as a signed bundle file (internal/signedbundle), signed in the
// server, which holds the keys. The call is audited like a change.
const SignBundleMethod = "/treaty.admin.v1.SignedBundles/Sign"

// SignedBundleFile is what became of one file of the signed bundles
// directory (federation.signed_bundles_dir) at its last read.
type SignedBundleFile struct {
	File        string `json:"file"`
	TrustDomain string `json:"trust_domain"`
	Sequence    uint64 `json:"sequence,string"`
	// Result is applied, unchanged, refused, unreadable, skipped or
	// failed; Reason says why for all but the first two.
	Result string `json:"result"`
	Reason string `json:"reason"`
	// KeyID is the JWT authority whose signature verified.
	KeyID string `json:"kid"`
	// At is when the file was read, RFC 3339.
	At string `json:"at"`
}

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
