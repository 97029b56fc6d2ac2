package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"strings"
)

// KeyType names the algorithm and size of an authority key.
type KeyType string

// The supported key types. ECP256 is the default.
const (
	ECP256  KeyType = "ec-p256"
	ECP384  KeyType = "ec-p384"
	RSA2048 KeyType = "rsa-2048"
	RSA4096 KeyType = "rsa-4096"
)

// KeyTypes lists every supported key type, default first.
var KeyTypes = []KeyType{ECP256, ECP384, RSA2048, RSA4096}

// ParseKeyType returns the key type named s. The empty string means ECP256.
func ParseKeyType(s string) (KeyType, error) {
	if s == "" {
		return ECP256, nil
	}
	for _, kt := range KeyTypes {
		if string(kt) == s {
			return kt, nil
		}
	}
	names := make([]string, len(KeyTypes))
	for i, kt := range KeyTypes {
		names[i] = string(kt)
	}
	return "", fmt.Errorf("unknown key type %q: use one of %s", s, strings.Join(names, ", "))
}

// GenerateKey creates a new private key of type kt.
func (kt KeyType) GenerateKey() (crypto.Signer, error) {
	switch kt {
	case ECP256, "":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case RSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	default:
		return nil, fmt.Errorf("unknown key type %q", string(kt))
	}
}
