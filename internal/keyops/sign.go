package keyops

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"fmt"
	"io"
	"math/big"

	"github.com/cvault/cvault/internal/jwk"
)

// Sign runs Key Vault's sign over a digest the client computed: RS256/384/
// 512 and PS256/384/512 (salt length = hash length, RFC 7518 §3.5) with an
// RSA key, ES256/ES384/ES512 with a P-256/P-384/P-521 key. The digest length
// must match the algorithm's hash. EC signatures are JOSE's raw r ‖ s, each
// left-padded to the curve's byte size, as Key Vault returns them.
func Sign(rand io.Reader, key *jwk.PrivateKey, alg string, digest []byte) ([]byte, error) {
	a, err := resolve(OpSign, alg, schemePKCS1Sig, schemePSS, schemeECDSA)
	if err != nil {
		return nil, err
	}
	if err := a.checkKey(key); err != nil {
		return nil, err
	}
	if err := a.checkDigest(digest); err != nil {
		return nil, err
	}
	switch a.scheme {
	case schemePKCS1Sig:
		return wrapSignErr(a, func() ([]byte, error) { return rsa.SignPKCS1v15(nil, key.RSA, a.hash, digest) })
	case schemePSS:
		return wrapSignErr(a, func() ([]byte, error) {
			return rsa.SignPSS(rand, key.RSA, a.hash, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		})
	}
	r, s, err := ecdsa.Sign(rand, key.EC, digest)
	if err != nil {
		return nil, fmt.Errorf("keyops: %s: %w", alg, err)
	}
	n := coordSize(key.EC)
	sig := make([]byte, 2*n)
	r.FillBytes(sig[:n])
	s.FillBytes(sig[n:])
	return sig, nil
}

func wrapSignErr(a algorithm, sign func() ([]byte, error)) ([]byte, error) {
	sig, err := sign()
	if err != nil {
		return nil, fmt.Errorf("keyops: %s: %w", a.name, err)
	}
	return sig, nil
}

// Verify checks a signature over a digest with a public key (*rsa.PublicKey
// or *ecdsa.PublicKey; a key vault passes its key's Public()). A signature
// that does not verify, including a malformed one, is (false, nil); errors
// are for an algorithm that does not fit the key or a wrong digest length.
func Verify(pub crypto.PublicKey, alg string, digest, signature []byte) (bool, error) {
	a, err := resolve(OpVerify, alg, schemePKCS1Sig, schemePSS, schemeECDSA)
	if err != nil {
		return false, err
	}
	// Reuse the private-key check on a key holding just the public half.
	var probe jwk.PrivateKey
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		probe = jwk.PrivateKey{Type: jwk.KeyTypeRSA, RSA: &rsa.PrivateKey{PublicKey: *pub}}
	case *ecdsa.PublicKey:
		probe = jwk.PrivateKey{Type: jwk.KeyTypeEC, EC: &ecdsa.PrivateKey{PublicKey: *pub}}
	default:
		return false, fmt.Errorf("%w: %s on a %T", ErrAlgorithmMismatch, alg, pub)
	}
	if err := a.checkKey(&probe); err != nil {
		return false, err
	}
	if err := a.checkDigest(digest); err != nil {
		return false, err
	}
	switch a.scheme {
	case schemePKCS1Sig:
		return rsa.VerifyPKCS1v15(&probe.RSA.PublicKey, a.hash, digest, signature) == nil, nil
	case schemePSS:
		opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}
		return rsa.VerifyPSS(&probe.RSA.PublicKey, a.hash, digest, signature, opts) == nil, nil
	}
	n := coordSize(probe.EC)
	if len(signature) != 2*n {
		return false, nil
	}
	r := new(big.Int).SetBytes(signature[:n])
	s := new(big.Int).SetBytes(signature[n:])
	return ecdsa.Verify(&probe.EC.PublicKey, digest, r, s), nil
}

func (a algorithm) checkDigest(digest []byte) error {
	if len(digest) != a.hash.Size() {
		return fmt.Errorf("%w: %s takes a %d-byte digest, got %d", ErrBadDigestLength, a.name, a.hash.Size(), len(digest))
	}
	return nil
}

func coordSize(k *ecdsa.PrivateKey) int {
	return (k.Curve.Params().BitSize + 7) / 8
}
