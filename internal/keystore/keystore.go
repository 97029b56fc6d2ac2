// Package keystore keeps private keys on disk: one PKCS#8 PEM file per key,
// mode 0600, written atomically (temporary file, fsync, rename, fsync of the
// directory) so that a crash leaves either the old file or the new one, never
// a torn key.
package keystore

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	"github.com/treatyhq/treaty/internal/safepath"
)

// ErrNotFound is returned by Load when no key is stored under the name.
var ErrNotFound = errors.New("key not found")

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

const keySuffix = ".key.pem"

// Store holds private keys in one directory. It is safe for concurrent use
// by one process; keys are identified by names made of letters, digits, dots,
// dashes and underscores.
type Store struct {
	dir string
}

// Open returns a Store for dir, creating dir with mode 0700 if it does not
// exist, and removes temporary files that a crash left in the middle of a
// write. It refuses a directory another user can write (see safepath) and
// key files others can read or write (see checkKeyModes). Only one process
// may use a key directory at a time.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create key directory: %w", err)
	}
	if _, err := safepath.Check(safepath.Dir{Path: dir, Name: "key directory", Holds: "the CA's private keys", Mode: 0o700}); err != nil {
		return nil, err
	}
	if err := checkKeyModes(dir); err != nil {
		return nil, err
	}
	leftovers, err := filepath.Glob(filepath.Join(dir, ".*"+keySuffix+".tmp-*"))
	if err != nil {
		return nil, fmt.Errorf("list key directory: %w", err)
	}
	for _, f := range leftovers {
		if err := os.Remove(f); err != nil {
			return nil, fmt.Errorf("remove interrupted key write: %w", err)
		}
	}
	return &Store{dir: dir}, nil
}

// maxListed bounds the key files an error names.
const maxListed = 5

// checkKeyModes refuses key files that anyone but their owner can read or
// write (mode & 0o077), or that belong to another user than treaty's (or
// root). treaty writes every key 0600, so another mode means something
// else changed it (a restore or copy that did not keep modes, a
// configuration tool), and the key may have been read: treaty does not
// start, rather than fix the mode silently and hide that; the operator
// decides whether the authority must be rotated.
func checkKeyModes(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list key directory: %w", err)
	}
	var exposed []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), keySuffix) || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("key file %s: %w", filepath.Join(dir, e.Name()), err)
		}
		if info.Mode().Perm()&0o077 != 0 || !ownedByUs(info) {
			exposed = append(exposed, fmt.Sprintf("%s (mode %s)", e.Name(), info.Mode().Perm()))
		}
	}
	if len(exposed) == 0 {
		return nil
	}
	if len(exposed) > maxListed {
		exposed = append(exposed[:maxListed], fmt.Sprintf("and %d more", len(exposed)-maxListed))
	}
	return fmt.Errorf("key files in %s are open to other users: %s. Anyone on this host may have read the CA's private keys, so treaty does not start "+
		"(it writes keys 0600 and does not change their mode silently). Run chmod 600 %s/*%s (and chown them to treaty's user); "+
		"if other users could have read them, rotate the authorities: treaty localauthority x509 prepare, activate, then taint and revoke the old one, and the same for jwt",
		dir, strings.Join(exposed, ", "), dir, keySuffix)
}

// ownedByUs reports whether treaty's user or root owns the file.
func ownedByUs(info fs.FileInfo) bool {
	st, ok := info.Sys().(*syscall.Stat_t)
	return !ok || int(st.Uid) == os.Geteuid() || st.Uid == 0
}

// Dir returns the directory that holds the keys.
func (s *Store) Dir() string { return s.dir }

// Path returns the file that holds the key called name.
func (s *Store) Path(name string) string {
	return filepath.Join(s.dir, name+keySuffix)
}

// Save writes key under name atomically with mode 0600, replacing any key of
// that name.
func (s *Store) Save(name string, key crypto.Signer) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("invalid key name %q", name)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key %q: %w", name, err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return WriteFileAtomic(s.Path(name), data, 0o600)
}

// Load reads the key called name. It returns ErrNotFound if there is none.
func (s *Store) Load(name string) (crypto.Signer, error) {
	data, err := os.ReadFile(s.Path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("key %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read key %q: %w", name, err)
	}
	return ParsePrivateKeyPEM(data)
}

// Delete removes the key called name. Deleting a missing key is not an error.
func (s *Store) Delete(name string) error {
	err := os.Remove(s.Path(name))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete key %q: %w", name, err)
	}
	return nil
}

// List returns the names of all stored keys.
func (s *Store) List() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	var names []string
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), keySuffix); ok && e.Type().IsRegular() {
			names = append(names, name)
		}
	}
	return names, nil
}

// ParsePrivateKeyPEM decodes the first private key in PEM data: PKCS#8,
// PKCS#1 (RSA) or SEC 1 (EC).
func ParsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PEM private key found")
		}
		switch block.Type {
		case "PRIVATE KEY":
			key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse PKCS#8 key: %w", err)
			}
			signer, ok := key.(crypto.Signer)
			if !ok {
				return nil, fmt.Errorf("unsupported private key type %T", key)
			}
			return signer, nil
		case "RSA PRIVATE KEY":
			key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse PKCS#1 key: %w", err)
			}
			return key, nil
		case "EC PRIVATE KEY":
			key, err := x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse SEC 1 key: %w", err)
			}
			return key, nil
		}
	}
}

// WriteFileAtomic writes data to path with the given mode so that readers and
// crashes see either the previous content or the new one: it writes a
// temporary file in the same directory, syncs it, renames it over path and
// syncs the directory.
func WriteFileAtomic(path string, data []byte, mode fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := writeAndSync(tmp, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(dir)
}

func writeAndSync(f *os.File, data []byte, mode fs.FileMode) error {
	if err := f.Chmod(mode); err != nil {
		_ = f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
