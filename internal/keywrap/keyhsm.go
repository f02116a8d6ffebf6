package keywrap

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cvault/cvault/internal/jwk"
)

// ErrKeyHSM: a key_hsm blob is malformed or names something unsupported.
var ErrKeyHSM = errors.New("keywrap: malformed key_hsm")

// KeyHSMSchemaVersion is the only key_hsm schema version Key Vault emits.
const KeyHSMSchemaVersion = "1.0"

// KeyHSM is the decoded key_hsm blob of a released key (wire §2.4).
type KeyHSM struct {
	SchemaVersion string       `json:"schema_version"`
	Header        KeyHSMHeader `json:"header"`
	// Ciphertext is the RSAAESWrap output; unpadded base64url on the wire.
	Ciphertext jwk.Bytes `json:"ciphertext"`
}

// KeyHSMHeader names the key that can open the blob and how.
type KeyHSMHeader struct {
	KID string `json:"kid"` // kid of the release key from the attestation token
	Alg string `json:"alg"` // always "dir"
	Enc string `json:"enc"` // the release enc algorithm
}

// BuildKeyHSM returns the UTF-8 JSON of a key_hsm blob. The caller puts it
// in the JWK's key_hsm member, which encodes it as base64url.
func BuildKeyHSM(headerKID, enc string, ciphertext []byte) ([]byte, error) {
	if _, err := encHash(enc); err != nil {
		return nil, err
	}
	if headerKID == "" || len(ciphertext) == 0 {
		return nil, fmt.Errorf("%w: empty kid or ciphertext", ErrKeyHSM)
	}
	b, err := json.Marshal(KeyHSM{
		SchemaVersion: KeyHSMSchemaVersion,
		Header:        KeyHSMHeader{KID: headerKID, Alg: "dir", Enc: enc},
		Ciphertext:    ciphertext,
	})
	if err != nil {
		return nil, fmt.Errorf("keywrap: key_hsm: %w", err)
	}
	return b, nil
}

// ParseKeyHSM decodes a key_hsm blob (the JSON, after base64url decoding of
// the JWK member) on the guest side. It requires schema 1.0, alg "dir", a
// known enc, a kid and a ciphertext; the ciphertext may be base64url or
// standard base64, padded or not.
func ParseKeyHSM(b []byte) (*KeyHSM, error) {
	var k KeyHSM
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyHSM, err)
	}
	var errs []error
	if k.SchemaVersion != KeyHSMSchemaVersion {
		errs = append(errs, fmt.Errorf("%w: schema_version %q", ErrKeyHSM, k.SchemaVersion))
	}
	if k.Header.Alg != "dir" {
		errs = append(errs, fmt.Errorf("%w: alg %q", ErrKeyHSM, k.Header.Alg))
	}
	if _, err := encHash(k.Header.Enc); err != nil {
		errs = append(errs, err)
	}
	if k.Header.KID == "" {
		errs = append(errs, fmt.Errorf("%w: no kid", ErrKeyHSM))
	}
	if len(k.Ciphertext) == 0 {
		errs = append(errs, fmt.Errorf("%w: no ciphertext", ErrKeyHSM))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &k, nil
}
