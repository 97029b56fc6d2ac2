package cli

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/treatyhq/treaty/internal/adminapi"
)

func doctorCommands() []command {
	return []command{{"doctor", "run named health checks against the server, each with its fix; exit 1 if one fails", runDoctor}}
}

func runDoctor(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "doctor")
	socketPath, output := socketFlag(fs), outputFlag(fs)
	if err := parseOutput(fs, args, output); err != nil {
		return err
	}
	return withClient(ctx, *socketPath, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp := &structpb.Struct{}
		if err := conn.Invoke(ctx, adminapi.DoctorMethod, &structpb.Struct{}, resp); err != nil {
			return err
		}
		checks := resp.GetFields()["checks"].GetListValue().GetValues()
		if *output == outputJSON {
			if err := printJSON(e.stdout, resp); err != nil {
				return err
			}
		}
		fails, warns := 0, 0
		for _, v := range checks {
			f := v.GetStructValue().GetFields()
			st := f["status"].GetStringValue()
			switch st {
			case "fail":
				fails++
			case "warn":
				warns++
			}
			if *output == outputJSON {
				continue
			}
			e.printf("%-4s  %-20s %s\n", st, f["name"].GetStringValue(), f["message"].GetStringValue())
			if fix := f["fix"].GetStringValue(); fix != "" {
				e.printf("      %-20s fix: %s (%s)\n", "", fix, f["doc"].GetStringValue())
			}
		}
		if *output != outputJSON {
			e.printf("\n%d check(s): %d failed, %d warned\n", len(checks), fails, warns)
		}
		if fails > 0 {
			return errors.New(fmt.Sprint(fails, " check(s) failed"))
		}
		return nil
	})
}
