package attest_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cvault/cvault/internal/attest"
	"github.com/golang-jwt/jwt/v5"
)

var keyOnce = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

func testSigner(t testing.TB, withCert bool) attest.Signer {
	t.Helper()
	key, err := keyOnce()
	if err != nil {
		t.Fatal(err)
	}
	var cert *x509.Certificate
	if withCert {
		if cert, err = attest.SelfSignedCertificate(key, "cvault attestation test", time.Now(), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	s, err := attest.NewSigner(key, cert)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// keyfuncFromJWKS is what a generic relying party does with /certs: nothing but the JSON.
func keyfuncFromJWKS(t *testing.T, jwks []byte) jwt.Keyfunc {
	var set struct {
		Keys []struct {
			Kid, Kty, N, E string
			X5c            []string
		}
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatal(err)
	}
	return func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		for _, k := range set.Keys {
			if k.Kid != kid || k.Kty != "RSA" {
				continue
			}
			n, err1 := base64.RawURLEncoding.DecodeString(k.N)
			e, err2 := base64.RawURLEncoding.DecodeString(k.E)
			if err := errors.Join(err1, err2); err != nil {
				return nil, err
			}
			pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
			for _, c := range k.X5c { // x5c, when present, must carry the same key
				der, err := base64.StdEncoding.DecodeString(c)
				if err != nil {
					return nil, err
				}
				cert, err := x509.ParseCertificate(der)
				if err != nil || !pub.Equal(cert.PublicKey) {
					return nil, errors.New("x5c does not match n/e")
				}
			}
			return pub, nil
		}
		return nil, errors.New("kid not in JWKS")
	}
}

func TestIssueVerifiesWithJWKSOnly(t *testing.T) {
	for _, withCert := range []bool{true, false} {
		s := testSigner(t, withCert)
		now := time.Now().Truncate(time.Second)
		claims := map[string]any{"x-ms-attestation-type": "sevsnpvm", "x-cvault-simulated": true, "iss": "spoofed",
			"x-ms-runtime": map[string]any{"keys": []any{map[string]any{"kid": "k"}}}}
		tok, err := attest.Issue(claims, s, attest.Options{Issuer: "https://cvault.example/attestation/i1",
			JKU: "https://cvault.example/attestation/i1/certs", Now: func() time.Time { return now }, Nonce: "n1"})
		if err != nil {
			t.Fatal(err)
		}
		jwks, err := attest.JWKS(s)
		if err != nil {
			t.Fatal(err)
		}
		if withCert != strings.Contains(string(jwks), `"x5c"`) {
			t.Errorf("x5c presence = %v, want %v: %s", !withCert, withCert, jwks)
		}
		parsed, err := jwt.Parse(tok, keyfuncFromJWKS(t, jwks), jwt.WithValidMethods([]string{"RS256"}),
			jwt.WithIssuer("https://cvault.example/attestation/i1"), jwt.WithExpirationRequired(), jwt.WithIssuedAt())
		if err != nil {
			t.Fatalf("golang-jwt rejected the token: %v", err)
		}
		h := parsed.Header
		if h["typ"] != "JWT" || h["jku"] != "https://cvault.example/attestation/i1/certs" || h["kid"] != s.KeyID || h["alg"] != "RS256" {
			t.Errorf("header = %v", h)
		}
		c := parsed.Claims.(jwt.MapClaims)
		if c["nonce"] != "n1" || c["x-cvault-simulated"] != true || c["iat"] != c["nbf"] ||
			c["exp"].(float64)-c["iat"].(float64) != 28800 || len(c["jti"].(string)) != 64 {
			t.Errorf("claims = %v", c)
		}
		if _, ok := claims["jti"]; ok {
			t.Error("Issue modified the caller's claims")
		}
		if kid, _ := base64.StdEncoding.DecodeString(s.KeyID); len(kid) != 32 {
			t.Errorf("kid %q is not std-base64 of 32 bytes", s.KeyID)
		}
	}
}

func TestIssueRejectsTamperingAndExpiry(t *testing.T) {
	s := testSigner(t, true)
	jwks, _ := attest.JWKS(s)
	old := time.Now().Add(-9 * time.Hour)
	tok, err := attest.Issue(nil, s, attest.Options{Issuer: "https://i", Now: func() time.Time { return old }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwt.Parse(tok, keyfuncFromJWKS(t, jwks)); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Errorf("expired token: %v", err)
	}
	tok, _ = attest.Issue(map[string]any{"a": 1}, s, attest.Options{Issuer: "https://i"})
	parts := strings.Split(tok, ".")
	body, _ := base64.RawURLEncoding.DecodeString(parts[1])
	parts[1] = base64.RawURLEncoding.EncodeToString(bytes.Replace(body, []byte(`"a":1`), []byte(`"a":2`), 1))
	if _, err := jwt.Parse(strings.Join(parts, "."), keyfuncFromJWKS(t, jwks)); !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		t.Errorf("tampered token: %v", err)
	}
	if _, err := attest.Issue(nil, attest.Signer{}, attest.Options{Issuer: "x"}); !errors.Is(err, attest.ErrInvalidSigner) {
		t.Errorf("empty signer: %v", err)
	}
}

func TestOpenIDMetadata(t *testing.T) {
	b, err := json.Marshal(attest.OpenIDMetadata("https://h/attestation/i", []string{"x-ms-attestation-type"}))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"issuer":"https://h/attestation/i","jwks_uri":"https://h/attestation/i/certs","response_types_supported":["token","none"],` +
		`"id_token_signing_alg_values_supported":["RS256"],"revocation_endpoint":"https://h/attestation/i/revoke","claims_supported":["x-ms-attestation-type"]}`
	if string(b) != want {
		t.Errorf("metadata = %s\nwant %s", b, want)
	}
}
