package keystore

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/treatyhq/treaty/internal/datastore"
)

// SealedDB is where a Sealed store keeps its keys: the datastore the
// replicas share.
type SealedDB interface {
	PutSealedKey(ctx context.Context, name string, sealed []byte) error
	SealedKey(ctx context.Context, name string) ([]byte, error)
	DeleteSealedKey(ctx context.Context, name string) error
	ListSealedKeys(ctx context.Context) ([]datastore.SealedKey, error)
}

// SealKeySize is the size of the key that seals private keys: AES-256.
const SealKeySize = 32

// SettleTime is how long a stored key is left alone by List: a younger key
// may have been saved by another replica for an authority change it is
// about to commit, and must not be taken for an orphan.
const SettleTime = 10 * time.Minute

// sealVersion starts every sealed key: AES-256-GCM, a 12-byte nonce, then
// the PKCS#8 DER encrypted with the key's name as additional data (so a
// sealed key moved under another name does not open).
const sealVersion = 1

// opTimeout bounds each database operation of a Sealed store.
const opTimeout = 10 * time.Second

// Sealed keeps private keys in the database, sealed with AES-256-GCM under
// a key that only the replicas hold (ca.key_seal_file), so that every
// replica signs with the same authority and a copy of the database alone
// gives no key away. It has the methods of Store, so the CA takes either.
type Sealed struct {
	db   SealedDB
	aead cipher.AEAD
	// legacy, when set, is the key directory of a server that kept its
	// keys on disk before: a key Load does not find in the database is
	// taken from there and sealed into it.
	legacy *Store
}

// OpenSealed returns a Sealed store in db under sealKey (SealKeySize
// bytes). legacy, if not nil, is a key directory whose keys are moved into
// the database when first loaded.
func OpenSealed(db SealedDB, sealKey []byte, legacy *Store) (*Sealed, error) {
	if len(sealKey) != SealKeySize {
		return nil, fmt.Errorf("the seal key must be %d bytes, not %d", SealKeySize, len(sealKey))
	}
	block, err := aes.NewCipher(sealKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealed{db: db, aead: aead, legacy: legacy}, nil
}

// ReadSealKey reads a seal key file: 64 hexadecimal digits (make one with
// `openssl rand -hex 32`), surrounding white space ignored. The file must
// be private to its owner, like the keys it protects.
func ReadSealKey(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("ca.key_seal_file: %w", err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("ca.key_seal_file %s has mode %s: it unlocks the CA's private keys, so only its owner may read it; run chmod 600 %s", path, perm, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca.key_seal_file: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(key) != SealKeySize {
		return nil, fmt.Errorf("ca.key_seal_file %s must hold %d hexadecimal digits (make it with: openssl rand -hex %d > %s)",
			path, 2*SealKeySize, SealKeySize, path)
	}
	return key, nil
}

// Path names where the key called name lives, for messages.
func (s *Sealed) Path(name string) string { return "sealed key " + name + " in the datastore" }

// Save seals key and stores it under name. Names are never reused (they
// carry the authority's ID), so a key stored already is an error.
func (s *Sealed) Save(name string, key crypto.Signer) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("invalid key name %q", name)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key %q: %w", name, err)
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	sealed := append([]byte{sealVersion}, nonce...)
	sealed = s.aead.Seal(sealed, nonce, der, []byte(name))
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	return s.db.PutSealedKey(ctx, name, sealed)
}

// Load reads and unseals the key called name. It returns an error
// wrapping ErrNotFound if there is none (in the database, or in the legacy
// directory), and says so plainly if the seal key does not open it.
func (s *Sealed) Load(name string) (crypto.Signer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	sealed, err := s.db.SealedKey(ctx, name)
	if errors.Is(err, datastore.ErrNotFound) {
		return s.adopt(name)
	}
	if err != nil {
		return nil, err
	}
	return s.open(name, sealed)
}

func (s *Sealed) open(name string, sealed []byte) (crypto.Signer, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n || sealed[0] != sealVersion {
		return nil, fmt.Errorf("sealed key %q is not in a format this treaty reads", name)
	}
	der, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], []byte(name))
	if err != nil {
		return nil, fmt.Errorf("sealed key %q does not open with this ca.key_seal_file: every replica must use the same seal key", name)
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("sealed key %q: %w", name, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("sealed key %q: unsupported private key type %T", name, key)
	}
	return signer, nil
}

// adopt moves a key from the legacy directory into the database: a server
// that kept its keys on disk keeps its authorities when it starts sealing
// them.
func (s *Sealed) adopt(name string) (crypto.Signer, error) {
	if s.legacy == nil {
		return nil, fmt.Errorf("key %q: %w", name, ErrNotFound)
	}
	key, err := s.legacy.Load(name)
	if err != nil {
		return nil, err
	}
	if err := s.Save(name, key); err != nil && !errors.Is(err, datastore.ErrAlreadyExists) {
		return nil, fmt.Errorf("seal key %q from %s into the datastore: %w", name, s.legacy.Dir(), err)
	}
	return key, nil
}

// Delete removes the key called name (from the legacy directory too).
// Deleting a missing key is not an error.
func (s *Sealed) Delete(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := s.db.DeleteSealedKey(ctx, name); err != nil {
		return err
	}
	if s.legacy != nil {
		return s.legacy.Delete(name)
	}
	return nil
}

// List returns the names of the keys stored more than SettleTime ago: the
// ones the CA may take for orphans when no authority refers to them.
func (s *Sealed) List() ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	keys, err := s.db.ListSealedKeys(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, k := range keys {
		if time.Since(k.CreatedAt) > SettleTime {
			names = append(names, k.Name)
		}
	}
	return names, nil
}
