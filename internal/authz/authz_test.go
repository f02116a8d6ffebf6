package authz_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/authz"
	"github.com/cvault/cvault/internal/store"
	"github.com/cvault/cvault/internal/store/embedded/embeddedtest"
)

const (
	tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	sub    = "/subscriptions/00000000-0000-0000-0000-000000000001"
	rg     = sub + "/resourceGroups/rg1"
	vault  = rg + "/providers/Microsoft.KeyVault/vaults/v1"
	key    = vault + "/keys/k1"
	key2   = vault + "/keys/k2"
	vault2 = rg + "/providers/Microsoft.KeyVault/vaults/v2"
	uami   = rg + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1"
	vm     = rg + "/providers/Microsoft.Compute/virtualMachines/vm1"
)

func newService(t testing.TB, st store.Store) *authz.Service {
	t.Helper()
	s, err := authz.New(authz.Config{Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func principal(n int) *authn.Principal {
	return &authn.Principal{TenantID: tenant, ObjectID: fmt.Sprintf("10000000-0000-0000-0000-%012d", n), Type: authn.ServicePrincipal}
}

func guid(n int) string { return fmt.Sprintf("20000000-0000-0000-0000-%012d", n) }

// grant assigns role to p at scope without a caller check.
func grant(t testing.TB, s *authz.Service, n int, p *authn.Principal, role, scope string) {
	t.Helper()
	_, _, err := s.Assign(context.Background(), authz.Assignment{Name: guid(n), Scope: scope,
		RoleDefinitionID: "/providers/Microsoft.Authorization/roleDefinitions/" + role,
		PrincipalID:      p.ObjectID, PrincipalType: "ServicePrincipal", TenantID: tenant})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRoleGolden: each built-in allows its golden action and not the
// nearest one it lacks, through Check with the role at the vault's RG.
func TestRoleGolden(t *testing.T) {
	tests := []struct {
		role, allow, scope, deny, denyScope string
	}{
		{authz.RoleOwner, "Microsoft.Authorization/roleAssignments/write", vault, "Microsoft.KeyVault/vaults/keys/read", key},
		{authz.RoleContributor, "Microsoft.KeyVault/vaults/write", vault, "Microsoft.Authorization/roleAssignments/write", vault},
		{authz.RoleReader, "Microsoft.KeyVault/vaults/read", vault, "Microsoft.KeyVault/vaults/write", vault},
		{authz.RoleUserAccessAdministrator, "Microsoft.Authorization/roleAssignments/write", vault, "Microsoft.KeyVault/vaults/write", vault},
		{authz.RoleKeyVaultAdministrator, "Microsoft.KeyVault/vaults/keys/purge/action", key, "Microsoft.KeyVault/vaults/write", vault},
		{authz.RoleKeyVaultContributor, "Microsoft.KeyVault/vaults/write", vault, "Microsoft.KeyVault/vaults/keys/read", key},
		{authz.RoleKeyVaultCryptoOfficer, "Microsoft.KeyVault/vaults/keys/create/action", key, "Microsoft.KeyVault/vaults/secrets/getSecret/action", vault + "/secrets/s"},
		{authz.RoleKeyVaultCryptoUser, "Microsoft.KeyVault/vaults/keys/unwrap/action", key, "Microsoft.KeyVault/vaults/keys/create/action", key},
		{authz.RoleKeyVaultCryptoServiceEncryption, "Microsoft.KeyVault/vaults/keys/wrap/action", key, "Microsoft.KeyVault/vaults/keys/encrypt/action", key},
		{authz.RoleKeyVaultCryptoServiceRelease, "Microsoft.KeyVault/vaults/keys/release/action", key, "Microsoft.KeyVault/vaults/keys/read", key},
		{authz.RoleKeyVaultReader, "Microsoft.KeyVault/vaults/keys/read", key, "Microsoft.KeyVault/vaults/keys/decrypt/action", key},
		{authz.RoleManagedIdentityContributor, "Microsoft.ManagedIdentity/userAssignedIdentities/write", uami, "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action", uami},
		{authz.RoleManagedIdentityOperator, "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action", uami, "Microsoft.ManagedIdentity/userAssignedIdentities/write", uami},
		{authz.RoleVirtualMachineContributor, "Microsoft.Compute/virtualMachines/write", vm, "Microsoft.Compute/diskEncryptionSets/write", rg + "/providers/Microsoft.Compute/diskEncryptionSets/d"},
		{authz.RoleManagedHSMCryptoServiceRelease, "Microsoft.KeyVault/managedHsm/keys/release/action", key, "Microsoft.KeyVault/managedHsm/keys/wrap/action", key},
		{authz.RoleManagedHSMCryptoServiceEncryption, "Microsoft.KeyVault/managedHsm/keys/wrap/action", key, "Microsoft.KeyVault/managedHsm/keys/release/action", key},
	}
	if len(tests) != len(authz.Roles()) {
		t.Errorf("%d golden rows for %d built-in roles", len(tests), len(authz.Roles()))
	}
	ctx := context.Background()
	s := newService(t, embeddedtest.Open(t))
	for i, tt := range tests {
		p := principal(i)
		grant(t, s, i, p, tt.role, rg)
		t.Run(tt.role, func(t *testing.T) {
			if err := s.Check(ctx, p, tt.allow, tt.scope); err != nil {
				t.Errorf("allow %s: %v", tt.allow, err)
			}
			err := s.Check(ctx, p, tt.deny, tt.denyScope)
			var de *authz.DeniedError
			if !errors.Is(err, authz.ErrDenied) || !errors.As(err, &de) || de.Action != tt.deny || de.Scope != tt.denyScope {
				t.Errorf("deny %s: got %v", tt.deny, err)
			}
		})
	}
}

func TestScopeInheritance(t *testing.T) {
	ctx := context.Background()
	s := newService(t, embeddedtest.Open(t))
	const unwrap = "Microsoft.KeyVault/vaults/keys/unwrap/action"
	for i, at := range []string{sub, rg, vault, key} {
		p := principal(100 + i)
		grant(t, s, 100+i, p, authz.RoleKeyVaultCryptoUser, at)
		t.Run(at, func(t *testing.T) {
			if err := s.Check(ctx, p, unwrap, key); err != nil {
				t.Errorf("below: %v", err)
			}
			if err := s.Check(ctx, p, unwrap, "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000001/resourcegroups/RG1/providers/microsoft.keyvault/vaults/V1/keys/K1"); err != nil {
				t.Errorf("case-folded: %v", err)
			}
			sibling := map[string]string{sub: "/subscriptions/00000000-0000-0000-0000-000000000002/resourceGroups/rg1",
				rg: sub + "/resourceGroups/rg10", vault: vault2 + "/keys/k1", key: key2}[at]
			if err := s.Check(ctx, p, unwrap, sibling); !errors.Is(err, authz.ErrDenied) {
				t.Errorf("sibling %s: %v", sibling, err)
			}
			if at != sub {
				if err := s.Check(ctx, p, unwrap, sub); !errors.Is(err, authz.ErrDenied) {
					t.Errorf("above: %v", err)
				}
			}
		})
	}
	// Another tenant's principal with the same object id gets nothing.
	other := *principal(100)
	other.TenantID = "99999999-0000-0000-0000-000000000000"
	if err := s.Check(ctx, &other, unwrap, key); !errors.Is(err, authz.ErrDenied) {
		t.Errorf("wrong tenant: %v", err)
	}
	if err := s.Check(ctx, nil, unwrap, key); !errors.Is(err, authz.ErrDenied) {
		t.Errorf("nil principal: %v", err)
	}
}

func TestOwnerHasNoDataActions(t *testing.T) {
	ctx := context.Background()
	s := newService(t, embeddedtest.Open(t))
	admin := principal(1)
	if err := s.Bootstrap(ctx, tenant, "00000000-0000-0000-0000-000000000001", admin.ObjectID); err != nil {
		t.Fatal(err)
	}
	if err := s.Bootstrap(ctx, tenant, "00000000-0000-0000-0000-000000000001", admin.ObjectID); err != nil {
		t.Fatalf("bootstrap not idempotent: %v", err)
	}
	if err := s.Check(ctx, admin, "Microsoft.KeyVault/vaults/write", vault); err != nil {
		t.Errorf("owner control plane: %v", err)
	}
	if err := s.Check(ctx, admin, "Microsoft.KeyVault/vaults/keys/read", key); !errors.Is(err, authz.ErrDenied) {
		t.Errorf("owner data plane: %v", err)
	}
}

func TestAssignmentRules(t *testing.T) {
	ctx := context.Background()
	s := newService(t, embeddedtest.Open(t))
	owner, uaa, contributor, target := principal(1), principal(2), principal(3), principal(4)
	grant(t, s, 1, owner, authz.RoleOwner, sub)
	grant(t, s, 2, uaa, authz.RoleUserAccessAdministrator, rg)
	grant(t, s, 3, contributor, authz.RoleContributor, sub)
	a := authz.Assignment{Name: guid(10), Scope: vault, PrincipalID: target.ObjectID, PrincipalType: "ServicePrincipal",
		RoleDefinitionID: sub + "/providers/Microsoft.Authorization/roleDefinitions/" + authz.RoleKeyVaultCryptoServiceEncryption}

	if _, _, err := s.Create(ctx, contributor, a); !errors.Is(err, authz.ErrDenied) {
		t.Fatalf("contributor create: %v", err)
	}
	got, created, err := s.Create(ctx, uaa, a)
	if err != nil || !created || got.RoleDefinitionID != authz.RoleKeyVaultCryptoServiceEncryption || got.CreatedBy != uaa.ObjectID {
		t.Fatalf("uaa create: %+v %v %v", got, created, err)
	}
	if err := s.Check(ctx, target, "Microsoft.KeyVault/vaults/keys/wrap/action", key); err != nil {
		t.Errorf("new grant not effective: %v", err)
	}
	if _, created, err := s.Create(ctx, owner, a); err != nil || created {
		t.Errorf("repeat PUT: created=%v %v", created, err)
	}
	b := a
	b.RoleDefinitionID = authz.RoleKeyVaultReader
	if _, _, err := s.Create(ctx, owner, b); !errors.Is(err, authz.ErrUpdateNotPermitted) {
		t.Errorf("changed PUT: %v", err)
	}
	c := a
	c.Name = guid(11)
	if _, _, err := s.Create(ctx, owner, c); !errors.Is(err, authz.ErrExists) {
		t.Errorf("duplicate grant: %v", err)
	}
	bad := a
	bad.Name, bad.RoleDefinitionID = guid(12), "/providers/Microsoft.Authorization/roleDefinitions/"+guid(99)
	if _, _, err := s.Create(ctx, owner, bad); !errors.Is(err, authz.ErrRoleNotFound) {
		t.Errorf("unknown role: %v", err)
	}
	bad.RoleDefinitionID, bad.PrincipalID, bad.Scope = authz.RoleReader, "nope", "/nope"
	if _, _, err := s.Create(ctx, owner, bad); !errors.Is(err, authz.ErrInvalid) {
		t.Errorf("invalid: %v", err)
	}

	list, err := s.List(ctx, owner, vault, authz.Filter{})
	if err != nil || len(list) != 4 { // owner@sub, uaa@rg, contributor@sub, target@vault
		t.Errorf("list at vault: %d %v", len(list), err)
	}
	list, _ = s.List(ctx, owner, sub, authz.Filter{AtScope: true})
	if len(list) != 2 {
		t.Errorf("atScope at sub: %d", len(list))
	}
	list, _ = s.List(ctx, owner, sub, authz.Filter{PrincipalID: target.ObjectID})
	if len(list) != 1 || list[0].Name != a.Name {
		t.Errorf("principal filter: %+v", list)
	}
	if _, err := s.Get(ctx, owner, vault, a.Name); err != nil {
		t.Errorf("get: %v", err)
	}
	if _, err := s.Delete(ctx, contributor, vault, a.Name); !errors.Is(err, authz.ErrDenied) {
		t.Errorf("contributor delete: %v", err)
	}
	if _, err := s.Delete(ctx, owner, vault, a.Name); err != nil {
		t.Errorf("delete: %v", err)
	}
	if _, err := s.Delete(ctx, owner, vault, a.Name); !errors.Is(err, authz.ErrNotFound) {
		t.Errorf("delete again: %v", err)
	}
	if err := s.Check(ctx, target, "Microsoft.KeyVault/vaults/keys/wrap/action", key); !errors.Is(err, authz.ErrDenied) {
		t.Errorf("deleted grant still effective: %v", err)
	}
	// The unique index went with it: the grant can be made again.
	if _, _, err := s.Create(ctx, owner, c); err != nil {
		t.Errorf("re-create after delete: %v", err)
	}
}

// TestOtherServerSeesChanges: two services on one store (two servers on
// one database); a write on one is seen by the other after RefreshInterval.
func TestOtherServerSeesChanges(t *testing.T) {
	ctx := context.Background()
	st := embeddedtest.Open(t)
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	mk := func() *authz.Service {
		s, err := authz.New(authz.Config{Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: clock, RefreshInterval: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := mk(), mk()
	p := principal(1)
	const act = "Microsoft.KeyVault/vaults/keys/release/action"
	if err := b.Check(ctx, p, act, key); !errors.Is(err, authz.ErrDenied) {
		t.Fatal(err)
	}
	grant(t, a, 1, p, authz.RoleKeyVaultCryptoServiceRelease, vault)
	if err := b.Check(ctx, p, act, key); !errors.Is(err, authz.ErrDenied) {
		t.Errorf("seen before the refresh interval: %v", err)
	}
	now = now.Add(2 * time.Second)
	if err := b.Check(ctx, p, act, key); err != nil {
		t.Errorf("not seen after the refresh interval: %v", err)
	}
}

func TestAccessPolicy(t *testing.T) {
	p := principal(1)
	all := authz.KeyPermissionActions()
	for _, pa := range all {
		t.Run(pa.Permission.Name, func(t *testing.T) {
			pol := []authz.AccessPolicy{{TenantID: tenant, ObjectID: p.ObjectID, Permissions: authz.Permissions{Keys: []string{pa.Permission.Name}}}}
			if err := authz.CheckAccessPolicy(pol, p, pa.Permission); err != nil {
				t.Errorf("granted permission refused: %v", err)
			}
			for _, other := range all {
				if other.Permission.Name == pa.Permission.Name {
					continue
				}
				err := authz.CheckAccessPolicy(pol, p, other.Permission)
				var de *authz.DeniedError
				if !errors.As(err, &de) || !de.ByPolicy || !errors.Is(err, authz.ErrDenied) {
					t.Errorf("%s granted by %s: %v", other.Permission.Name, pa.Permission.Name, err)
				}
			}
			if authz.DataActionFor(pa.Permission) == "" {
				t.Errorf("no data action")
			}
		})
	}
	if len(all) != 20 {
		t.Errorf("%d key permissions, want 20", len(all))
	}
	wrap := authz.PolicyPermission{Collection: authz.Keys, Name: "WRAPKEY"}
	pol := []authz.AccessPolicy{{TenantID: tenant, ObjectID: p.ObjectID, Permissions: authz.Permissions{Keys: []string{"all"}}}}
	if err := authz.CheckAccessPolicy(pol, p, wrap); err != nil {
		t.Errorf("all: %v", err)
	}
	if err := authz.CheckAccessPolicy(pol, p, authz.PolicyPermission{Collection: authz.Secrets, Name: "get"}); err == nil {
		t.Errorf("keys/all granted a secret permission")
	}
	other := *p
	other.TenantID = guid(5)
	if err := authz.CheckAccessPolicy(pol, &other, wrap); err == nil {
		t.Errorf("wrong tenant allowed")
	}
	compound := []authz.AccessPolicy{{TenantID: tenant, ObjectID: p.ObjectID, ApplicationID: guid(6), Permissions: authz.Permissions{Keys: []string{"wrapKey"}}}}
	if err := authz.CheckAccessPolicy(compound, p, wrap); err == nil {
		t.Errorf("compound identity without the app allowed")
	}
	withApp := *p
	withApp.AppID = guid(6)
	if err := authz.CheckAccessPolicy(compound, &withApp, wrap); err != nil {
		t.Errorf("compound identity: %v", err)
	}
	if authz.DataActionFor(authz.PolicyPermission{Collection: authz.Keys, Name: "release"}) != "Microsoft.KeyVault/vaults/keys/release/action" {
		t.Errorf("release mapping")
	}
}

func TestIsDataAction(t *testing.T) {
	for a, want := range map[string]bool{
		"Microsoft.KeyVault/vaults/keys/wrap/action":            true,
		"microsoft.keyvault/VAULTS/keys/read":                   true,
		"Microsoft.KeyVault/vaults/keyrotationpolicies/read":    true,
		"Microsoft.KeyVault/managedHsm/keys/release/action":     true,
		"Microsoft.KeyVault/vaults/write":                       false,
		"Microsoft.KeyVault/vaults/accessPolicies/write":        false,
		"Microsoft.Authorization/roleAssignments/write":         false,
		"Microsoft.ManagedIdentity/userAssignedIdentities/read": false,
	} {
		if got := authz.IsDataAction(a); got != want {
			t.Errorf("IsDataAction(%q) = %v", a, got)
		}
	}
}

func TestRoleAllowsWildcards(t *testing.T) {
	def := authz.RoleDefinition{Permissions: []authz.Permission{{
		Actions:    []string{"*/read", "Microsoft.Compute/*/write"},
		NotActions: []string{"Microsoft.Compute/disks/*"},
	}}}
	for a, want := range map[string]bool{
		"Microsoft.Network/virtualNetworks/read":  true,
		"MICROSOFT.NETWORK/VIRTUALNETWORKS/READ":  true,
		"Microsoft.Network/virtualNetworks/write": false,
		"Microsoft.Compute/virtualMachines/write": true,
		"Microsoft.Compute/disks/write":           false,
		"Microsoft.Compute/disks/read":            false,
		"Microsoft.Compute/write":                 true, // "/*/" also matches "/", as Azure's MI Operator needs
		"Microsoft.Network/virtualNetworks/readx": false,
	} {
		if got := def.Allows(a); got != want {
			t.Errorf("Allows(%q) = %v, want %v", a, got, want)
		}
	}
}

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"", "atScope()", "principalId eq 'abc'", "principalId  eq  'a''b'", "assignedTo('x')", "principalId eq '", "roleName eq 'Owner'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := authz.ParseFilter(s)
		if err != nil && (flt != authz.Filter{}) {
			t.Fatalf("error with a result: %+v", flt)
		}
	})
}

func FuzzParseRoleDefinitionID(f *testing.F) {
	for _, s := range []string{authz.RoleOwner, "/providers/Microsoft.Authorization/roleDefinitions/" + authz.RoleOwner,
		sub + "/providers/microsoft.authorization/roledefinitions/" + authz.RoleReader, "/x/y", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		g, err := authz.ParseRoleDefinitionID(s)
		if err != nil && g != "" {
			t.Fatal("error with a result")
		}
		if err == nil {
			if g2, err := authz.ParseRoleDefinitionID(g); err != nil || g2 != g {
				t.Fatalf("not canonical: %q → %q %v", g, g2, err)
			}
		}
	})
}
