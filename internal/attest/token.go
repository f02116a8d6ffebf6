// Package attest issues the attestation service's tokens (design §6, wire §4.4 and §4.7): an
// RS256 JWT in Microsoft Azure Attestation's shape carrying the claims a verifier package
// (attest/snp, attest/tdx) produced, the JWKS served at `/certs`, and the OpenID metadata
// document. Key release (seed 000/001 flows) checks these tokens exactly as Azure Key Vault
// checks MAA's. No HTTP and no storage here: keys and clocks are injected.
package attest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// DefaultLifetime is MAA's token lifetime (exp − iat = 8 h in every sample).
const DefaultLifetime = 8 * time.Hour

// ErrInvalidSigner is returned for a signer without a usable RSA key.
var ErrInvalidSigner = errors.New("attest: invalid token signer")

// Signer is an instance's token-signing key. MAA signs with RSA and publishes a self-signed
// certificate (x5c) per key; Certificate may be nil.
type Signer struct {
	Key         *rsa.PrivateKey
	Certificate *x509.Certificate
	// KeyID is the JWT `kid` and the JWKS `kid`; NewSigner derives it as MAA's shape does.
	KeyID string
}

// NewSigner returns a Signer whose KeyID is the standard base64 of SHA-256 over the
// certificate (or, without one, the public key's PKIX DER), the 44-character form MAA uses.
func NewSigner(key *rsa.PrivateKey, cert *x509.Certificate) (Signer, error) {
	if key == nil {
		return Signer{}, ErrInvalidSigner
	}
	der := []byte(nil)
	if cert != nil {
		if !key.PublicKey.Equal(cert.PublicKey) {
			return Signer{}, fmt.Errorf("%w: certificate does not match the key", ErrInvalidSigner)
		}
		der = cert.Raw
	} else {
		var err error
		if der, err = x509.MarshalPKIXPublicKey(&key.PublicKey); err != nil {
			return Signer{}, fmt.Errorf("%w: %v", ErrInvalidSigner, err)
		}
	}
	sum := sha256.Sum256(der)
	return Signer{Key: key, Certificate: cert, KeyID: base64.StdEncoding.EncodeToString(sum[:])}, nil
}

// Options are the per-token parameters of Issue.
type Options struct {
	Issuer string // iss: the instance URL
	JKU    string // header jku: the instance's /certs URL
	// Lifetime is exp − iat; zero means DefaultLifetime.
	Lifetime time.Duration
	Now      func() time.Time // nil means time.Now
	Rand     io.Reader        // for jti; nil means crypto/rand
	Nonce    string           // echoed as `nonce` when not empty
}

// Issue signs claims (from a verifier's Claims) into a compact RS256 JWT with header
// {alg, jku, kid, typ:"JWT"} and the standard claims iss, iat, nbf (= iat), exp, jti (64 hex
// characters) and nonce. Standard claims override same-named entries in claims.
func Issue(claims map[string]any, s Signer, o Options) (string, error) {
	if s.Key == nil || s.KeyID == "" {
		return "", ErrInvalidSigner
	}
	if o.Issuer == "" {
		return "", errors.New("attest: issue: no issuer")
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	rnd := o.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	lifetime := o.Lifetime
	if lifetime == 0 {
		lifetime = DefaultLifetime
	}
	var jti [32]byte
	if _, err := io.ReadFull(rnd, jti[:]); err != nil {
		return "", fmt.Errorf("attest: issue: jti: %w", err)
	}
	iat := now().Unix()
	out := maps.Clone(claims)
	if out == nil {
		out = map[string]any{}
	}
	out["iss"] = o.Issuer
	out["iat"] = iat
	out["nbf"] = iat
	out["exp"] = iat + int64(lifetime/time.Second)
	out["jti"] = hex.EncodeToString(jti[:])
	if o.Nonce != "" {
		out["nonce"] = o.Nonce
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if o.JKU != "" {
		opts = opts.WithHeader("jku", o.JKU)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: s.Key, KeyID: s.KeyID}}, opts)
	if err != nil {
		return "", fmt.Errorf("attest: issue: %w", err)
	}
	tok, err := jwt.Signed(signer).Claims(out).Serialize()
	if err != nil {
		return "", fmt.Errorf("attest: issue: %w", err)
	}
	return tok, nil
}

// JWKS renders the `/certs` document: one RSA key per signer with kid, kty, n, e, and x5c when
// the signer has a certificate (MAA publishes x5c; generic verifiers use n/e).
func JWKS(signers ...Signer) ([]byte, error) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for _, s := range signers {
		if s.Key == nil {
			return nil, ErrInvalidSigner
		}
		k := jose.JSONWebKey{Key: &s.Key.PublicKey, KeyID: s.KeyID}
		if s.Certificate != nil {
			k.Certificates = []*x509.Certificate{s.Certificate}
		}
		set.Keys = append(set.Keys, k)
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("attest: jwks: %w", err)
	}
	return b, nil
}

// Metadata is the OpenID metadata document at `/.well-known/openid-configuration` (wire §4.7).
type Metadata struct {
	Issuer                           string   `json:"issuer"`
	JWKSURI                          string   `json:"jwks_uri"`
	ResponseTypesSupported           []string `json:"response_types_supported"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
	RevocationEndpoint               string   `json:"revocation_endpoint"`
	ClaimsSupported                  []string `json:"claims_supported"`
}

// OpenIDMetadata returns the metadata of the instance at issuer (no trailing slash), whose
// JWKS is at issuer + "/certs".
func OpenIDMetadata(issuer string, claims []string) Metadata {
	if claims == nil {
		claims = []string{}
	}
	return Metadata{
		Issuer:                           issuer,
		JWKSURI:                          issuer + "/certs",
		ResponseTypesSupported:           []string{"token", "none"},
		IDTokenSigningAlgValuesSupported: []string{"RS256"},
		RevocationEndpoint:               issuer + "/revoke",
		ClaimsSupported:                  claims,
	}
}

// SelfSignedCertificate makes the self-signed certificate MAA-style JWKS entries carry (x5c)
// for key, valid from now for validity.
func SelfSignedCertificate(key *rsa.PrivateKey, commonName string, now time.Time, validity time.Duration) (*x509.Certificate, error) {
	serial := make([]byte, 16)
	if _, err := rand.Read(serial); err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: new(big.Int).SetBytes(serial),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("attest: self-signed certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}
