// Package jwk holds Azure Key Vault's JsonWebKey model and the key material
// behind it: generation of RSA, EC and AES (oct) keys, conversion between Go
// keys and JWKs (public for responses, private for import), the byte form in
// which a key version is sealed at rest and wrapped by Secure Key Release,
// and RFC 7638 thumbprints.
//
// It serves the keys data plane (create, import, get) and the release flow
// of the confidential-VM seeds; the wire shapes are in
// wire/keyvault-release-attestation.md §1.2, §1.3, §1.8 and §2.4.
package jwk

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// Key types (JSON "kty") as Key Vault names them. The -HSM variants hold the
// same material; the key vault decides where they may live.
const (
	KeyTypeRSA    = "RSA"
	KeyTypeRSAHSM = "RSA-HSM"
	KeyTypeEC     = "EC"
	KeyTypeECHSM  = "EC-HSM"
	KeyTypeOct    = "oct"
	KeyTypeOctHSM = "oct-HSM"
)

// Curves (JSON "crv"). P-256K (secp256k1) is not supported: the standard
// library has no implementation and go.mod pins none.
const (
	CurveP256 = "P-256"
	CurveP384 = "P-384"
	CurveP521 = "P-521"
)

// Sentinel errors; the key vault maps all of them to Azure's BadParameter.
var (
	ErrUnsupportedKeyType  = errors.New("jwk: unsupported key type")
	ErrUnsupportedKeySize  = errors.New("jwk: unsupported key size")
	ErrUnsupportedCurve    = errors.New("jwk: unsupported curve")
	ErrUnsupportedExponent = errors.New("jwk: unsupported public exponent")
	// ErrInvalidKey: the material is malformed or inconsistent (an RSA key
	// that fails validation, an EC point off the curve, a missing field).
	ErrInvalidKey = errors.New("jwk: invalid key")
)

// Family reports the base key type of an Azure kty ("RSA", "EC" or "oct"),
// or "" when kty is not one of the six known types.
func Family(kty string) string {
	switch kty {
	case KeyTypeRSA, KeyTypeRSAHSM:
		return KeyTypeRSA
	case KeyTypeEC, KeyTypeECHSM:
		return KeyTypeEC
	case KeyTypeOct, KeyTypeOctHSM:
		return KeyTypeOct
	}
	return ""
}

// IsHSM reports whether kty is one of the -HSM key types.
func IsHSM(kty string) bool {
	return kty == KeyTypeRSAHSM || kty == KeyTypeECHSM || kty == KeyTypeOctHSM
}

// Key is Key Vault's JsonWebKey (SPEC74 JsonWebKey). A public JWK leaves all
// private members empty; an import carries them.
type Key struct {
	KID     string   `json:"kid,omitempty"`
	KeyType string   `json:"kty"`
	KeyOps  []string `json:"key_ops,omitempty"`
	N       Bytes    `json:"n,omitempty"`
	E       Bytes    `json:"e,omitempty"`
	D       Bytes    `json:"d,omitempty"`
	DP      Bytes    `json:"dp,omitempty"`
	DQ      Bytes    `json:"dq,omitempty"`
	QI      Bytes    `json:"qi,omitempty"`
	P       Bytes    `json:"p,omitempty"`
	Q       Bytes    `json:"q,omitempty"`
	K       Bytes    `json:"k,omitempty"`
	// KeyHSM is the key_hsm blob (release output, BYOK input); its bytes are
	// the UTF-8 JSON that keywrap.BuildKeyHSM makes.
	KeyHSM Bytes  `json:"key_hsm,omitempty"`
	Curve  string `json:"crv,omitempty"`
	X      Bytes  `json:"x,omitempty"`
	Y      Bytes  `json:"y,omitempty"`
}

// ParseKey decodes one JWK from JSON. Unknown members are ignored (real
// import bodies carry extras such as key_size); kty must be a known type.
func ParseKey(data []byte) (*Key, error) {
	var k Key
	if err := json.Unmarshal(data, &k); err != nil {
		return nil, fmt.Errorf("jwk: parse: %w", err)
	}
	if Family(k.KeyType) == "" {
		return nil, fmt.Errorf("%w %q", ErrUnsupportedKeyType, k.KeyType)
	}
	if len(k.KeyOps) == 0 {
		k.KeyOps = nil // "key_ops":[] and absent mean the same
	}
	return &k, nil
}

// HasPrivate reports whether any private member (d, dp, dq, qi, p, q, k) is set.
func (k *Key) HasPrivate() bool {
	return len(k.D) > 0 || len(k.DP) > 0 || len(k.DQ) > 0 || len(k.QI) > 0 ||
		len(k.P) > 0 || len(k.Q) > 0 || len(k.K) > 0
}

// Bytes is a JWK binary member: unpadded base64url on output (azkeys decodes
// with RawURLEncoding and fails on a pad), and any of base64url or standard
// base64, padded or not, on input. An empty string decodes to nil.
type Bytes []byte

// MarshalJSON encodes b as an unpadded base64url string.
func (b Bytes) MarshalJSON() ([]byte, error) {
	out := make([]byte, 0, base64.RawURLEncoding.EncodedLen(len(b))+2)
	out = append(out, '"')
	out = base64.RawURLEncoding.AppendEncode(out, b)
	return append(out, '"'), nil
}

// UnmarshalJSON decodes a JSON string leniently; null leaves b unchanged.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	if bytes.Equal(data, []byte("null")) {
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	v, err := DecodeBase64(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// DecodeBase64 decodes s as base64url or standard base64, with or without
// padding (wire §1.3: clients send all four). An empty string decodes to nil.
func DecodeBase64(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	for _, enc := range []*base64.Encoding{
		base64.RawURLEncoding, base64.URLEncoding, base64.StdEncoding, base64.RawStdEncoding,
	} {
		if v, err := enc.DecodeString(s); err == nil {
			return v, nil
		}
	}
	return nil, errors.New("jwk: not base64 or base64url")
}
