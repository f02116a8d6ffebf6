package identity_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"testing"

	"github.com/cvault/cvault/internal/identity"
)

// BenchmarkToken measures token issuance against the raw RS256 signature
// it is built on.
func BenchmarkToken(b *testing.B) {
	s := newSeed003(b, true)
	ctx := context.Background()
	key, _ := keyPool(b)()
	digest := sha256.Sum256([]byte("header.payload"))
	b.Run("raw-rs256-sign", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("client_credentials", func(b *testing.B) {
		b.ReportAllocs()
		req := identity.TokenRequest{GrantType: "client_credentials", ClientID: s.boot.ClientID,
			ClientSecret: s.boot.Admin.ClientSecret, Scope: "https://vault.azure.net/.default openid profile offline_access"}
		for b.Loop() {
			if _, err := s.svc.Token(ctx, s.boot.TenantID, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("federated", func(b *testing.B) {
		b.ReportAllocs()
		assertion := s.assertion(b)
		for b.Loop() {
			if _, err := s.exchange(assertion); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("managed_identity", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.svc.ManagedIdentityToken(ctx, s.miSecret, identity.IdentitySelector{}, "https://vault.azure.net"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAuthenticate measures bearer-token validation against the raw
// RS256 verification it is built on.
func BenchmarkAuthenticate(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	tok, err := e.svc.Token(ctx, e.boot.TenantID, identity.TokenRequest{GrantType: "client_credentials",
		ClientID: e.boot.ClientID, ClientSecret: e.boot.Admin.ClientSecret, Scope: "https://vault.azure.net/.default"})
	if err != nil {
		b.Fatal(err)
	}
	key, _ := keyPool(b)()
	digest := sha256.Sum256([]byte("header.payload"))
	sig, _ := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	b.Run("raw-rs256-verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, digest[:], sig); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("authenticate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e.svc.Authenticate(ctx, tok.AccessToken, []string{"https://vault.azure.net"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
