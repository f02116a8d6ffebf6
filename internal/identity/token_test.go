package identity_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/identity"
)

func TestBootstrapIsIdempotent(t *testing.T) {
	e := newEnv(t)
	if e.boot.Admin == nil || e.boot.Admin.ClientSecret == "" {
		t.Fatal("first bootstrap returned no admin secret")
	}
	again, err := e.svc.Bootstrap(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if again.Admin != nil || again.TenantID != e.boot.TenantID || again.ClientID != e.boot.ClientID {
		t.Fatalf("second bootstrap = %+v, want the same tenant without a secret", again)
	}
	if ok, _ := e.svc.IsDirectoryAdmin(context.Background(), e.admin); !ok {
		t.Fatal("bootstrap admin is not a directory administrator")
	}
	if s := e.boot.Admin.String(); strings.Contains(s, e.boot.Admin.ClientSecret) {
		t.Fatal("AdminCredentials.String leaks the secret")
	}
}

func TestClientSecretTokenClaims(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok, err := e.svc.Token(ctx, e.boot.TenantID, identity.TokenRequest{GrantType: "client_credentials",
		ClientID: e.boot.ClientID, ClientSecret: e.boot.Admin.ClientSecret, Scope: "https://management.core.windows.net//.default openid"})
	if err != nil {
		t.Fatal(err)
	}
	_, c, err := identity.ParseToken(tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer != testBase+"/"+e.boot.TenantID+"/v2.0" || c.TenantID != e.boot.TenantID || c.ObjectID != e.boot.ObjectID ||
		c.Subject != c.ObjectID || c.AzP != e.boot.ClientID || c.AppID != e.boot.ClientID || c.IDType != "app" ||
		len(c.Audience) != 1 || c.Audience[0] != "https://management.core.windows.net/" || c.TokenID == "" {
		t.Fatalf("claims = %+v", c)
	}
	p, err := e.svc.Authenticate(ctx, tok.AccessToken, []string{"https://management.core.windows.net/"})
	if err != nil {
		t.Fatal(err)
	}
	if p.ObjectID != e.boot.ObjectID || p.Type != authn.ServicePrincipal || p.AppID != e.boot.ClientID {
		t.Fatalf("principal = %+v", p)
	}
}

func TestAuthenticateRejects(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok, err := e.svc.Token(ctx, e.boot.TenantID, identity.TokenRequest{GrantType: "client_credentials",
		ClientID: e.boot.ClientID, ClientSecret: e.boot.Admin.ClientSecret, Scope: "https://vault.azure.net/.default"})
	if err != nil {
		t.Fatal(err)
	}
	good := tok.AccessToken
	parts := strings.Split(good, ".")
	noneAlg := "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + "."
	hs := "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + parts[1] + "." + parts[2]
	flipped := parts[0] + "." + parts[1] + "." + strings.Map(func(r rune) rune {
		if r == 'A' {
			return 'B'
		}
		return r
	}, parts[2])
	for _, tt := range []struct {
		name  string
		token string
		aud   string
		after time.Duration
		want  error
	}{
		{"accepted (and now cached)", good, "https://vault.azure.net", 0, nil},
		// The checks below run on the cached, already-verified token too.
		{"wrong audience", good, "https://management.azure.com/", 0, authn.ErrAudience},
		{"expired", good, "https://vault.azure.net", 2 * time.Hour, authn.ErrExpired},
		{"alg none", noneAlg, "https://vault.azure.net", 0, authn.ErrInvalidToken},
		{"alg HS256", hs, "https://vault.azure.net", 0, authn.ErrInvalidToken},
		{"bad signature", flipped, "https://vault.azure.net", 0, authn.ErrInvalidToken},
		{"garbage", "abc", "https://vault.azure.net", 0, authn.ErrInvalidToken},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e.clock.Advance(tt.after)
			defer e.clock.Advance(-tt.after)
			_, err := e.svc.Authenticate(ctx, tt.token, []string{tt.aud})
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestTokenErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	single, err := e.svc.CreateApplication(ctx, e.admin, "no-sp", identity.AzureADMyOrg)
	if err != nil {
		t.Fatal(err)
	}
	short, secret, err := e.svc.AddPassword(ctx, e.admin, e.boot.Admin.ClientID, "short", e.clock.Now().Add(time.Hour))
	if err != nil || short.Hint != secret[:3] {
		t.Fatalf("add password: %v", err)
	}
	scope := "https://vault.azure.net/.default"
	req := func(client, secret, scope string) identity.TokenRequest {
		return identity.TokenRequest{GrantType: "client_credentials", ClientID: client, ClientSecret: secret, Scope: scope}
	}
	for _, tt := range []struct {
		name   string
		tenant string
		req    identity.TokenRequest
		after  time.Duration
		code   int
	}{
		{"unknown tenant", "00000000-0000-0000-0000-000000000001", req(e.boot.ClientID, e.boot.Admin.ClientSecret, scope), 0, identity.CodeTenantNotFound},
		{"unknown app", e.boot.TenantID, req("00000000-0000-0000-0000-000000000002", "x", scope), 0, identity.CodeAppNotFound},
		{"app without service principal", e.boot.TenantID, req(single.AppID, "x", scope), 0, identity.CodeAppNotFound},
		{"bad secret", e.boot.TenantID, req(e.boot.ClientID, "not-the-secret", scope), 0, identity.CodeInvalidSecret},
		{"expired secret", e.boot.TenantID, req(e.boot.ClientID, secret, scope), 2 * time.Hour, identity.CodeExpiredSecret},
		{"no scope", e.boot.TenantID, req(e.boot.ClientID, e.boot.Admin.ClientSecret, "openid profile"), 0, identity.CodeInvalidScope},
		{"scope without .default", e.boot.TenantID, req(e.boot.ClientID, e.boot.Admin.ClientSecret, "https://vault.azure.net/keys.read"), 0, identity.CodeInvalidScope},
		{"no credential", e.boot.TenantID, req(e.boot.ClientID, "", scope), 0, identity.CodeMissingCredential},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e.clock.Advance(tt.after)
			defer e.clock.Advance(-tt.after)
			_, err := e.svc.Token(ctx, tt.tenant, tt.req)
			wantAADSTS(t, err, tt.code)
		})
	}
	// The short secret works before it expires.
	if _, err := e.svc.Token(ctx, e.boot.TenantID, req(e.boot.ClientID, secret, scope)); err != nil {
		t.Fatal(err)
	}
}

func TestRotateSigningKeyKeepsOldKeyUntilTokensExpire(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tid := e.boot.TenantID
	tok, err := e.svc.Token(ctx, tid, identity.TokenRequest{GrantType: "client_credentials", ClientID: e.boot.ClientID,
		ClientSecret: e.boot.Admin.ClientSecret, Scope: "https://vault.azure.net/.default"})
	if err != nil {
		t.Fatal(err)
	}
	kid, err := e.svc.RotateSigningKey(ctx, tid)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Authenticate(ctx, tok.AccessToken, []string{"https://vault.azure.net"}); err != nil {
		t.Fatalf("old token after rotation: %v", err)
	}
	jwks, err := e.svc.JWKS(ctx, tid)
	if err != nil || len(jwks.Keys) != 2 {
		t.Fatalf("JWKS after rotation: %d keys, %v", len(jwks.Keys), err)
	}
	tok2, err := e.svc.Token(ctx, tid, identity.TokenRequest{GrantType: "client_credentials", ClientID: e.boot.ClientID,
		ClientSecret: e.boot.Admin.ClientSecret, Scope: "https://vault.azure.net/.default"})
	if err != nil {
		t.Fatal(err)
	}
	tk, _, _ := identity.ParseToken(tok2.AccessToken)
	if tk.Headers[0].KeyID != kid {
		t.Fatalf("new token kid %s, want %s", tk.Headers[0].KeyID, kid)
	}
	e.clock.Advance(2 * time.Hour)
	if _, err := e.svc.RotateSigningKey(ctx, tid); err != nil {
		t.Fatal(err)
	}
	jwks, err = e.svc.JWKS(ctx, tid)
	if err != nil || len(jwks.Keys) != 2 {
		t.Fatalf("JWKS after second rotation: %d keys (want the two newest), %v", len(jwks.Keys), err)
	}
	first, _, _ := identity.ParseToken(tok.AccessToken)
	for _, k := range jwks.Keys {
		if k.KeyID == first.Headers[0].KeyID {
			t.Fatal("the first key is still published after its tokens expired")
		}
	}
}
