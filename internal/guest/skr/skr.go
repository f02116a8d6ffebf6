// Package skr is the in-VM half of Secure Key Release (seeds 000 and 001):
// it makes the ephemeral RSA key a released key is wrapped to, binds its
// public half into attestation runtime data, attests the platform's
// evidence to an MAA-compatible service, and — once Key Vault answers a
// release — verifies the signed response and unwraps the key inside the VM.
// The ephemeral private key never leaves this process.
package skr

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/cvault/cvault/internal/guest/evidence"
	"github.com/cvault/cvault/internal/jwk"
	"github.com/cvault/cvault/internal/keywrap"
)

// Errors the agent distinguishes.
var (
	ErrAttestation = errors.New("skr: attestation refused")
	ErrReleaseJWS  = errors.New("skr: release response does not verify")
)

// EphemeralKey is the VM's transfer key: RSA-2048, in memory only.
type EphemeralKey struct {
	priv *rsa.PrivateKey
	kid  string
}

// NewEphemeralKey generates the transfer key (about 60 ms).
func NewEphemeralKey() (*EphemeralKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("skr: ephemeral key: %w", err)
	}
	return newEphemeral(k)
}

// NewEphemeralKeyFrom wraps an existing key (tests reuse one key per package).
func NewEphemeralKeyFrom(k *rsa.PrivateKey) (*EphemeralKey, error) { return newEphemeral(k) }

func newEphemeral(k *rsa.PrivateKey) (*EphemeralKey, error) {
	pub := &jwk.Key{KeyType: jwk.KeyTypeRSA, N: k.N.Bytes(), E: bigEndian(k.E)}
	tp, err := jwk.Thumbprint(pub)
	if err != nil {
		return nil, fmt.Errorf("skr: %w", err)
	}
	return &EphemeralKey{priv: k, kid: base64.RawURLEncoding.EncodeToString(tp)}, nil
}

func bigEndian(e int) []byte {
	var b []byte
	for e > 0 {
		b = append([]byte{byte(e)}, b...)
		e >>= 8
	}
	return b
}

// KID is the key's RFC 7638 thumbprint, as the confidential sidecar names it.
func (k *EphemeralKey) KID() string { return k.kid }

// Public returns the public key.
func (k *EphemeralKey) Public() *rsa.PublicKey { return &k.priv.PublicKey }

// String keeps the key out of logs.
func (k *EphemeralKey) String() string { return "EphemeralKey{" + k.kid + "}" }

// RuntimeData is the JSON the attestation binds (SHA-256 in REPORT_DATA)
// and returns as the token's x-ms-runtime claim: the transfer key as a JWK
// with key_ops ["encrypt"], which is what Key Vault wraps a released key to.
func (k *EphemeralKey) RuntimeData() ([]byte, error) {
	type key struct {
		KeyType string   `json:"kty"`
		KID     string   `json:"kid"`
		KeyOps  []string `json:"key_ops"`
		N       string   `json:"n"`
		E       string   `json:"e"`
	}
	return json.Marshal(map[string]any{"keys": []key{{
		KeyType: "RSA", KID: k.kid, KeyOps: []string{"encrypt"},
		N: base64.RawURLEncoding.EncodeToString(k.priv.N.Bytes()),
		E: base64.RawURLEncoding.EncodeToString(bigEndian(k.priv.E)),
	}}})
}

