package servercmd

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/treatyhq/treaty/internal/config"
	"github.com/treatyhq/treaty/internal/server"
)

func runServer(ctx context.Context, args []string, _ io.Reader, _, stderr io.Writer) error {
	fs := newFlags(stderr, "server run")
	path := fs.String("config", "", "path to the configuration file (YAML); without it, flags and defaults are used")
	var o config.Overrides
	fs.StringVar(&o.TrustDomain, "trustDomain", "", "trust domain name, e.g. example.org (overrides trust_domain)")
	fs.StringVar(&o.DataDir, "dataDir", "", "directory for the database and keys (overrides data_dir)")
	fs.StringVar(&o.AdminSocket, "socketPath", "", "admin socket path (overrides admin_socket)")
	fs.StringVar(&o.WorkloadSocket, "workloadSocket", "", "Workload API socket path (overrides workload_socket)")
	fs.StringVar(&o.LogLevel, "logLevel", "", "debug, info, warn or error (overrides log_level)")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := config.Build(*path, o)
	if err != nil {
		return err
	}
	level := new(slog.LevelVar) // the Logger API changes it at run time
	level.Set(cfg.LogLevel)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	srv, err := server.New(ctx, cfg, log, server.WithLogLevel(level))
	if err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	return srv.Run(ctx)
}
