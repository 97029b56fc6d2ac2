package adminapi

import (
	"context"
	"encoding/json"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/treatyhq/treaty/internal/doctor"
)

// DoctorMethod runs the server's named health checks.
const DoctorMethod = "/treaty.admin.v1.Doctor/Check"

type doctorService struct {
	run func(ctx context.Context) []doctor.Check
}

// check returns {"checks": [{name, status, message, fix, doc}, ...]}.
func (s *doctorService) check(ctx context.Context, _ *structpb.Struct) (*structpb.Struct, error) {
	raw, err := json.Marshal(map[string]any{"checks": s.run(ctx)})
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	out := &structpb.Struct{}
	if err := out.UnmarshalJSON(raw); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return out, nil
}

var doctorServiceDesc = grpc.ServiceDesc{
	ServiceName: "treaty.admin.v1.Doctor",
	HandlerType: (*any)(nil),
	Methods:     []grpc.MethodDesc{structMethod("Check", DoctorMethod, func(s any) structHandler { return s.(*doctorService).check })},
}
