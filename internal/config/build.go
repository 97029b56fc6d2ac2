package config

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/yamldoc"
)

// Overrides are command-line values that take precedence over the file.
// Empty fields override nothing.
type Overrides struct {
	TrustDomain string
	DataDir     string
	AdminSocket string
	// WorkloadSocket overrides workload_socket.
	WorkloadSocket string
	LogLevel       string
}

// Build returns the configuration `treaty server run` runs with: the file
// at path (none when path is empty) with o applied on top, defaults filled
// in, and everything validated. Problems in the file and in the overrides
// are reported together.
func Build(path string, o Overrides) (*Config, error) {
	c := &Config{}
	var fileErr *yamldoc.Error
	if path != "" {
		loaded, err := Load(path)
		if loaded == nil {
			return nil, err
		}
		c = loaded
		if err != nil && !errors.As(err, &fileErr) {
			return nil, err
		}
	}
	if err := o.apply(c); err != nil {
		return nil, err
	}
	c.ApplyDefaults()
	if c.DataDir != "" {
		if abs, err := filepath.Abs(c.DataDir); err == nil {
			c.DataDir = abs
		}
	}
	return c, c.Validate()
}

func (o Overrides) apply(c *Config) error {
	if o.TrustDomain != "" {
		td, err := spiffeid.TrustDomainFromString(o.TrustDomain)
		if err != nil {
			return fmt.Errorf("-trustDomain %q is not a valid trust domain: %w; use lowercase letters, digits, dots, dashes and underscores, e.g. example.org", o.TrustDomain, err)
		}
		c.TrustDomain = td
	}
	if o.DataDir != "" {
		c.DataDir = o.DataDir
	}
	if o.AdminSocket != "" {
		c.AdminSocket = o.AdminSocket
	}
	if o.WorkloadSocket != "" {
		c.WorkloadSocket = o.WorkloadSocket
	}
	if o.LogLevel != "" {
		var lvl slog.Level
		if err := lvl.UnmarshalText([]byte(strings.ToUpper(o.LogLevel))); err != nil {
			return fmt.Errorf("-logLevel %q: use debug, info, warn or error", o.LogLevel)
		}
		c.LogLevel = lvl
	}
	return nil
}
