package identity_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cvault/cvault/internal/identity"
)

// FuzzAuthenticate feeds arbitrary strings to the token parser and verifier:
// it must never panic, a parse failure must come with no claims used, and
// anything accepted must be a token this service signed.
func FuzzAuthenticate(f *testing.F) {
	e := newEnv(f)
	ctx := context.Background()
	tok, err := e.svc.Token(ctx, e.boot.TenantID, identity.TokenRequest{GrantType: "client_credentials",
		ClientID: e.boot.ClientID, ClientSecret: e.boot.Admin.ClientSecret, Scope: "https://vault.azure.net/.default"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok.AccessToken)
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := e.svc.Authenticate(ctx, raw, []string{"https://vault.azure.net"})
		if err != nil {
			if p != nil {
				t.Fatal("principal returned with an error")
			}
			return
		}
		if signedPart(raw) != signedPart(tok.AccessToken) {
			// The signature covers header and payload exactly, so anything
			// else verifying means the signature check is broken.
			t.Fatalf("accepted a token we did not issue: %q", raw)
		}
		if _, c, err := identity.ParseToken(raw); err != nil || c.ObjectID != p.ObjectID {
			t.Fatalf("accepted token does not parse back: %v", err)
		}
	})
}

// FuzzValidateAssertion feeds arbitrary assertions to the federated
// credential validator: failures are *OAuthError, and nothing but the
// identity's real assertion passes.
func FuzzValidateAssertion(f *testing.F) {
	s := newSeed003(f, true)
	ctx := context.Background()
	good := s.assertion(f)
	app, err := s.svc.GetApplication(ctx, s.boot.TenantID, s.app.ObjectID)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-2])
	f.Add("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.AAAA")
	f.Add("..")
	f.Fuzz(func(t *testing.T, raw string) {
		err := s.svc.ValidateAssertion(ctx, raw, app.FederatedCredentials)
		if err == nil {
			if signedPart(raw) != signedPart(good) {
				t.Fatalf("accepted an assertion we did not issue: %q", raw)
			}
			return
		}
		var oe *identity.OAuthError
		if !errors.As(err, &oe) || oe.AADSTS == 0 {
			t.Fatalf("err = %v, want *OAuthError", err)
		}
	})
}

// signedPart is header.payload, what the signature covers (base64's spare
// bits let one signature be spelled several ways).
func signedPart(jws string) string {
	if i := strings.LastIndexByte(jws, '.'); i >= 0 {
		return jws[:i]
	}
	return jws
}
