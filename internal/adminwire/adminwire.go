// Package adminwire holds the admin API's wire contract: the full method
// names of treaty's own services (SPIRE's come from spire-api-sdk), treaty's
// own request and response message shapes, and the defaults client and
// server share. It imports nothing of the server, so that the CLI, a client,
// depends on the contract and not on the implementation behind the socket.
//
// Treaty's own services carry well-known protobuf types, so that they need
// no generated code and any gRPC client can call them: each message here is
// sent as a google.protobuf.Struct whose keys are the message's JSON field
// names (ToStruct, FromStruct).
package adminwire

import (
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// Full method names of treaty's own services.
const (
	// InviteMethod takes an InviteRequest and answers an InviteResponse.
	InviteMethod = "/treaty.admin.v1.Invites/Invite"
	// JoinMethod takes a JoinRequest and answers a JoinResponse.
	JoinMethod = "/treaty.admin.v1.Invites/Join"
	// StatusMethod takes google.protobuf.Empty and answers a
	// StatusResponse. SPIRE's API has no freshness report, so treaty adds
	// this one call.
	StatusMethod = "/treaty.admin.v1.Federation/Status"
	// DoctorMethod takes an empty Struct and answers a DoctorResponse: the
	// server's named health checks.
	DoctorMethod = "/treaty.admin.v1.Doctor/Check"
)

// WarningHeader is the response header (gRPC metadata) key under which the
// server sends warnings about a call that succeeded, where SPIRE's response
// message has no field for them: activating an authority before partners
// can have it, for one. Clients show each value; SPIRE's ignore them.
const WarningHeader = "treaty-warning"

// ForceHeader is the request header (gRPC metadata) key with which
// treaty's CLI (localauthority x509 activate -force) activates a prepared
// X.509 authority that partners with receipts have not fetched yet.
// Without it the server refuses with FailedPrecondition and names them, so
// SPIRE's CLI, which cannot send it, only activates once they all hold it.
const ForceHeader = "treaty-force"

// DefaultInviteTTL is how long an invite is valid when the request names
// no TTL (the CLI's -ttl default, and the server's for a zero TTLSeconds).
const DefaultInviteTTL = 24 * time.Hour

// ToStruct encodes msg, one of this package's messages, as the Struct a call
// carries.
func ToStruct(msg any) (*structpb.Struct, error) {
	raw, err := json.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", msg, err)
	}
	s := &structpb.Struct{}
	if err := protojson.Unmarshal(raw, s); err != nil {
		return nil, fmt.Errorf("encode %T: %w", msg, err)
	}
	return s, nil
}

// FromStruct decodes s into msg, a pointer to one of this package's
// messages. Keys msg has no field for are ignored, so that what a newer
// server adds does not break an older client.
func FromStruct(s *structpb.Struct, msg any) error {
	raw, err := protojson.Marshal(s)
	if err != nil {
		return fmt.Errorf("decode %T: %w", msg, err)
	}
	if err := json.Unmarshal(raw, msg); err != nil {
		return fmt.Errorf("decode %T: %w", msg, err)
	}
	return nil
}
