package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// secretHash is how a client or managed-identity secret is kept: a random
// salt and HMAC-SHA256(salt, secret). Secrets are 240-bit random strings we
// generate, so a slow password hash would add latency to every token
// request without adding protection; the salt keeps equal secrets apart.
type secretHash struct {
	Salt []byte `json:"salt"`
	Hash []byte `json:"hash"`
}

// newSecret returns a fresh secret (40 base64url characters) and its hash.
func (s *Service) newSecret() (string, secretHash, error) {
	raw, err := s.random(30)
	if err != nil {
		return "", secretHash{}, err
	}
	secret := secretText(raw)
	h, err := s.hashSecret(secret)
	return secret, h, err
}

func (s *Service) hashSecret(secret string) (secretHash, error) {
	salt, err := s.random(16)
	if err != nil {
		return secretHash{}, fmt.Errorf("identity: salt: %w", err)
	}
	return secretHash{Salt: salt, Hash: macSecret(salt, secret)}, nil
}

func macSecret(salt []byte, secret string) []byte {
	m := hmac.New(sha256.New, salt)
	m.Write([]byte(secret))
	return m.Sum(nil)
}

// matches compares in constant time.
func (h secretHash) matches(secret string) bool {
	return len(h.Salt) > 0 && hmac.Equal(macSecret(h.Salt, secret), h.Hash)
}

func secretText(raw []byte) string { return base64.RawURLEncoding.EncodeToString(raw) }
