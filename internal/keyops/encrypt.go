package keyops

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rsa"
	"fmt"
	"io"

	"github.com/cvault/cvault/internal/jwk"
	"github.com/cvault/cvault/internal/keywrap"
)

// Encrypted is the result of Encrypt. IV, Tag and AAD are set for AES-GCM
// only (Key Vault returns them beside the value).
type Encrypted struct {
	Value []byte
	IV    []byte
	Tag   []byte
	AAD   []byte
}

// Encrypt runs Key Vault's encrypt: RSA-OAEP, RSA-OAEP-256 or RSA1_5 with an
// RSA key, or A128GCM/A192GCM/A256GCM with an oct key of that size. For GCM
// a missing iv is drawn from rand (12 bytes) and returned; a given iv must
// be 12 bytes; aad is optional. RSA ignores iv and aad.
func Encrypt(rand io.Reader, key *jwk.PrivateKey, alg string, plaintext, iv, aad []byte) (*Encrypted, error) {
	a, err := resolve(OpEncrypt, alg, schemeOAEP, schemePKCS1Enc, schemeAESGCM)
	if err != nil {
		return nil, err
	}
	if err := a.checkKey(key); err != nil {
		return nil, err
	}
	if a.scheme != schemeAESGCM {
		v, err := rsaEncrypt(rand, a, &key.RSA.PublicKey, plaintext)
		if err != nil {
			return nil, err
		}
		return &Encrypted{Value: v}, nil
	}
	if iv == nil {
		iv = make([]byte, GCMIVSize)
		if _, err := io.ReadFull(rand, iv); err != nil {
			return nil, fmt.Errorf("keyops: %s iv: %w", alg, err)
		}
	} else if len(iv) != GCMIVSize {
		return nil, fmt.Errorf("%w: %s iv of %d bytes (want %d)", ErrInvalidInput, alg, len(iv), GCMIVSize)
	}
	g, err := newGCM(key.Oct)
	if err != nil {
		return nil, err
	}
	sealed := g.Seal(nil, iv, plaintext, aad)
	n := len(sealed) - GCMTagSize
	return &Encrypted{Value: sealed[:n:n], IV: iv, Tag: sealed[n:], AAD: aad}, nil
}

// Decrypt reverses Encrypt. For GCM, iv (12 bytes) and tag (16 bytes) are
// required and aad must match. Every failure after the algorithm and key
// checks is ErrDecryption.
func Decrypt(key *jwk.PrivateKey, alg string, ciphertext, iv, aad, tag []byte) ([]byte, error) {
	a, err := resolve(OpDecrypt, alg, schemeOAEP, schemePKCS1Enc, schemeAESGCM)
	if err != nil {
		return nil, err
	}
	if err := a.checkKey(key); err != nil {
		return nil, err
	}
	if a.scheme != schemeAESGCM {
		return rsaDecrypt(a, key.RSA, ciphertext)
	}
	if len(iv) != GCMIVSize || len(tag) != GCMTagSize {
		return nil, fmt.Errorf("%w: %s needs a %d-byte iv and a %d-byte tag", ErrInvalidInput, alg, GCMIVSize, GCMTagSize)
	}
	g, err := newGCM(key.Oct)
	if err != nil {
		return nil, err
	}
	sealed := make([]byte, 0, len(ciphertext)+len(tag))
	sealed = append(append(sealed, ciphertext...), tag...)
	pt, err := g.Open(nil, iv, sealed, aad)
	if err != nil {
		return nil, ErrDecryption
	}
	return pt, nil
}

// WrapKey runs Key Vault's wrapKey: RSA-OAEP, RSA-OAEP-256 or RSA1_5 with an
// RSA key, or A128KW/A192KW/A256KW (RFC 3394; plaintext a multiple of 8
// bytes, at least 16) with an oct key of that size.
func WrapKey(rand io.Reader, key *jwk.PrivateKey, alg string, plaintext []byte) ([]byte, error) {
	a, err := resolve(OpWrapKey, alg, schemeOAEP, schemePKCS1Enc, schemeAESKW)
	if err != nil {
		return nil, err
	}
	if err := a.checkKey(key); err != nil {
		return nil, err
	}
	if a.scheme != schemeAESKW {
		return rsaEncrypt(rand, a, &key.RSA.PublicKey, plaintext)
	}
	v, err := keywrap.Wrap(key.Oct, plaintext)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidInput, alg, err)
	}
	return v, nil
}

// UnwrapKey reverses WrapKey. Every failure after the algorithm and key
// checks is ErrDecryption.
func UnwrapKey(key *jwk.PrivateKey, alg string, ciphertext []byte) ([]byte, error) {
	a, err := resolve(OpUnwrapKey, alg, schemeOAEP, schemePKCS1Enc, schemeAESKW)
	if err != nil {
		return nil, err
	}
	if err := a.checkKey(key); err != nil {
		return nil, err
	}
	if a.scheme != schemeAESKW {
		return rsaDecrypt(a, key.RSA, ciphertext)
	}
	pt, err := keywrap.Unwrap(key.Oct, ciphertext)
	if err != nil {
		return nil, ErrDecryption
	}
	return pt, nil
}

func rsaEncrypt(rand io.Reader, a algorithm, pub *rsa.PublicKey, plaintext []byte) ([]byte, error) {
	var (
		v   []byte
		err error
	)
	if a.scheme == schemeOAEP {
		v, err = rsa.EncryptOAEP(a.hash.New(), rand, pub, plaintext, nil)
	} else {
		//lint:ignore SA1019 Key Vault offers RSA1_5 and azkeys clients use it.
		v, err = rsa.EncryptPKCS1v15(rand, pub, plaintext)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidInput, a.name, err)
	}
	return v, nil
}

// rsaDecrypt collapses every failure into ErrDecryption. For RSA1_5 that is
// still a padding oracle to whoever may call decrypt (Bleichenbacher); Key
// Vault exposes the same, and the key's key_ops can leave decrypt out.
func rsaDecrypt(a algorithm, priv *rsa.PrivateKey, ciphertext []byte) ([]byte, error) {
	var (
		pt  []byte
		err error
	)
	if a.scheme == schemeOAEP {
		pt, err = rsa.DecryptOAEP(a.hash.New(), nil, priv, ciphertext, nil)
	} else {
		//lint:ignore SA1019 Key Vault offers RSA1_5 and azkeys clients use it.
		pt, err = rsa.DecryptPKCS1v15(nil, priv, ciphertext)
	}
	if err != nil {
		return nil, ErrDecryption
	}
	return pt, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("keyops: %w", err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("keyops: %w", err)
	}
	return g, nil
}
