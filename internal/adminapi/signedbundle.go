package adminapi

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/treatyhq/treaty/internal/adminwire"
	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/signedbundle"
)

// BundleSigner signs our bundle for partners without a bundle endpoint
// (ca.CA).
type BundleSigner interface {
	SignBundle() ([]byte, error)
}

type signedBundleService struct {
	ca BundleSigner
}

// sign answers our bundle as a signed bundle file
// (adminwire.SignBundleMethod).
func (s *signedBundleService) sign(context.Context, *structpb.Struct) (*structpb.Struct, error) {
	file, err := s.ca.SignBundle()
	if errors.Is(err, ca.ErrFailedPrecondition) {
		return nil, status.Errorf(codes.FailedPrecondition, "%v: prepare one (treaty localauthority jwt prepare)", err)
	}
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	signed, err := signedbundle.Parse(file)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	fp, err := bundle.Fingerprint(signed.Bundle)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return wireStruct(adminwire.SignBundleResponse{File: string(file), TrustDomain: signed.TrustDomain.Name(),
		Sequence: signed.Sequence, Fingerprint: fp})
}

var signedBundleServiceDesc = grpc.ServiceDesc{
	ServiceName: "treaty.admin.v1.SignedBundles",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		structMethod("Sign", adminwire.SignBundleMethod, func(s any) structHandler { return s.(*signedBundleService).sign }),
	},
}
