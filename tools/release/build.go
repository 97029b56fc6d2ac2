package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// versionStamp is the variable the release version is stamped into.
const versionStamp = "github.com/treatyhq/treaty/internal/version.Stamp"

// Platform is one operating system and architecture a release is built for.
type Platform struct {
	OS   string
	Arch string
}

func (p Platform) String() string { return p.OS + "/" + p.Arch }

// AllPlatforms are the platforms of a full release.
var AllPlatforms = []Platform{
	{"linux", "amd64"}, {"linux", "arm64"},
	{"darwin", "amd64"}, {"darwin", "arm64"},
}

// ParsePlatforms parses a comma-separated list such as
// "linux/amd64,darwin/arm64"; "all" means AllPlatforms.
func ParsePlatforms(s string) ([]Platform, error) {
	if s == "all" {
		return AllPlatforms, nil
	}
	var ps []Platform
	for f := range strings.SplitSeq(s, ",") {
		goos, goarch, ok := strings.Cut(strings.TrimSpace(f), "/")
		if !ok || goos == "" || goarch == "" {
			return nil, fmt.Errorf("platform %q: want OS/ARCH, e.g. linux/amd64", f)
		}
		ps = append(ps, Platform{goos, goarch})
	}
	return ps, nil
}

// Source is the commit a release is built from, checked out apart from the
// working tree so that uncommitted changes never reach a release.
type Source struct {
	// Dir is the clean checkout.
	Dir string
	// Commit is the full commit hash.
	Commit string
	// Time is the commit time: every timestamp in the release is this one.
	Time time.Time
}

// Checkout clones the repository at repo into dir (which must not exist)
// and checks out rev there, detached. The clone shares repo's objects, so
// it is quick and copies nothing.
func Checkout(ctx context.Context, repo, rev, dir string) (*Source, error) {
	commit, err := git(ctx, repo, "rev-parse", "--verify", rev+"^{commit}")
	if err != nil {
		return nil, err
	}
	if _, err := git(ctx, "", "clone", "--quiet", "--shared", "--no-checkout", repo, dir); err != nil {
		return nil, err
	}
	if _, err := git(ctx, dir, "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit); err != nil {
		return nil, err
	}
	ct, err := git(ctx, dir, "show", "-s", "--format=%ct", commit)
	if err != nil {
		return nil, err
	}
	sec, err := strconv.ParseInt(ct, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("commit time %q: %w", ct, err)
	}
	return &Source{Dir: dir, Commit: commit, Time: time.Unix(sec, 0).UTC()}, nil
}

// Describe returns a version for the commit: the nearest v* tag as git
// describe gives it, or the short hash when no tag is reachable.
func (s *Source) Describe(ctx context.Context) (string, error) {
	return git(ctx, s.Dir, "describe", "--tags", "--always", "--match", "v*", s.Commit)
}

// BuildOptions say how to build the treaty binary.
type BuildOptions struct {
	// Version is stamped into the binary (treaty version prints it).
	Version string
	// GoCache is the Go build cache to use; empty means the user's.
	GoCache string
	// Go is the go command; empty means "go".
	Go string
}

// Build compiles cmd/treaty of src for p into out. The flags make the
// bytes depend on the source, the version and the Go toolchain only: no
// paths (-trimpath), no cgo (a static binary that needs no libc), no build
// ID, and the VCS stamp of a clean checkout.
func Build(ctx context.Context, src *Source, p Platform, o BuildOptions, out string) error {
	gocmd := o.Go
	if gocmd == "" {
		gocmd = "go"
	}
	ldflags := fmt.Sprintf("-s -w -buildid= -X %s=%s", versionStamp, o.Version)
	cmd := exec.CommandContext(ctx, gocmd, "build", "-trimpath", "-buildvcs=true", //nolint:gosec // the go command the caller names
		"-ldflags="+ldflags, "-o", out, "./cmd/treaty")
	cmd.Dir = src.Dir
	cmd.Env = buildEnv(p, o.GoCache)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build for %s: %w\n%s", p, err, b)
	}
	return nil
}

// buildEnv is the environment minus what would make a build differ from
// another's: GOFLAGS, CGO, per-architecture levels and experiments.
func buildEnv(p Platform, gocache string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "GOFLAGS", "CGO_ENABLED", "GOOS", "GOARCH", "GOAMD64", "GOARM64", "GOEXPERIMENT", "GOCACHE", "GOWORK":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Arch, "GOWORK=off")
	if gocache != "" {
		env = append(env, "GOCACHE="+gocache)
	}
	return env
}

// git runs git in dir (the current directory when empty) and returns its
// trimmed standard output.
func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...) //nolint:gosec // git with our own arguments
	if dir != "" {
		cmd.Dir = dir
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(b)), nil
}

// absPath is filepath.Abs that cannot fail for the paths we pass.
func absPath(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}
