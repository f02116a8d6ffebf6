package jwk

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
)

// Thumbprint returns the RFC 7638 JWK thumbprint (SHA-256) of an RSA or EC
// key: the hash of the required public members in lexicographic order with
// no whitespace. For the -HSM types the base type ("RSA", "EC") is hashed,
// so a key's thumbprint does not depend on where it lives. The sidecar uses
// this value as the kid of its release key (wire §2.5).
func Thumbprint(k *Key) ([]byte, error) {
	var canonical any
	switch Family(k.KeyType) {
	case KeyTypeRSA:
		if len(k.N) == 0 || len(k.E) == 0 {
			return nil, fmt.Errorf("%w: RSA thumbprint needs n and e", ErrInvalidKey)
		}
		// Struct field order is the member order RFC 7638 §3.2 requires.
		canonical = struct {
			E   Bytes  `json:"e"`
			Kty string `json:"kty"`
			N   Bytes  `json:"n"`
		}{k.E, KeyTypeRSA, k.N}
	case KeyTypeEC:
		if k.Curve == "" || len(k.X) == 0 || len(k.Y) == 0 {
			return nil, fmt.Errorf("%w: EC thumbprint needs crv, x and y", ErrInvalidKey)
		}
		if _, err := Curve(k.Curve); err != nil {
			return nil, err
		}
		canonical = struct {
			Crv string `json:"crv"`
			Kty string `json:"kty"`
			X   Bytes  `json:"x"`
			Y   Bytes  `json:"y"`
		}{k.Curve, KeyTypeEC, k.X, k.Y}
	default:
		return nil, fmt.Errorf("%w %q for thumbprint", ErrUnsupportedKeyType, k.KeyType)
	}
	b, err := json.Marshal(canonical)
	if err != nil {
		return nil, fmt.Errorf("jwk: thumbprint: %w", err)
	}
	sum := sha256.Sum256(b)
	return sum[:], nil
}
