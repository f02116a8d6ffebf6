package skr

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/cvault/cvault/internal/jwk"
	"github.com/cvault/cvault/internal/keywrap"
)

// One RSA key for the transfer key and one for the vault's signing
// certificate, generated once for the package.
var keys = sync.OnceValues(func() ([2]*rsa.PrivateKey, error) {
	var out [2]*rsa.PrivateKey
	for i := range out {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return out, err
		}
		out[i] = k
	}
	return out, nil
})

type vault struct {
	roots *x509.CertPool
	leaf  *x509.Certificate
	ca    *x509.Certificate
	key   *rsa.PrivateKey
}

func newVault(t *testing.T, host string) vault {
	t.Helper()
	ks, err := keys()
	if err != nil {
		t.Fatal(err)
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caT, caT, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	leafT := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafT, ca, &ks[1].PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(leafDER)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return vault{roots: roots, leaf: leaf, ca: ca, key: ks[1]}
}

// release builds a release JWS the way Key Vault does (wire §2.2-2.4),
// independently of the code under test's parsing.
func (v vault) release(t *testing.T, to *rsa.PublicKey, enc string, released *ecdsa.PrivateKey) string {
	t.Helper()
	p8, _ := x509.MarshalPKCS8PrivateKey(released)
	ct, err := keywrap.RSAAESWrap(rand.Reader, to, enc, p8)
	if err != nil {
		t.Fatal(err)
	}
	blob, _ := keywrap.BuildKeyHSM("transfer", enc, ct)
	point, err := released.PublicKey.Bytes() // 0x04 ‖ X ‖ Y
	if err != nil {
		t.Fatal(err)
	}
	x, y := point[1:33], point[33:]
	payload, _ := json.Marshal(map[string]any{
		"request": map[string]any{"api-version": "7.4", "enc": enc, "kid": "https://kv1.vault.localhost:8443/keys/k"},
		"response": map[string]any{"key": map[string]any{"key": map[string]any{
			"kid": "https://kv1.vault.localhost:8443/keys/k/0123", "kty": "EC-HSM", "crv": "P-256",
			"x": jwk.Bytes(x), "y": jwk.Bytes(y), "key_hsm": jwk.Bytes(blob)}}},
	})
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: v.key},
		(&jose.SignerOptions{}).WithHeader("x5c", []string{b64(v.leaf.Raw), b64(v.ca.Raw)}))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := jws.CompactSerialize()
	return s
}

func b64(b []byte) string { return jsonString(b) }

func jsonString(b []byte) string {
	s, _ := json.Marshal(b) // std base64, as x5c requires
	return string(s[1 : len(s)-1])
}

func TestVerifyAndUnwrap(t *testing.T) {
	ks, _ := keys()
	ek, err := NewEphemeralKeyFrom(ks[0])
	if err != nil {
		t.Fatal(err)
	}
	v := newVault(t, "kv1.vault.localhost")
	secret, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, enc := range []string{keywrap.EncCKMRSAAESKeyWrap, keywrap.EncRSAAESKeyWrap256, keywrap.EncRSAAESKeyWrap384} {
		jws := v.release(t, ek.Public(), enc, secret)
		r, err := VerifyRelease(jws, v.roots, "kv1.vault.localhost:8443", time.Now())
		if err != nil {
			t.Fatalf("%s: %v", enc, err)
		}
		got, err := ek.Unwrap(r)
		if err != nil {
			t.Fatalf("%s: %v", enc, err)
		}
		if !got.EC.Equal(secret) {
			t.Fatalf("%s: released key differs", enc)
		}
	}
	jws := v.release(t, ek.Public(), keywrap.EncRSAAESKeyWrap256, secret)
	// Refusals: another vault's name, untrusted roots, tampering, expiry.
	if _, err := VerifyRelease(jws, v.roots, "kv2.vault.localhost", time.Now()); !errors.Is(err, ErrReleaseJWS) {
		t.Errorf("wrong host: %v", err)
	}
	if _, err := VerifyRelease(jws, x509.NewCertPool(), "kv1.vault.localhost", time.Now()); !errors.Is(err, ErrReleaseJWS) {
		t.Errorf("untrusted root: %v", err)
	}
	if _, err := VerifyRelease(jws, v.roots, "kv1.vault.localhost", time.Now().Add(2*time.Hour)); !errors.Is(err, ErrReleaseJWS) {
		t.Errorf("expired certificate: %v", err)
	}
	tampered := []byte(jws)
	tampered[len(tampered)/2] ^= 1
	if _, err := VerifyRelease(string(tampered), v.roots, "kv1.vault.localhost", time.Now()); err == nil {
		t.Error("tampered JWS accepted")
	}
	// A response wrapped to someone else's key does not open with ours.
	other, _ := NewEphemeralKeyFrom(ks[1])
	r, _ := VerifyRelease(v.release(t, other.Public(), keywrap.EncRSAAESKeyWrap256, secret), v.roots, "kv1.vault.localhost", time.Now())
	if _, err := ek.Unwrap(r); err == nil {
		t.Error("unwrapped a key wrapped to another transfer key")
	}
}

func TestRuntimeDataCarriesTheTransferKey(t *testing.T) {
	ks, _ := keys()
	ek, _ := NewEphemeralKeyFrom(ks[0])
	rd, err := ek.RuntimeData()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Keys []jwk.Key `json:"keys"`
	}
	if err := json.Unmarshal(rd, &doc); err != nil || len(doc.Keys) != 1 {
		t.Fatalf("runtime data %s: %v", rd, err)
	}
	pub, err := doc.Keys[0].PublicKey()
	if err != nil || !ek.Public().Equal(pub) || doc.Keys[0].KID != ek.KID() || doc.Keys[0].KeyOps[0] != "encrypt" {
		t.Fatalf("runtime key %+v does not match", doc.Keys[0])
	}
	if ek.String() == "" || Fingerprint(pub) == "?" {
		t.Error("display helpers")
	}
}
