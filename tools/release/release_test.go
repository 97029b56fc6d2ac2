package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// testVersion is stamped into the test release.
const testVersion = "v0.0.0-test"

var (
	built    sync.Once
	builtDir string
	builtErr error
)

// testRelease builds linux/amd64 with its image from HEAD once for all the
// tests of this package (the full matrix is make release's job).
func testRelease(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds treaty twice from a clean checkout: not under -short")
	}
	built.Do(func() {
		builtDir, builtErr = buildTestRelease(t.Context())
	})
	if builtErr != nil {
		t.Fatal(builtErr)
	}
	return builtDir
}

func buildTestRelease(ctx context.Context) (string, error) {
	repo, err := git(ctx, "", "rev-parse", "--show-toplevel")
	if err != nil {
		return "", err
	}
	commit, err := git(ctx, repo, "rev-parse", "HEAD")
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "treaty-release-test-")
	if err != nil {
		return "", err
	}
	o := Options{Repo: repo, Rev: commit, Version: testVersion, Out: filepath.Join(dir, "out"),
		Platforms: []Platform{{"linux", "amd64"}}, Image: true, CACerts: caCerts("")}
	_, _, err = Release(ctx, o)
	return o.Out, err
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtDir != "" {
		os.RemoveAll(filepath.Dir(builtDir))
	}
	os.Exit(code)
}

// TestReproducible builds the same commit a second time, in another
// checkout directory with an empty build cache, and wants every file of
// the release, image included, byte for byte the same.
func TestReproducible(t *testing.T) {
	first := testRelease(t)
	repo, err := git(t.Context(), "", "rev-parse", "--show-toplevel")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	o := Options{Repo: repo, Rev: firstCommit(t, first), Version: testVersion, Out: filepath.Join(tmp, "out"),
		Platforms: []Platform{{"linux", "amd64"}}, Image: true, CACerts: caCerts(""),
		GoCache: filepath.Join(tmp, "gocache")}
	if _, _, err := Release(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	if err := Compare(first, o.Out); err != nil {
		t.Fatalf("two builds of one commit differ:\n%v", err)
	}
	// The fresh cache holds read-only files: make them removable.
	if err := exec.CommandContext(t.Context(), "chmod", "-R", "u+w", tmp).Run(); err != nil {
		t.Log(err)
	}
}

// firstCommit reads the commit the first build stamped, from its SBOM.
func firstCommit(t *testing.T, dir string) string {
	t.Helper()
	var bom cdxBOM
	readJSON(t, filepath.Join(dir, "treaty_"+testVersion+"_linux_amd64.cdx.json"), &bom)
	for _, p := range bom.Metadata.Component.Properties {
		if p.Name == "go:build:vcs.revision" {
			return p.Value
		}
	}
	t.Fatal("the SBOM names no vcs.revision")
	return ""
}

func TestChecksums(t *testing.T) {
	dir := testRelease(t)
	cmd := exec.CommandContext(t.Context(), "sha256sum", "--check", "--strict", sumsFile)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if errors.Is(err, exec.ErrNotFound) {
		t.Skip("sha256sum not installed")
	}
	if err != nil {
		t.Fatalf("sha256sum --check: %v\n%s", err, out)
	}
	for _, want := range []string{"treaty_v0.0.0-test_linux_amd64.tar.gz: OK", "treaty_v0.0.0-test_linux_amd64.cdx.json: OK",
		"treaty_v0.0.0-test_image.oci.tar: OK"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("SHA256SUMS lacks %q:\n%s", want, out)
		}
	}
}

func TestSBOM(t *testing.T) {
	dir := testRelease(t)
	var bom cdxBOM
	readJSON(t, filepath.Join(dir, "treaty_"+testVersion+"_linux_amd64.cdx.json"), &bom)
	if bom.BOMFormat != "CycloneDX" || bom.SpecVersion != "1.5" {
		t.Errorf("format %s %s, want CycloneDX 1.5", bom.BOMFormat, bom.SpecVersion)
	}
	if c := bom.Metadata.Component; c.Name != "github.com/treatyhq/treaty" || c.Version != testVersion {
		t.Errorf("main component %s@%s", c.Name, c.Version)
	}
	purls := map[string]bool{}
	for _, c := range bom.Components {
		purls[strings.SplitN(c.PURL, "@", 2)[0]] = true
	}
	for _, want := range []string{"pkg:golang/stdlib", "pkg:golang/github.com/spiffe/go-spiffe/v2", "pkg:golang/modernc.org/sqlite", "pkg:golang/google.golang.org/grpc"} {
		if !purls[want] {
			t.Errorf("SBOM lacks %s", want)
		}
	}
}

// TestArchive unpacks the release archive and runs the binary in it.
func TestArchive(t *testing.T) {
	dir := testRelease(t)
	files := untar(t, filepath.Join(dir, "treaty_"+testVersion+"_linux_amd64.tar.gz"), t.TempDir())
	name := "treaty_" + testVersion + "_linux_amd64/"
	for _, f := range []string{"treaty", "LICENSE", "README.md"} {
		if _, ok := files[name+f]; !ok {
			t.Errorf("archive lacks %s%s", name, f)
		}
	}
	wantVersion(t, files[name+"treaty"])
}

