// Command release builds treaty's release files from a clean checkout of a
// commit: archives of the static binary for linux and darwin on amd64 and
// arm64, a CycloneDX SBOM of each, the OCI image of the linux binaries
// (built without a container engine), and SHA256SUMS. The same commit and
// Go toolchain give the same bytes; -check builds everything twice, the
// second time with an empty build cache in another directory, and fails
// unless both are identical.
//
// Usage (from the repository, as `make release` runs it):
//
//	cd tools/release && go run . -out ../../dist [-version v1.2.3] [-rev HEAD]
//	    [-platforms all|linux/amd64,…] [-image] [-check]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
)

const defaultCACerts = "/etc/ssl/certs/ca-certificates.crt"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("release", flag.ContinueOnError)
	var o Options
	fs.StringVar(&o.Rev, "rev", "HEAD", "the commit to build (uncommitted changes are never built)")
	fs.StringVar(&o.Version, "version", "", "the version to stamp (default: git describe --tags of -rev)")
	fs.StringVar(&o.Out, "out", "dist", "the output directory; must be empty or not exist")
	platforms := fs.String("platforms", "all", "all, or a comma-separated list such as linux/amd64,darwin/arm64")
	fs.BoolVar(&o.Image, "image", false, "also write the OCI image of the linux platforms")
	fs.StringVar(&o.CACerts, "caCerts", "", "PEM roots for the image's /etc/ssl/certs/ca-certificates.crt (default: this host's, when it has them; \"none\" for no roots)")
	check := fs.Bool("check", false, "build twice (the second time with an empty build cache elsewhere) and fail unless the bytes are the same")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if o.Platforms, err = ParsePlatforms(*platforms); err != nil {
		return err
	}
	if o.Repo, err = git(ctx, "", "rev-parse", "--show-toplevel"); err != nil {
		return err
	}
	o.Out = absPath(o.Out)
	o.CACerts = caCerts(o.CACerts)
	version, commit, err := Release(ctx, o)
	if err != nil {
		return err
	}
	fmt.Printf("treaty %s (%s) released in %s\n", version, commit, o.Out)
	if *check {
		o.Version, o.Rev = version, commit
		return checkAgain(ctx, o)
	}
	return nil
}

// checkAgain builds the release of o once more, in a new directory with a
// new build cache, and compares it with the first.
func checkAgain(ctx context.Context, o Options) error {
	tmp, err := os.MkdirTemp("", "treaty-release-check-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	o.GoCache = filepath.Join(tmp, "gocache")
	first := o.Out
	o.Out = filepath.Join(tmp, "out")
	if _, _, err := Release(ctx, o); err != nil {
		return err
	}
	if err := Compare(first, o.Out); err != nil {
		return fmt.Errorf("not reproducible:\n%w", err)
	}
	fmt.Println("reproducible: a second build from scratch gave the same bytes")
	return nil
}

// caCerts resolves the -caCerts flag.
func caCerts(flagValue string) string {
	switch flagValue {
	case "none":
		return ""
	case "":
		if _, err := os.Stat(defaultCACerts); err == nil {
			return defaultCACerts
		}
		return ""
	}
	return flagValue
}
