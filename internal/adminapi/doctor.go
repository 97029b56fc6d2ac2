package adminapi

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/treatyhq/treaty/internal/adminwire"
	"github.com/treatyhq/treaty/internal/finding"
)

type doctorService struct {
	run func(ctx context.Context) []finding.Finding
}

// check runs the server's named health checks (adminwire.DoctorMethod).
func (s *doctorService) check(ctx context.Context, _ *structpb.Struct) (*structpb.Struct, error) {
	return wireStruct(adminwire.DoctorResponse{Checks: append([]finding.Finding{}, s.run(ctx)...)})
}

var doctorServiceDesc = grpc.ServiceDesc{
	ServiceName: "treaty.admin.v1.Doctor",
	HandlerType: (*any)(nil),
	Methods:     []grpc.MethodDesc{structMethod("Check", adminwire.DoctorMethod, func(s any) structHandler { return s.(*doctorService).check })},
}
