// Package keyops performs Key Vault's cryptographic key operations by Azure
// algorithm name: wrapKey/unwrapKey, encrypt/decrypt and sign/verify over a
// key version's material (wire §1.5). It checks that the algorithm fits the
// key's type, size and curve, and that a digest fits the algorithm, and
// returns sentinel errors the key vault maps to Azure's BadParameter.
//
// It serves the keys data plane: the disk-encryption and container seeds
// wrap their DEKs through it.
package keyops

import (
	"crypto"
	"errors"
	"fmt"

	"github.com/cvault/cvault/internal/jwk"
)

// Operation names as they appear in key_ops.
const (
	OpEncrypt   = "encrypt"
	OpDecrypt   = "decrypt"
	OpSign      = "sign"
	OpVerify    = "verify"
	OpWrapKey   = "wrapKey"
	OpUnwrapKey = "unwrapKey"
	OpImport    = "import"
	OpExport    = "export"
)

// Algorithm names (SPEC74 JsonWebKeyEncryptionAlgorithm and
// JsonWebKeySignatureAlgorithm) that this package implements.
const (
	RSAOAEP    = "RSA-OAEP"     // OAEP with SHA-1
	RSAOAEP256 = "RSA-OAEP-256" // OAEP with SHA-256
	RSA15      = "RSA1_5"       // PKCS #1 v1.5 encryption

	A128KW = "A128KW" // RFC 3394, oct keys, wrap only
	A192KW = "A192KW"
	A256KW = "A256KW"

	A128GCM = "A128GCM" // oct keys, encrypt only
	A192GCM = "A192GCM"
	A256GCM = "A256GCM"

	RS256 = "RS256"
	RS384 = "RS384"
	RS512 = "RS512"
	PS256 = "PS256"
	PS384 = "PS384"
	PS512 = "PS512"
	ES256 = "ES256"
	ES384 = "ES384"
	ES512 = "ES512"
)

// GCM sizes Key Vault uses: a 12-byte iv and a 16-byte tag returned apart
// from the ciphertext.
const (
	GCMIVSize  = 12
	GCMTagSize = 16
)

// Sentinel errors; the key vault maps each to BadParameter.
var (
	// ErrUnsupportedAlgorithm: the name is unknown, not implemented (the
	// CBC family, ES256K, CKM_AES_KEY_WRAP) or not one this operation takes.
	ErrUnsupportedAlgorithm = errors.New("keyops: unsupported algorithm")
	// ErrAlgorithmMismatch: the algorithm does not fit the key's type,
	// size or curve.
	ErrAlgorithmMismatch = errors.New("keyops: algorithm does not fit the key")
	// ErrBadDigestLength: sign/verify got a digest of the wrong length.
	ErrBadDigestLength = errors.New("keyops: digest length does not match the algorithm")
	// ErrInvalidInput: plaintext, iv or tag has a length the algorithm
	// cannot take.
	ErrInvalidInput = errors.New("keyops: invalid input")
	// ErrDecryption: decrypt or unwrap failed. It never says why.
	ErrDecryption = errors.New("keyops: decryption failed")
)

// DefaultOps returns the operations a new key of Azure type kty allows when
// the request gives no key_ops: all six for RSA, sign and verify for EC,
// encrypt/decrypt/wrapKey/unwrapKey for oct (EX74, REC-KV). Unknown types
// get nil.
func DefaultOps(kty string) []string {
	switch jwk.Family(kty) {
	case jwk.KeyTypeRSA:
		return []string{OpEncrypt, OpDecrypt, OpSign, OpVerify, OpWrapKey, OpUnwrapKey}
	case jwk.KeyTypeEC:
		return []string{OpSign, OpVerify}
	case jwk.KeyTypeOct:
		return []string{OpEncrypt, OpDecrypt, OpWrapKey, OpUnwrapKey}
	}
	return nil
}

type scheme int