// Attest collects evidence binding the key's runtime data and posts it to
// an MAA-compatible SevSnpVm endpoint (maaURL is the instance URL, e.g.
// https://host:8443/attestation/default). It returns the attestation token.
func (k *EphemeralKey) Attest(ctx context.Context, client *http.Client, maaURL string, p evidence.Provider, nonce string) (string, error) {
	rd, err := k.RuntimeData()
	if err != nil {
		return "", err
	}
	ev, err := p.Evidence(ctx, evidence.ReportData(rd))
	if err != nil {
		return "", fmt.Errorf("skr: evidence: %w", err)
	}
	body, err := ev.Request(rd, nonce)
	if err != nil {
		return "", fmt.Errorf("skr: attestation request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(maaURL, "/")+"/attest/SevSnpVm?api-version=2022-08-01", bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("skr: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("skr: attest: %w", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%w (%d): %s", ErrAttestation, res.StatusCode, bytes.TrimSpace(b))
	}
	var out struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Token == "" {
		return "", fmt.Errorf("%w: no token in the response", ErrAttestation)
	}
	return out.Token, nil
}

// Released is a verified release response.
type Released struct {
	// Key is the released key bundle's JWK (public members and key_hsm).
	Key jwk.Key
	// Request echoes what the vault says was asked (kid, enc, nonce).
	Request struct {
		KID   string `json:"kid"`
		Enc   string `json:"enc"`
		Nonce string `json:"nonce"`
	}
	// Signer is the certificate that signed the response.
	Signer *x509.Certificate
}

// VerifyRelease checks a release response JWS as real SKR clients do: its
// x5c chain must chain to roots and name vaultHost (the vault URL's host), and its RS256 signature must
// verify with the leaf. Only then is the payload trusted.
func VerifyRelease(value string, roots *x509.CertPool, vaultHost string, now time.Time) (*Released, error) {
	if h, _, err := net.SplitHostPort(vaultHost); err == nil {
		vaultHost = h // certificates name hosts; x509 has no ports
	}
	sig, err := jose.ParseSignedCompact(value, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrReleaseJWS, err)
	}
	if len(sig.Signatures) != 1 {
		return nil, fmt.Errorf("%w: want one signature", ErrReleaseJWS)
	}
	// go-jose verifies the x5c chain (leaf first, intermediates after).
	chains, err := sig.Signatures[0].Header.Certificates(x509.VerifyOptions{DNSName: vaultHost, Roots: roots, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil || len(chains) == 0 {
		return nil, fmt.Errorf("%w: signing certificate: %v", ErrReleaseJWS, err)
	}
	leaf := chains[0][0]
	if _, ok := leaf.PublicKey.(*rsa.PublicKey); !ok {
		return nil, fmt.Errorf("%w: x5c[0] is not an RSA certificate", ErrReleaseJWS)
	}
	payload, err := sig.Verify(leaf.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrReleaseJWS, err)
	}
	var body struct {
		Request  json.RawMessage `json:"request"`
		Response struct {
			Key struct {
				Key jwk.Key `json:"key"`
			} `json:"key"`
		} `json:"response"`
	}
	if err := json.Unmarshal(payload, &body); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrReleaseJWS, err)
	}
	out := &Released{Key: body.Response.Key.Key, Signer: leaf}
	if len(body.Request) > 0 {
		_ = json.Unmarshal(body.Request, &out.Request)
	}
	if len(out.Key.KeyHSM) == 0 {
		return nil, fmt.Errorf("%w: the released key has no key_hsm", ErrReleaseJWS)
	}
	return out, nil
}

// Unwrap opens the released key's key_hsm with the transfer key.
func (k *EphemeralKey) Unwrap(r *Released) (*jwk.PrivateKey, error) {
	blob, err := keywrap.ParseKeyHSM(r.Key.KeyHSM)
	if err != nil {
		return nil, fmt.Errorf("skr: key_hsm: %w", err)
	}
	material, err := keywrap.RSAAESUnwrap(k.priv, blob.Header.Enc, blob.Ciphertext)
	if err != nil {
		return nil, fmt.Errorf("skr: unwrap: %w", err)
	}
	priv, err := jwk.ParsePrivateKey(r.Key.KeyType, material)
	if err != nil {
		return nil, fmt.Errorf("skr: released key: %w", err)
	}
	// The released private key must match the public key the vault published.
	if pub, err := r.Key.PublicKey(); err == nil {
		if eq, ok := pub.(interface{ Equal(crypto.PublicKey) bool }); ok && !eq.Equal(priv.Public()) {
			return nil, errors.New("skr: the released private key does not match the key's public part")
		}
	}
	return priv, nil
}

// Fingerprint is a short SHA-256 of the key's public part, for display.
func Fingerprint(pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "?"
	}
	sum := sha256.Sum256(der)
	return fmt.Sprintf("%x", sum[:8])
}
