package main

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's file system and start command. The Dockerfile at the root
// of the repository builds the same image with docker; image_test.go holds
// the two to each other.
const (
	// ImageBinary is where the treaty binary is in the image.
	ImageBinary = "/usr/local/bin/treaty"
	// ImageConfig is the configuration file the image's command reads;
	// mount it (a ConfigMap, a bind mount) there.
	ImageConfig = "/etc/treaty/treaty.yaml"
	// ImageUser is the numeric user and group the server runs as: not root,
	// the "nonroot" user of distroless images.
	ImageUser = "65532:65532"
	// ImageDataDir and ImageRunDir are the volumes for data_dir (keys, the
	// SQLite database) and the sockets; the root file system can be
	// read-only.
	ImageDataDir = "/var/lib/treaty"
	ImageRunDir  = "/run/treaty"
)

// ImageOptions describe the image.
type ImageOptions struct {
	// Version is the image's version label and its ref name in the layout.
	Version string
	// Revision is the commit it was built from (a label).
	Revision string
	// Created is the image's creation time: the commit time, so that the
	// same commit gives the same image.
	Created time.Time
	// CACerts is a PEM bundle of roots for https_web partners and ACME,
	// installed as /etc/ssl/certs/ca-certificates.crt; nil leaves it out.
	CACerts []byte
}

// Image returns the image of one treaty binary built for p: a single layer
// holding the static binary, /etc/passwd and /etc/group with the nonroot
// user, the CA roots, and the directories its volumes mount on.
func Image(binary []byte, p Platform, o ImageOptions) (v1.Image, error) {
	layer, err := rootLayer(binary, o)
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: o.Created}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer,
		History: v1.History{Created: created, CreatedBy: "tools/release: treaty " + o.Version}})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = p.OS, p.Arch, created
	cf.Config = imageConfig(o)
	return mutate.ConfigFile(img, cf)
}

// imageConfig is how the image runs: `treaty server run` on the mounted
// configuration, as the nonroot user.
func imageConfig(o ImageOptions) v1.Config {
	return v1.Config{
		User:         ImageUser,
		Entrypoint:   []string{ImageBinary},
		Cmd:          []string{"server", "run", "-config", ImageConfig},
		WorkingDir:   ImageDataDir,
		Env:          []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		ExposedPorts: map[string]struct{}{"8443/tcp": {}},
		Volumes:      map[string]struct{}{ImageDataDir: {}, ImageRunDir: {}},
		Labels: map[string]string{
			"org.opencontainers.image.title":    "treaty",
			"org.opencontainers.image.version":  o.Version,
			"org.opencontainers.image.revision": o.Revision,
			"org.opencontainers.image.created":  o.Created.UTC().Format(time.RFC3339),
			"org.opencontainers.image.licenses": "Apache-2.0",
			"org.opencontainers.image.source":   "https://github.com/treatyhq/treaty",
		},
	}
}

const (
	nonroot = 65532
	// passwd is /etc/passwd: user names, no secret in it.
	passwd = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n" //nolint:gosec // no credentials
	group  = "root:x:0:\nnonroot:x:65532:\n"
)

// rootLayer is the image's only layer.
func rootLayer(binary []byte, o ImageOptions) (v1.Layer, error) {
	dir := func(name string, mode int64, owner int) entry {
		return entry{Name: name, Mode: mode, UID: owner, GID: owner, Dir: true}
	}
	entries := []entry{
		dir("etc", 0o755, 0),
		{Name: "etc/passwd", Mode: 0o644, Body: []byte(passwd)},
		{Name: "etc/group", Mode: 0o644, Body: []byte(group)},
		dir("etc/treaty", 0o755, 0),
		dir("home", 0o755, 0),
		dir("home/nonroot", 0o700, nonroot),
		dir("run", 0o755, 0),
		dir(ImageRunDir[1:], 0o700, nonroot),
		dir("tmp", 0o1777, 0),
		dir("usr", 0o755, 0),
		dir("usr/local", 0o755, 0),
		dir("usr/local/bin", 0o755, 0),
		{Name: ImageBinary[1:], Mode: 0o755, Body: binary},
		dir("var", 0o755, 0),
		dir("var/lib", 0o755, 0),
		dir(ImageDataDir[1:], 0o700, nonroot),
	}
	if o.CACerts != nil {
		entries = append(entries, dir("etc/ssl", 0o755, 0), dir("etc/ssl/certs", 0o755, 0),
			entry{Name: "etc/ssl/certs/ca-certificates.crt", Mode: 0o644, Body: o.CACerts})
	}
	gz, err := tarGz(entries, o.Created)
	if err != nil {
		return nil, err
	}
	// The layer is already compressed: tarball keeps these bytes as they
	// are, so its digest is a function of the entries alone.
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// Index returns the multi-platform index of imgs, one per platform, named
// by version.
func Index(imgs map[Platform]v1.Image, version string) v1.ImageIndex {
	var adds []mutate.IndexAddendum
	for _, p := range AllPlatforms { // a fixed order: the same index every time
		img, ok := imgs[p]
		if !ok {
			continue
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform:    &v1.Platform{OS: p.OS, Architecture: p.Arch},
			Annotations: map[string]string{"org.opencontainers.image.ref.name": version},
		}})
	}
	return mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), types.OCIImageIndex)
}

// WriteOCIArchive writes idx as an OCI image layout packed in a tar file
// (what `skopeo copy oci-archive:FILE …` and `podman load -i FILE` read).
// scratch is an empty directory to lay the image out in first.
func WriteOCIArchive(idx v1.ImageIndex, scratch, file string, mtime time.Time) error {
	if _, err := layout.Write(scratch, idx); err != nil {
		return fmt.Errorf("write OCI layout: %w", err)
	}
	var entries []entry
	err := filepath.WalkDir(scratch, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == scratch {
			return err
		}
		rel, err := filepath.Rel(scratch, path)
		if err != nil {
			return err
		}
		e := entry{Name: filepath.ToSlash(rel), Mode: 0o644, Dir: d.IsDir()}
		if e.Dir {
			e.Mode = 0o755
		} else if e.Body, err = os.ReadFile(path); err != nil { //nolint:gosec // a directory this process just wrote
			return err
		}
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return err
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if err := writeTar(f, sortEntries(entries), mtime); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