func wantVersion(t *testing.T, binary string) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), binary, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", binary, err, out)
	}
	if !strings.Contains(string(out), testVersion) {
		t.Errorf("treaty version printed %q, want %s in it", out, testVersion)
	}
}

// TestImage reads the OCI image back as a registry client would, checks
// how it runs, then extracts its layers and runs the binary from them.
func TestImage(t *testing.T) {
	dir := testRelease(t)
	img := readImage(t, filepath.Join(dir, "treaty_"+testVersion+"_image.oci.tar"))
	if err := validate.Image(img); err != nil {
		t.Fatalf("invalid image: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != ImageUser || strings.HasPrefix(c.User, "0") {
		t.Errorf("user %q, want %s (not root)", c.User, ImageUser)
	}
	for _, v := range []string{ImageDataDir, ImageRunDir} {
		if _, ok := c.Volumes[v]; !ok {
			t.Errorf("no volume %s", v)
		}
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" || c.Labels["org.opencontainers.image.version"] != testVersion {
		t.Errorf("platform %s/%s version %s", cf.OS, cf.Architecture, c.Labels["org.opencontainers.image.version"])
	}
	root := t.TempDir()
	files := extract(t, img, root)
	wantOwner(t, files, "usr/local/bin/treaty", 0, 0o755)
	wantOwner(t, files, "var/lib/treaty", 65532, 0o700)
	wantOwner(t, files, "run/treaty", 65532, 0o700)
	wantOwner(t, files, "etc/passwd", 0, 0o644)
	binary := filepath.Join(root, "usr/local/bin/treaty")
	wantStatic(t, binary)
	wantVersion(t, binary)
	dockerfileMatches(t, c)
}

func readImage(t *testing.T, archive string) v1.Image {
	t.Helper()
	dir := t.TempDir()
	untar(t, archive, dir)
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Platform == nil || im.Manifests[0].Platform.Architecture != "amd64" {
		t.Fatalf("index: want one linux/amd64 manifest, got %+v", im.Manifests)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// extract writes the image's flattened file system into root and returns
// the tar header of each entry by name.
func extract(t *testing.T, img v1.Image, root string) map[string]*tar.Header {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	return untarReader(t, rc, root)
}

func wantOwner(t *testing.T, files map[string]*tar.Header, name string, uid int, mode int64) {
	t.Helper()
	h, ok := files[name]
	switch {
	case !ok:
		t.Errorf("image lacks %s", name)
	case h.Uid != uid || h.Mode&0o7777 != mode:
		t.Errorf("%s: owner %d mode %o, want %d %o", name, h.Uid, h.Mode, uid, mode)
	}
}

// wantStatic fails if the binary asks for a dynamic loader: the image has
// no libc.
func wantStatic(t *testing.T, binary string) {
	t.Helper()
	f, err := elf.Open(binary)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked", binary)
		}
	}
}

// dockerfileMatches holds the Dockerfile's USER, ENTRYPOINT, CMD and
// VOLUME to the image built without it.
func dockerfileMatches(t *testing.T, c v1.Config) {
	t.Helper()
	f, err := os.Open("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		word, rest, _ := strings.Cut(sc.Text(), " ")
		switch word {
		case "USER", "ENTRYPOINT", "CMD", "VOLUME":
			got[word] = rest
		}
	}
	want := map[string]string{"USER": c.User, "ENTRYPOINT": jsonArray(t, c.Entrypoint),
		"CMD": jsonArray(t, c.Cmd), "VOLUME": jsonArray(t, []string{ImageDataDir, ImageRunDir})}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("Dockerfile %s %s, the image has %s", k, got[k], v)
		}
	}
}

func jsonArray(t *testing.T, v []string) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(b), ",", ", ")
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// untar unpacks a tar or tar.gz file into dir and returns the path of each
// regular file by its name in the archive.
func untar(t *testing.T, archive, dir string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	var r io.Reader = bytes.NewReader(b)
	if bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		if r, err = gzipReader(b); err != nil {
			t.Fatal(err)
		}
	}
	paths := map[string]string{}
	for name, h := range untarReader(t, r, dir) {
		if h.Typeflag == tar.TypeReg {
			paths[name] = filepath.Join(dir, name)
		}
	}
	return paths
}

func untarReader(t *testing.T, r io.Reader, dir string) map[string]*tar.Header {
	t.Helper()
	headers := map[string]*tar.Header{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return headers
		}
		if err != nil {
			t.Fatal(err)
		}
		headers[strings.TrimSuffix(h.Name, "/")] = h
		path := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(path, dir) {
			t.Fatalf("tar entry %s escapes", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(path, 0o755)
		case tar.TypeReg:
			err = writeFile(path, tr, h.FileInfo().Mode().Perm())
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func writeFile(path string, r io.Reader, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm|0o200)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func gzipReader(b []byte) (io.Reader, error) { return gzip.NewReader(bytes.NewReader(b)) }
