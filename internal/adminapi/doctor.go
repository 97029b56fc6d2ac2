package adminapi

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/treatyhq/treaty/internal/adminwire"
	"github.com/treatyhq/treaty/internal/doctor"
	"github.com/treatyhq/treaty/internal/finding"
)

type doctorService struct {
	run func(ctx context.Context) []doctor.Check
}

// check runs the server's named health checks (adminwire.DoctorMethod).
func (s *doctorService) check(ctx context.Context, _ *structpb.Struct) (*structpb.Struct, error) {
	out := adminwire.DoctorResponse{Checks: []adminwire.Check{}}
	for _, c := range s.run(ctx) {
		out.Checks = append(out.Checks, adminwire.Check{Name: c.Name, Status: finding.Severity(c.Status), Message: c.Message, Fix: c.Fix, Doc: c.Doc})
	}
	return wireStruct(out)
}

var doctorServiceDesc = grpc.ServiceDesc{
	ServiceName: "treaty.admin.v1.Doctor",
	HandlerType: (*any)(nil),
	Methods:     []grpc.MethodDesc{structMethod("Check", adminwire.DoctorMethod, func(s any) structHandler { return s.(*doctorService).check })},
}
