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

// seed003 is seed 003's phase 1 plus the customer's consent: a provider
// tenant with a multi-tenant app whose federated credential is a
// user-assigned identity, and a customer tenant where the app's service
// principal exists by consent.
type seed003 struct {
	*env
	customer      *identity.AdminCredentials
	customerAdmin *authn.Principal
	app           identity.Application
	mi            identity.UserAssignedIdentity
	miSecret      string
}

func newSeed003(t testing.TB, consent bool) *seed003 {
	t.Helper()
	e := newEnv(t)
	ctx := context.Background()
	s := &seed003{env: e}
	var err error
	_, s.customer, err = e.svc.CreateTenant(ctx, e.admin, "Customer")
	if err != nil {
		t.Fatal(err)
	}
	s.customerAdmin = e.principal(t, s.customer.TenantID, s.customer.ClientID, s.customer.ClientSecret)
	s.app, err = e.svc.CreateApplication(ctx, e.admin, "isv-cmk", identity.AzureADMultipleOrgs)
	if err != nil {
		t.Fatal(err)
	}
	e.arm.add("sub-isv", e.boot.TenantID, "rg-isv")
	var created bool
	s.mi, created, err = e.svc.PutUserAssignedIdentity(ctx, "sub-isv", "rg-isv", "cmk-uami", "West Central US", nil)
	if err != nil || !created {
		t.Fatalf("create identity: %v %v", created, err)
	}
	if _, err := e.svc.AddFederatedCredential(ctx, e.admin, s.app.ObjectID, identity.FederatedCredential{Name: "cmk-uami",
		Issuer: e.svc.Issuer(e.boot.TenantID), Subject: s.mi.PrincipalID, Audiences: []string{identity.TokenExchangeAudience}}); err != nil {
		t.Fatal(err)
	}
	s.miSecret, err = e.svc.IssueIdentitySecret(ctx, "sub-isv", "rg-isv", "cmk-uami")
	if err != nil {
		t.Fatal(err)
	}
	if consent {
		if _, err := e.svc.CreateServicePrincipal(ctx, s.customerAdmin, s.app.AppID); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func (s *seed003) assertion(t testing.TB) string {
	t.Helper()
	tok, err := s.svc.ManagedIdentityToken(context.Background(), s.miSecret, identity.IdentitySelector{ClientID: s.mi.ClientID}, identity.TokenExchangeAudience)
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

func (s *seed003) exchange(assertion string) (*identity.Token, error) {
	return s.svc.Token(context.Background(), s.customer.TenantID, identity.TokenRequest{GrantType: "client_credentials",
		ClientID: s.app.AppID, ClientAssertionType: identity.JWTBearer, ClientAssertion: assertion, Scope: "https://vault.azure.net/.default"})
}

func TestFederatedExchangeAcrossTenants(t *testing.T) {
	s := newSeed003(t, true)
	assertion := s.assertion(t)
	_, c, _ := identity.ParseToken(assertion)
	if c.Subject != s.mi.PrincipalID || c.MIResourceID != s.mi.ID || c.Issuer != s.svc.Issuer(s.boot.TenantID) {
		t.Fatalf("managed identity claims = %+v", c)
	}
	tok, err := s.exchange(assertion)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.svc.Authenticate(context.Background(), tok.AccessToken, []string{"https://vault.azure.net"})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := s.svc.GetServicePrincipal(context.Background(), s.customer.TenantID, s.app.AppID)
	if err != nil {
		t.Fatal(err)
	}
	if p.TenantID != s.customer.TenantID || p.ObjectID != sp.ObjectID || p.AppID != s.app.AppID || p.Type != authn.ServicePrincipal {
		t.Fatalf("principal = %+v, want the app's service principal in the customer tenant", p)
	}
	// The app has no secret: only the assertion gets a token.
	_, err = s.svc.Token(context.Background(), s.customer.TenantID, identity.TokenRequest{GrantType: "client_credentials",
		ClientID: s.app.AppID, ClientSecret: "guess", Scope: "https://vault.azure.net/.default"})
	wantAADSTS(t, err, identity.CodeInvalidSecret)
}

func TestFederatedExchangeRefusals(t *testing.T) {
	s := newSeed003(t, true)
	ctx := context.Background()
	assertion := s.assertion(t)
	parts := strings.Split(assertion, ".")
	sig := []byte(parts[2])
	// Change one signature character to another valid base64url one (a bit
	// flip can produce an invalid character, which is "malformed", not "bad signature").
	if sig[10] == 'A' {
		sig[10] = 'B'
	} else {
		sig[10] = 'A'
	}
	badSig := parts[0] + "." + parts[1] + "." + string(sig)

	t.Run("signature", func(t *testing.T) {
		_, err := s.exchange(badSig)
		wantAADSTS(t, err, identity.CodeAssertionSignature)
	})
	t.Run("expired", func(t *testing.T) {
		s.clock.Advance(2 * time.Hour)
		defer s.clock.Advance(-2 * time.Hour)
		_, err := s.exchange(assertion)
		wantAADSTS(t, err, identity.CodeAssertionTime)
	})
	t.Run("wrong audience", func(t *testing.T) {
		tok, err := s.svc.ManagedIdentityToken(ctx, s.miSecret, identity.IdentitySelector{}, "https://vault.azure.net")
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.exchange(tok.AccessToken)
		wantAADSTS(t, err, identity.CodeNoMatchingFederated)
	})
	t.Run("other identity", func(t *testing.T) {
		other, _, err := s.svc.PutUserAssignedIdentity(ctx, "sub-isv", "rg-isv", "other-uami", "eastus", nil)
		if err != nil {
			t.Fatal(err)
		}
		secret, err := s.svc.IssueIdentitySecret(ctx, "sub-isv", "rg-isv", other.Name)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := s.svc.ManagedIdentityToken(ctx, secret, identity.IdentitySelector{}, identity.TokenExchangeAudience)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.exchange(tok.AccessToken)
		wantAADSTS(t, err, identity.CodeNoMatchingFederated)
	})
	t.Run("malformed", func(t *testing.T) {
		_, err := s.exchange("not.a.jwt")
		wantAADSTS(t, err, identity.CodeMalformedJWT)
	})
	t.Run("no consent", func(t *testing.T) {
		s2 := newSeed003(t, false)
		_, err := s2.exchange(s2.assertion(t))
		wantAADSTS(t, err, identity.CodeAppNotFound)
	})
}

func TestConsentRules(t *testing.T) {
	s := newSeed003(t, false)
	ctx := context.Background()
	single, err := s.svc.CreateApplication(ctx, s.admin, "single", identity.AzureADMyOrg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.svc.CreateServicePrincipal(ctx, s.customerAdmin, single.AppID); !errors.Is(err, identity.ErrInvalid) {
		t.Fatalf("single-tenant consent: err = %v, want ErrInvalid", err)
	}
	if _, err := s.svc.CreateServicePrincipal(ctx, s.customerAdmin, s.app.AppID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.svc.CreateServicePrincipal(ctx, s.customerAdmin, s.app.AppID); !errors.Is(err, identity.ErrConflict) {
		t.Fatalf("second consent: err = %v, want ErrConflict", err)
	}
	// A principal that is not a directory administrator cannot consent.
	miTok, err := s.svc.ManagedIdentityToken(ctx, s.miSecret, identity.IdentitySelector{}, "https://graph.microsoft.com")
	if err != nil {
		t.Fatal(err)
	}
	mip, err := s.svc.Authenticate(ctx, miTok.AccessToken, []string{"https://graph.microsoft.com"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.svc.CreateApplication(ctx, mip, "x", ""); !errors.Is(err, identity.ErrForbidden) {
		t.Fatalf("non-admin create: err = %v, want ErrForbidden", err)
	}
}

func TestFederatedCredentialLimits(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	app, err := e.svc.CreateApplication(ctx, e.admin, "limits", identity.AzureADMultipleOrgs)
	if err != nil {
		t.Fatal(err)
	}
	fic := func(i int) identity.FederatedCredential {
		return identity.FederatedCredential{Name: "fic-" + string(rune('a'+i)), Issuer: "https://issuer.example",
			Subject: "s" + string(rune('a'+i)), Audiences: []string{identity.TokenExchangeAudience}}
	}
	for i := range identity.MaxFederatedCredentials {
		if _, err := e.svc.AddFederatedCredential(ctx, e.admin, app.ObjectID, fic(i)); err != nil {
			t.Fatalf("fic %d: %v", i, err)
		}
	}
	if _, err := e.svc.AddFederatedCredential(ctx, e.admin, app.ObjectID, fic(21)); !errors.Is(err, identity.ErrInvalid) {
		t.Fatalf("21st: err = %v", err)
	}
	dup := fic(22)
	dup.Subject = "sa"
	if _, err := e.svc.AddFederatedCredential(ctx, e.admin, app.ObjectID, dup); !errors.Is(err, identity.ErrConflict) {
		t.Fatalf("duplicate issuer+subject: err = %v", err)
	}
	for _, bad := range []identity.FederatedCredential{
		{Name: "x", Issuer: "i", Subject: "s", Audiences: []string{"a"}},
		{Name: "okname", Subject: "s", Audiences: []string{"a"}},
		{Name: "okname", Issuer: "i", Subject: "s", Audiences: []string{"a", "b"}},
	} {
		if err := identity.ValidateFederatedCredential(bad); !errors.Is(err, identity.ErrInvalid) {
			t.Errorf("%+v: err = %v", bad, err)
		}
	}
}

func TestManagedIdentitySecret(t *testing.T) {
	s := newSeed003(t, false)
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		secret string
		sel    identity.IdentitySelector
		want   error
	}{
		{"wrong secret", flipLast(s.miSecret), identity.IdentitySelector{}, identity.ErrUnauthorized},
		{"no secret", "", identity.IdentitySelector{}, identity.ErrUnauthorized},
		{"unattached identity", s.miSecret, identity.IdentitySelector{ClientID: "00000000-0000-0000-0000-000000000000"}, identity.ErrNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.svc.ManagedIdentityToken(ctx, tt.secret, tt.sel, "https://vault.azure.net")
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	// Rotation invalidates the old secret.
	if _, err := s.svc.IssueIdentitySecret(ctx, "sub-isv", "rg-isv", "cmk-uami"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.svc.ManagedIdentityToken(ctx, s.miSecret, identity.IdentitySelector{}, "https://vault.azure.net"); !errors.Is(err, identity.ErrUnauthorized) {
		t.Fatalf("old secret after rotation: %v", err)
	}
}

func flipLast(s string) string {
	last := s[len(s)-1]
	if last == 'A' {
		return s[:len(s)-1] + "B"
	}
	return s[:len(s)-1] + "A"
}

// A system-assigned identity lives and dies with its owner, issues tokens
// naming the owner in xms_mirid, and is not listed among user-assigned ones.
func TestSystemAssignedIdentity(t *testing.T) {
	s := newSeed003(t, false)
	ctx := t.Context()
	owner := "/subscriptions/sub-isv/resourceGroups/rg-isv/providers/Microsoft.Compute/virtualMachines/vm1"
	mi, err := s.env.svc.PutSystemAssignedIdentity(ctx, owner)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.env.svc.PutSystemAssignedIdentity(ctx, owner)
	if err != nil || again.PrincipalID != mi.PrincipalID {
		t.Fatalf("second put: %v %v", again, err)
	}
	tk, err := s.env.svc.PlatformIdentityToken(ctx, owner, "api://AzureADTokenExchange/.default")
	if err != nil {
		t.Fatal(err)
	}
	_, c, err := identity.ParseToken(tk.AccessToken)
	if err != nil || c.MIResourceID != owner || c.Subject != mi.PrincipalID || c.Audience[0] != "api://AzureADTokenExchange" {
		t.Fatalf("claims %+v %v", c, err)
	}
	list, err := s.env.svc.ListUserAssignedIdentities(ctx, "sub-isv", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range list {
		if u.SystemAssigned {
			t.Errorf("system-assigned identity listed: %v", u.ID)
		}
	}
	if ok, err := s.env.svc.DeleteSystemAssignedIdentity(ctx, owner); !ok || err != nil {
		t.Fatalf("delete: %v %v", ok, err)
	}
	if _, err := s.env.svc.PlatformIdentityToken(ctx, owner, "https://vault.azure.net"); !errors.Is(err, identity.ErrNotFound) {
		t.Errorf("token after delete: %v", err)
	}
}
