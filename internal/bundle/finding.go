package bundle

// CheckID names one of the checks a bundle goes through. The IDs are
// stable: `treaty bundle validate -output json` reports them and the docs
// explain each.
type CheckID string

// The checks, in the order `bundle validate` reports them.
const (
	CheckFormat      CheckID = "format"       // a JSON object (SPIFFE bundle) or PEM certificates
	CheckMembers     CheckID = "members"      // no unknown top-level members
	CheckKeys        CheckID = "keys"         // a "keys" array of JWKs
	CheckPrivateKey  CheckID = "private-key"  // no private key material anywhere
	CheckKeyType     CheckID = "key-type"     // every key has a supported "kty"
	CheckUse         CheckID = "use"          // every key says "x509-svid" or "jwt-svid"
	CheckX5C         CheckID = "x5c"          // x509-svid keys carry one parseable certificate, standard base64
	CheckKeyMatch    CheckID = "key-match"    // an x509-svid key's members are its certificate's public key
	CheckCA          CheckID = "ca"           // X.509 authorities are CAs allowed to sign certificates
	CheckTrustDomain CheckID = "trust-domain" // no certificate names another trust domain
	CheckDuplicate   CheckID = "duplicate"    // no duplicate certificates or key IDs
	CheckJWTKID      CheckID = "jwt-kid"      // JWT keys have a "kid"
	CheckJWTKey      CheckID = "jwt-key"      // JWT keys decode
	CheckUsable      CheckID = "usable"       // at least one entry is usable, unless the key set is empty
	CheckX509Present CheckID = "x509-present" // at least one X.509 authority
	CheckExpiry      CheckID = "expiry"       // nothing expired or expiring soon
	CheckRefreshHint CheckID = "refresh-hint" // spiffe_refresh_hint is a sensible number of seconds
	CheckSequence    CheckID = "sequence"     // spiffe_sequence is well formed and correctly spelled
)

// Checks lists every check in report order.
var Checks = []CheckID{
	CheckFormat, CheckMembers, CheckKeys, CheckPrivateKey, CheckKeyType, CheckUse, CheckX5C, CheckKeyMatch, CheckCA,
	CheckTrustDomain, CheckDuplicate, CheckJWTKID, CheckJWTKey, CheckUsable, CheckX509Present, CheckExpiry,
	CheckRefreshHint, CheckSequence,
}

// Severity grades a finding.
type Severity string

// Severities, from best to worst.
const (
	SeverityPass Severity = "pass"
	// SeveritySkip: the check needs a usable bundle and an earlier check
	// failed.
	SeveritySkip Severity = "skip"
	SeverityWarn Severity = "warn"
	SeverityFail Severity = "fail"
)

// Finding is one thing a check found.
type Finding struct {
	Check    CheckID  `json:"check"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
}