const (
	schemeOAEP scheme = iota + 1
	schemePKCS1Enc
	schemeAESKW
	schemeAESGCM
	schemePKCS1Sig
	schemePSS
	schemeECDSA
)

// algorithm is what an Azure algorithm name implies.
type algorithm struct {
	name   string
	scheme scheme
	hash   crypto.Hash // OAEP and signature hash
	keyLen int         // AES key bytes
	curve  string      // ECDSA curve
}

func lookup(alg string) (algorithm, bool) {
	a := algorithm{name: alg}
	switch alg {
	case RSAOAEP:
		a.scheme, a.hash = schemeOAEP, crypto.SHA1
	case RSAOAEP256:
		a.scheme, a.hash = schemeOAEP, crypto.SHA256
	case RSA15:
		a.scheme = schemePKCS1Enc
	case A128KW, A192KW, A256KW:
		a.scheme, a.keyLen = schemeAESKW, aesBits(alg)/8
	case A128GCM, A192GCM, A256GCM:
		a.scheme, a.keyLen = schemeAESGCM, aesBits(alg)/8
	case RS256, RS384, RS512:
		a.scheme, a.hash = schemePKCS1Sig, shaBits(alg)
	case PS256, PS384, PS512:
		a.scheme, a.hash = schemePSS, shaBits(alg)
	case ES256:
		a.scheme, a.hash, a.curve = schemeECDSA, crypto.SHA256, jwk.CurveP256
	case ES384:
		a.scheme, a.hash, a.curve = schemeECDSA, crypto.SHA384, jwk.CurveP384
	case ES512:
		a.scheme, a.hash, a.curve = schemeECDSA, crypto.SHA512, jwk.CurveP521
	default:
		return a, false
	}
	return a, true
}

// aesBits reads 128/192/256 from "A128KW", "A256GCM", ….
func aesBits(alg string) int {
	switch alg[1:4] {
	case "128":
		return 128
	case "192":
		return 192
	}
	return 256
}

// shaBits maps the "256"/"384"/"512" suffix of RS*/PS* to its hash.
func shaBits(alg string) crypto.Hash {
	switch alg[2:] {
	case "256":
		return crypto.SHA256
	case "384":
		return crypto.SHA384
	}
	return crypto.SHA512
}

// resolve finds alg among the schemes an operation allows.
func resolve(op, alg string, allowed ...scheme) (algorithm, error) {
	a, ok := lookup(alg)
	if ok {
		for _, s := range allowed {
			if a.scheme == s {
				return a, nil
			}
		}
	}
	return a, fmt.Errorf("%w %q for %s", ErrUnsupportedAlgorithm, alg, op)
}

// checkKey reports whether key can run a.
func (a algorithm) checkKey(key *jwk.PrivateKey) error {
	switch a.scheme {
	case schemeOAEP, schemePKCS1Enc, schemePKCS1Sig, schemePSS:
		if key.RSA != nil {
			return nil
		}
	case schemeAESKW, schemeAESGCM:
		if key.Oct != nil && len(key.Oct) == a.keyLen {
			return nil
		}
	case schemeECDSA:
		if key.EC != nil {
			if crv, err := jwk.CurveName(key.EC.Curve); err == nil && crv == a.curve {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: %s on a %s key", ErrAlgorithmMismatch, a.name, describe(key))
}

// describe names a key's type and size for error messages (never material).
func describe(key *jwk.PrivateKey) string {
	switch {
	case key.RSA != nil && key.RSA.N != nil:
		return fmt.Sprintf("%s-%d", key.Type, key.RSA.N.BitLen())
	case key.EC != nil:
		crv, _ := jwk.CurveName(key.EC.Curve)
		return fmt.Sprintf("%s %s", key.Type, crv)
	case key.Oct != nil:
		return fmt.Sprintf("%s-%d", key.Type, 8*len(key.Oct))
	}
	return "empty"
}
