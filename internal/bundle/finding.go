package bundle

import "github.com/treatyhq/treaty/internal/finding"

// The checks a bundle goes through, in the order `bundle validate` reports
// them. The IDs are stable: `treaty bundle validate -output json` reports
// them and docs/bundle-tools.md explains each.
const (
	CheckFormat      finding.CheckID = "format"       // a JSON object (SPIFFE bundle) or PEM certificates
	CheckMembers     finding.CheckID = "members"      // no unknown top-level members
	CheckKeys        finding.CheckID = "keys"         // a "keys" array of JWKs
	CheckPrivateKey  finding.CheckID = "private-key"  // no private key material anywhere
	CheckKeyType     finding.CheckID = "key-type"     // every key has a supported "kty"
	CheckUse         finding.CheckID = "use"          // every key says "x509-svid" or "jwt-svid"
	CheckX5C         finding.CheckID = "x5c"          // x509-svid keys carry one parseable certificate, standard base64
	CheckKeyMatch    finding.CheckID = "key-match"    // an x509-svid key's members are its certificate's public key
	CheckCA          finding.CheckID = "ca"           // X.509 authorities are CAs allowed to sign certificates
	CheckTrustDomain finding.CheckID = "trust-domain" // no certificate names another trust domain
	CheckDuplicate   finding.CheckID = "duplicate"    // no duplicate certificates or key IDs
	CheckJWTKID      finding.CheckID = "jwt-kid"      // JWT keys have a "kid"
	CheckJWTKey      finding.CheckID = "jwt-key"      // JWT keys decode
	CheckUsable      finding.CheckID = "usable"       // at least one entry is usable, unless the key set is empty
	CheckX509Present finding.CheckID = "x509-present" // at least one X.509 authority
	CheckExpiry      finding.CheckID = "expiry"       // nothing expired or expiring soon
	CheckRefreshHint finding.CheckID = "refresh-hint" // spiffe_refresh_hint is a sensible number of seconds
	CheckSequence    finding.CheckID = "sequence"     // spiffe_sequence is well formed and correctly spelled
)

// Checks lists every check in report order.
var Checks = []finding.CheckID{
	CheckFormat, CheckMembers, CheckKeys, CheckPrivateKey, CheckKeyType, CheckUse, CheckX5C, CheckKeyMatch, CheckCA,
	CheckTrustDomain, CheckDuplicate, CheckJWTKID, CheckJWTKey, CheckUsable, CheckX509Present, CheckExpiry,
	CheckRefreshHint, CheckSequence,
}
