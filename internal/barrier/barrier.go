// Package barrier seals every secret cvault keeps at rest — private key
// material, client-secret hashes' peppers, token-signing keys, disk data
// keys — under one root key with AES-256-GCM, binding each sealed blob to
// the identity of the record that holds it (associated data), so a blob
// copied into another record does not open.
//
// The root key comes from the operator (environment or file) or, for the
// embedded store only, from a 0600 file generated on first start. The
// Sealer interface leaves room for a PKCS#11 root later.
package barrier

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/cvault/cvault/internal/store"
)

// KeySize is the root key length in bytes (AES-256).
const KeySize = 32

// format is the first byte of every sealed blob, so the format can evolve.
const format byte = 1

var (
	// ErrUnseal means a blob does not open under this root key and
	// associated data: wrong key, swapped record or tampering.
	ErrUnseal = errors.New("barrier: sealed data does not open under this root key")
	// ErrWrongRootKey means the store was initialised with another root key.
	ErrWrongRootKey = errors.New("barrier: root key does not match the store (sealed check record does not open)")
)

// Sealer seals and unseals secret material. aad names the record the blob
// belongs to (e.g. "key/vault1/k/1f2e…"); the same aad must be given to Unseal.
type Sealer interface {
	Seal(aad string, plaintext []byte) ([]byte, error)
	Unseal(aad string, sealed []byte) ([]byte, error)
}

// AEAD is the AES-256-GCM Sealer.
type AEAD struct {
	aead cipher.AEAD
	id   [8]byte // key id: first bytes of SHA-256(key); lets Unseal say "wrong key" cheaply
	rand io.Reader
}

var _ Sealer = (*AEAD)(nil)

// New returns a Sealer for a 32-byte root key. The key is copied.
func New(key []byte) (*AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("barrier: root key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("barrier: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("barrier: %w", err)
	}
	sum := sha256.Sum256(append([]byte("cvault root key id\x00"), key...))
	a := &AEAD{aead: aead, rand: rand.Reader}
	copy(a.id[:], sum[:])
	return a, nil
}

// Seal encrypts plaintext bound to aad: format ‖ key id ‖ nonce ‖ ciphertext+tag.
func (a *AEAD) Seal(aad string, plaintext []byte) ([]byte, error) {
	n := a.aead.NonceSize()
	out := make([]byte, 1+len(a.id)+n, 1+len(a.id)+n+len(plaintext)+a.aead.Overhead())
	out[0] = format
	copy(out[1:], a.id[:])
	nonce := out[1+len(a.id):]
	if _, err := io.ReadFull(a.rand, nonce); err != nil {
		return nil, fmt.Errorf("barrier: nonce: %w", err)
	}
	return a.aead.Seal(out, nonce, plaintext, a.ad(aad)), nil
}

// Unseal opens a blob made by Seal with the same aad.
func (a *AEAD) Unseal(aad string, sealed []byte) ([]byte, error) {
	n := a.aead.NonceSize()
	head := 1 + len(a.id) + n
	if len(sealed) < head+a.aead.Overhead() || sealed[0] != format {
		return nil, ErrUnseal
	}
	if subtle.ConstantTimeCompare(sealed[1:1+len(a.id)], a.id[:]) != 1 {
		return nil, ErrUnseal
	}
	pt, err := a.aead.Open(nil, sealed[1+len(a.id):head], sealed[head:], a.ad(aad))
	if err != nil {
		return nil, ErrUnseal
	}
	return pt, nil
}

func (a *AEAD) ad(aad string) []byte { return []byte("cvault/barrier/v1\x00" + aad) }

// ParseKey decodes a root key given as 64 hex characters, base64 (std or
// URL, padded or not) of 32 bytes, or exactly 32 raw bytes (a key file).
func ParseKey(b []byte) ([]byte, error) {
	s := strings.TrimSpace(string(b))
	if len(s) == 2*KeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == KeySize {
			return k, nil
		}
	}
	if len(b) == KeySize {
		return append([]byte(nil), b...), nil
	}
	return nil, fmt.Errorf("barrier: root key must be %d bytes as hex or base64", KeySize)
}

// Generate returns a fresh random root key.
func Generate() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := io.ReadFull(rand.Reader, k); err != nil {
		return nil, fmt.Errorf("barrier: generate root key: %w", err)
	}
	return k, nil
}

// LoadOrCreateFile reads a root key file, or creates one (mode 0600, hex)
// when it does not exist. created reports whether it was generated.
func LoadOrCreateFile(path string) (key []byte, created bool, err error) {
	b, err := os.ReadFile(path)
	if err == nil {
		k, err := ParseKey(b)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", path, err)
		}
		return k, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("barrier: read root key: %w", err)
	}
	k, err := Generate()
	if err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("barrier: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("barrier: create root key file: %w", err)
	}
	if _, err := f.WriteString(hex.EncodeToString(k) + "\n"); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("barrier: write root key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("barrier: write root key file: %w", err)
	}
	return k, true, f.Close()
}

const (
	checkKind = "barrier"
	checkKey  = "check"
	checkText = "cvault root key check v1"
)

// Check proves the root key is the one the store was initialised with:
// the first server to start writes a sealed check record; every later
// start (on any server sharing the store) must open it, so a wrong key
// fails at start, never later.
func Check(ctx context.Context, s store.Store, sl Sealer) error {
	rec, err := s.Get(ctx, checkKind, checkKey)
	if errors.Is(err, store.ErrNotFound) {
		sealed, err := sl.Seal(checkKind+"/"+checkKey, []byte(checkText))
		if err != nil {
			return err
		}
		_, err = store.Put(ctx, s, checkKind, checkKey, sealed, store.Absent)
		if errors.Is(err, store.ErrConflict) {
			return Check(ctx, s, sl) // another server won the race; verify its record
		}
		return err
	}
	if err != nil {
		return fmt.Errorf("barrier: read check record: %w", err)
	}
	pt, err := sl.Unseal(checkKind+"/"+checkKey, rec.Value)
	if err != nil || string(pt) != checkText {
		return ErrWrongRootKey
	}
	return nil
}
