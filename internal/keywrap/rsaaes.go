package keywrap

import (
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"
)

// Release enc algorithms (wire §2.1). EncDefault is what Key Vault uses when
// a release request names none.
const (
	EncCKMRSAAESKeyWrap = "CKM_RSA_AES_KEY_WRAP"
	EncRSAAESKeyWrap256 = "RSA_AES_KEY_WRAP_256"
	EncRSAAESKeyWrap384 = "RSA_AES_KEY_WRAP_384"
	EncDefault          = EncCKMRSAAESKeyWrap
)

// ErrUnsupportedEnc: enc is not one of the three release algorithms.
var ErrUnsupportedEnc = errors.New("keywrap: unsupported enc")

// transportKeySize is the AES key that RSA-OAEP carries. AzureAttestSKR
// unwraps with EVP_aes_256_wrap_pad, so it must be 32 bytes (wire §2.4).
const transportKeySize = 32

// encHash returns the OAEP (and MGF1) hash of a release enc algorithm.
func encHash(enc string) (func() hash.Hash, error) {
	switch enc {
	case EncCKMRSAAESKeyWrap:
		return sha1.New, nil
	case EncRSAAESKeyWrap256:
		return sha256.New, nil
	case EncRSAAESKeyWrap384:
		return sha512.New384, nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnsupportedEnc, enc)
}

// RSAAESWrap wraps material to pub as wire §2.4 describes: a fresh 32-byte
// AES key from rand, RSA-OAEP encrypted to pub (empty label, MGF1 with the
// OAEP hash: SHA-1, SHA-256 or SHA-384 by enc), followed by the RFC 5649
// wrap of material under that AES key.
func RSAAESWrap(rand io.Reader, pub *rsa.PublicKey, enc string, material []byte) ([]byte, error) {
	h, err := encHash(enc)
	if err != nil {
		return nil, err
	}
	kek := make([]byte, transportKeySize)
	if _, err := io.ReadFull(rand, kek); err != nil {
		return nil, fmt.Errorf("keywrap: transport key: %w", err)
	}
	head, err := rsa.EncryptOAEP(h(), rand, pub, kek, nil)
	if err != nil {
		return nil, fmt.Errorf("keywrap: %s: RSA-OAEP: %w", enc, err)
	}
	tail, err := WrapPad(kek, material)
	if err != nil {
		return nil, fmt.Errorf("keywrap: %s: %w", enc, err)
	}
	return append(head, tail...), nil
}

// RSAAESUnwrap reverses RSAAESWrap with the private key (the guest's side).
// The RSA part is the first priv.Size() bytes. Any decryption or integrity
// failure is ErrUnwrap, without saying which half failed.
func RSAAESUnwrap(priv *rsa.PrivateKey, enc string, ciphertext []byte) ([]byte, error) {
	h, err := encHash(enc)
	if err != nil {
		return nil, err
	}
	k := priv.Size()
	if len(ciphertext) < k+16 {
		return nil, fmt.Errorf("%w: %s ciphertext of %d bytes for a %d-bit key", ErrInputLength, enc, len(ciphertext), 8*k)
	}
	kek, err := rsa.DecryptOAEP(h(), nil, priv, ciphertext[:k], nil)
	if err != nil || len(kek) != transportKeySize {
		return nil, ErrUnwrap
	}
	m, err := UnwrapPad(kek, ciphertext[k:])
	if err != nil {
		return nil, ErrUnwrap
	}
	return m, nil
}
