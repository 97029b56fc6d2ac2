package adminapi

import (
	"context"
	"log/slog"

	loggerv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/logger/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// loggerService implements SPIRE's Logger API: the level of the running
// server's log, changed without a restart and reset to the level it
// started with.
type loggerService struct {
	loggerv1.UnimplementedLoggerServer
	level  *slog.LevelVar
	launch slog.Level
	log    *slog.Logger
}

// levels maps SPIRE's log levels (logrus's) to slog's. slog names four;
// the others sit on its scale at the same distance, so that a level set
// through the API reads back as itself: trace logs more than debug, and
// fatal and panic less than error (treaty logs nothing at them).
var levels = []struct {
	api  types.LogLevel
	slog slog.Level
}{
	{types.LogLevel_TRACE, slog.LevelDebug - 4},
	{types.LogLevel_DEBUG, slog.LevelDebug},
	{types.LogLevel_INFO, slog.LevelInfo},
	{types.LogLevel_WARN, slog.LevelWarn},
	{types.LogLevel_ERROR, slog.LevelError},
	{types.LogLevel_FATAL, slog.LevelError + 4},
	{types.LogLevel_PANIC, slog.LevelError + 8},
}

// apiLevel is the API's name for l: the most severe API level whose slog
// level is at most l.
func apiLevel(l slog.Level) types.LogLevel {
	out := levels[0].api
	for _, m := range levels {
		if m.slog <= l {
			out = m.api
		}
	}
	return out
}

func slogLevel(l types.LogLevel) (slog.Level, bool) {
	for _, m := range levels {
		if m.api == l {
			return m.slog, true
		}
	}
	return 0, false
}

func (s *loggerService) logger() *types.Logger {
	return &types.Logger{CurrentLevel: apiLevel(s.level.Level()), LaunchLevel: apiLevel(s.launch)}
}

func (s *loggerService) GetLogger(context.Context, *loggerv1.GetLoggerRequest) (*types.Logger, error) {
	return s.logger(), nil
}

func (s *loggerService) SetLogLevel(ctx context.Context, req *loggerv1.SetLogLevelRequest) (*types.Logger, error) {
	if req.GetNewLevel() == types.LogLevel_UNSPECIFIED {
		return nil, status.Error(codes.InvalidArgument, "newLevel value cannot be LogLevel_UNSPECIFIED")
	}
	l, ok := slogLevel(req.GetNewLevel())
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "unsupported log level %d: use panic, fatal, error, warn, info, debug or trace", req.GetNewLevel())
	}
	s.log.InfoContext(ctx, "log level set", attrLevel, l.String())
	s.level.Set(l)
	return s.logger(), nil
}

func (s *loggerService) ResetLogLevel(ctx context.Context, _ *loggerv1.ResetLogLevelRequest) (*types.Logger, error) {
	s.log.InfoContext(ctx, "log level reset to the launch level", attrLevel, s.launch.String())
	s.level.Set(s.launch)
	return s.logger(), nil
}
