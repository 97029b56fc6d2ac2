// Package agentapi owns the server side of SPIRE's node protocol on a TCP
// listener, so that an unmodified spire-agent (v1.15.3) attaches to treaty as
// it would to spire-server: node attestation and agent SVID renewal (Agent),
// the local and federated bundles (Bundle), and the entries and SVIDs an
// agent is authorised for (Entry, SVID). It authorises agents by their
// X509-SVID and the attested-node record (docs/design/agent-api.md).
//
// The admin methods of these services (list, ban, create entries...) are
// served on the admin socket by internal/adminapi, never here.
package agentapi
