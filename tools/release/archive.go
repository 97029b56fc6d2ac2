package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// entry is one file or directory of a tar archive.
type entry struct {
	Name string // slash-separated, relative, directories without a trailing slash
	Mode int64  // permission bits
	UID  int
	GID  int
	Dir  bool
	Body []byte
}

// tarGz returns entries as a gzip-compressed tar archive. The bytes depend
// on the entries and mtime only: entries are sorted by name, owners are
// numeric, and the gzip header carries no name or time.
func tarGz(entries []entry, mtime time.Time) ([]byte, error) {
	entries = sortEntries(entries)
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	if err := writeTar(zw, entries, mtime); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// sortEntries returns a copy of entries sorted by name.
func sortEntries(entries []entry) []entry {
	entries = slices.Clone(entries)
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.Name, b.Name) })
	return entries
}

func writeTar(w io.Writer, entries []entry, mtime time.Time) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Mode: e.Mode, Uid: e.UID, Gid: e.GID,
			ModTime: mtime, Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: int64(len(e.Body))}
		if e.Dir {
			h.Name += "/"
			h.Typeflag = tar.TypeDir
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("tar %s: %w", e.Name, err)
		}
		if _, err := tw.Write(e.Body); err != nil {
			return fmt.Errorf("tar %s: %w", e.Name, err)
		}
	}
	return tw.Close()
}

// writeSums writes SHA256SUMS in dir: one "HASH  NAME" line for each
// regular file in dir but itself, sorted by name, as sha256sum -c reads.
func writeSums(dir string) error {
	des, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, de := range des {
		if !de.Type().IsRegular() || de.Name() == sumsFile {
			continue
		}
		body, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		fmt.Fprintf(&b, "%s  %s\n", hex.EncodeToString(sum[:]), de.Name())
	}
	return os.WriteFile(filepath.Join(dir, sumsFile), []byte(b.String()), 0o644) //nolint:gosec // a release is public
}

// sumsFile is the name of the checksum file of a release.
const sumsFile = "SHA256SUMS"
