package cli

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/treatyhq/treaty/internal/adminwire"
	"github.com/treatyhq/treaty/internal/finding"
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
		raw := &structpb.Struct{}
		if err := conn.Invoke(ctx, adminwire.DoctorMethod, &structpb.Struct{}, raw); err != nil {
			return err
		}
		var resp adminwire.DoctorResponse
		if err := adminwire.FromStruct(raw, &resp); err != nil {
			return err
		}
		if *output == outputJSON {
			if err := printJSON(e.stdout, raw); err != nil {
				return err
			}
		}
		fails, warns := 0, 0
		for _, c := range resp.Checks {
			switch c.Severity {
			case finding.Fail:
				fails++
			case finding.Warn:
				warns++
			}
			if *output == outputJSON {
				continue
			}
			e.printf("%-4s  %-20s %s\n", c.Severity, c.Check, c.Message)
			if c.Fix != "" {
				e.printf("      %-20s fix: %s (%s)\n", "", c.Fix, c.Doc)
			}
		}
		if *output != outputJSON {
			e.printf("\n%d check(s): %d failed, %d warned\n", len(resp.Checks), fails, warns)
		}
		if fails > 0 {
			return errors.New(fmt.Sprint(fails, " check(s) failed"))
		}
		return nil
	})
}
