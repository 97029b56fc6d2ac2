package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Options say what to release.
type Options struct {
	// Repo is the git repository to build from.
	Repo string
	// Rev is the revision to build (default HEAD).
	Rev string
	// Version is stamped into the binaries and names the files; empty means
	// git describe of Rev.
	Version string
	// Out is the directory the release is written to; it must be empty or
	// not exist.
	Out string
	// Platforms are built in turn (default AllPlatforms).
	Platforms []Platform
	// Image also writes the OCI image of the linux platforms.
	Image bool
	// CACerts is the PEM file of roots the image carries (empty: none).
	CACerts string
	// GoCache is the build cache to use (empty: the user's).
	GoCache string
}

// Release builds o.Platforms from a clean checkout of o.Rev and writes into
// o.Out, for each platform, treaty_VERSION_OS_ARCH.tar.gz (the binary, the
// licence and the README) and its SBOM treaty_VERSION_OS_ARCH.cdx.json;
// with o.Image, treaty_VERSION_image.oci.tar; and SHA256SUMS of them all.
// It returns the version and the commit it built.
func Release(ctx context.Context, o Options) (version, commit string, err error) {
	if err := emptyDir(o.Out); err != nil {
		return "", "", err
	}
	tmp, err := os.MkdirTemp("", "treaty-release-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(tmp)
	src, err := Checkout(ctx, o.Repo, cmp.Or(o.Rev, "HEAD"), filepath.Join(tmp, "src"))
	if err != nil {
		return "", "", err
	}
	version = o.Version
	if version == "" {
		if version, err = src.Describe(ctx); err != nil {
			return "", "", err
		}
	}
	r := &release{src: src, version: version, out: o.Out, tmp: tmp, images: map[Platform]v1.Image{}}
	if o.CACerts != "" {
		if r.caCerts, err = os.ReadFile(o.CACerts); err != nil {
			return "", "", fmt.Errorf("read CA certificates for the image: %w", err)
		}
	}
	for _, p := range orAll(o.Platforms) {
		if err := r.platform(ctx, p, o); err != nil {
			return "", "", err
		}
	}
	if o.Image {
		if err := r.image(); err != nil {
			return "", "", err
		}
	}
	return version, src.Commit, writeSums(o.Out)
}

// release is one run of Release.
type release struct {
	src     *Source
	version string
	out     string
	tmp     string
	caCerts []byte
	images  map[Platform]v1.Image
}

// platform builds p and writes its archive, its SBOM and, for linux when
// an image is asked for, its image.
func (r *release) platform(ctx context.Context, p Platform, o Options) error {
	name := fmt.Sprintf("treaty_%s_%s_%s", r.version, p.OS, p.Arch)
	bin := filepath.Join(r.tmp, name, "treaty")
	if err := Build(ctx, r.src, p, BuildOptions{Version: r.version, GoCache: o.GoCache}, bin); err != nil {
		return err
	}
	body, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	if err := r.archive(name, body); err != nil {
		return err
	}
	sbom, err := SBOM(bin, r.version, r.src.Time)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.out, name+".cdx.json"), sbom, 0o644); err != nil { //nolint:gosec // a release is public
		return err
	}
	if o.Image && p.OS == "linux" {
		r.images[p], err = Image(body, p, ImageOptions{Version: r.version, Revision: r.src.Commit,
			Created: r.src.Time, CACerts: r.caCerts})
	}
	return err
}

// archive writes name.tar.gz: a directory name/ with the binary, the
// licence and the README of the checkout.
func (r *release) archive(name string, binary []byte) error {
	entries := []entry{{Name: name, Mode: 0o755, Dir: true}, {Name: name + "/treaty", Mode: 0o755, Body: binary}}
	for _, f := range []string{"LICENSE", "README.md"} {
		body, err := os.ReadFile(filepath.Join(r.src.Dir, f))
		if err != nil {
			return err
		}
		entries = append(entries, entry{Name: name + "/" + f, Mode: 0o644, Body: body})
	}
	gz, err := tarGz(entries, r.src.Time)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(r.out, name+".tar.gz"), gz, 0o644) //nolint:gosec // a release is public
}

func (r *release) image() error {
	if len(r.images) == 0 {
		return errors.New("an image needs a linux platform (e.g. -platforms linux/amd64)")
	}
	file := filepath.Join(r.out, fmt.Sprintf("treaty_%s_image.oci.tar", r.version))
	return WriteOCIArchive(Index(r.images, r.version), filepath.Join(r.tmp, "layout"), file, r.src.Time)
}

// Compare returns an error naming every file that is not the same in the
// directories a and b, or that only one of them has.
func Compare(a, b string) error {
	names := map[string]bool{}
	for _, d := range []string{a, b} {
		des, err := os.ReadDir(d)
		if err != nil {
			return err
		}
		for _, de := range des {
			names[de.Name()] = true
		}
	}
	var errs []error
	for name := range names {
		x, errA := os.ReadFile(filepath.Join(a, name))
		y, errB := os.ReadFile(filepath.Join(b, name))
		switch {
		case errA != nil || errB != nil:
			errs = append(errs, fmt.Errorf("%s: only in one build: %w", name, errors.Join(errA, errB)))
		case !bytes.Equal(x, y):
			errs = append(errs, fmt.Errorf("%s: the two builds differ", name))
		}
	}
	return errors.Join(errs...)
}

// emptyDir creates dir, or checks that it holds nothing.
func emptyDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil { //nolint:gosec // a release is public
		return err
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(des) > 0 {
		return fmt.Errorf("output directory %s is not empty: remove it first", dir)
	}
	return nil
}

// orAll returns ps, or AllPlatforms when ps is empty.
func orAll(ps []Platform) []Platform {
	if len(ps) == 0 {
		return AllPlatforms
	}
	return ps
}
