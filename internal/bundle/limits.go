package bundle

// Limits on a bundle document, applied everywhere a bundle enters treaty
// (a partner's endpoint, `bundle set`, onboarding files, invites, the admin
// API). A trust domain publishes a handful of authorities; the limits leave
// room for a device fleet with many CAs while keeping a hostile or broken
// document from costing memory and CPU on every poll.
const (
	// MaxDocumentBytes is the largest bundle document accepted: 1 MiB.
	MaxDocumentBytes = 1 << 20
	// MaxKeys is the most JWK entries (or PEM certificates) a bundle may
	// hold.
	MaxKeys = 1000
)
