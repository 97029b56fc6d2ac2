package ca

// Log attribute keys.
const (
	attrKind        = "kind"
	attrAuthorityID = "authority_id"
	attrError       = "error"
	attrKey         = "key"
	attrSequence    = "sequence"
	attrPartners    = "partners"
	attrReason      = "reason"
	attrEvent       = "event"
	attrExpiresAt   = "expires_at"
)
