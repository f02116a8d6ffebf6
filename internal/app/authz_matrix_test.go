package app_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/cvault/cvault/internal/app"
	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/authz"
	"github.com/cvault/cvault/internal/cvaulttest"
	"github.com/cvault/cvault/internal/route"
)

// matrixRow says how one route is authorized. Every route the server
// serves must have a row: a route added without one fails
// TestAuthorizationMatrix, so each service adds its rows as it lands.
type matrixRow struct {
	// action and scope (with {sub} for the bootstrap subscription) are what
	// the handler passes to Check; empty for public/secret routes and for
	// routes every authenticated caller may use.
	action, scope string
	body          string
	// deny is the status a same-tenant caller without a role gets
	// (403, or 200 for lists that filter what the caller may see).
	deny int
	// public is the status an anonymous request gets on a non-bearer route.
	public int
}

// matrixValues fills route wildcards to make a concrete request path.
var matrixValues = map[string]string{
	"resourceGroupName": "rg1", "providerNamespace": "Microsoft.KeyVault", "resourceType": "vaults", "resourceName": "v1",
	"childType": "keys", "childName": "k1", "roleAssignmentName": "30000000-0000-0000-0000-0000000000a1",
	"roleDefinitionId": authz.RoleReader, "namespace": "Microsoft.Resources", "location": "westeurope",
	"operationId":  "40000000-0000-0000-0000-000000000001",
	"identityName": "mi1", "ficName": "fic1", "id": "50000000-0000-0000-0000-000000000001", "fic": "fic1",
}

const (
	mRG    = "{sub}/resourceGroups/rg1"
	mVault = mRG + "/providers/Microsoft.KeyVault/vaults/v1"
	mKey   = mVault + "/keys/k1"
	raBody = `{"properties":{"roleDefinitionId":"/providers/Microsoft.Authorization/roleDefinitions/` + authz.RoleReader + `","principalId":"00000000-0000-0000-0000-0000000000bb"}}`
)

func matrixRows() map[string]matrixRow {
	rows := map[string]matrixRow{
		"GET /healthz": {public: 200}, "GET /readyz": {public: 200}, "GET /metrics": {public: 200},

		"GET /subscriptions":                                                                                            {deny: 200},
		"GET /subscriptions/{subscriptionId}":                                                                           {action: "Microsoft.Resources/subscriptions/read", scope: "{sub}", deny: 403},
		"GET /subscriptions/{subscriptionId}/resourcegroups":                                                            {action: "Microsoft.Resources/subscriptions/resourceGroups/read", scope: "{sub}", deny: 200},
		"PUT /subscriptions/{subscriptionId}/resourcegroups/{resourceGroupName}":                                        {action: "Microsoft.Resources/subscriptions/resourceGroups/write", scope: mRG, body: `{"location":"westeurope"}`, deny: 403},
		"PATCH /subscriptions/{subscriptionId}/resourcegroups/{resourceGroupName}":                                      {action: "Microsoft.Resources/subscriptions/resourceGroups/write", scope: mRG, body: `{}`, deny: 403},
		"GET /subscriptions/{subscriptionId}/resourcegroups/{resourceGroupName}":                                        {action: "Microsoft.Resources/subscriptions/resourceGroups/read", scope: mRG, deny: 403},
		"HEAD /subscriptions/{subscriptionId}/resourcegroups/{resourceGroupName}":                                       {action: "Microsoft.Resources/subscriptions/resourceGroups/read", scope: mRG, deny: 403},
		"DELETE /subscriptions/{subscriptionId}/resourcegroups/{resourceGroupName}":                                     {action: "Microsoft.Resources/subscriptions/resourceGroups/delete", scope: mRG, deny: 403},
		"GET /subscriptions/{subscriptionId}/providers/{namespace}/locations/{location}/operations/{operationId}":       {action: "Microsoft.Resources/subscriptions/read", scope: "{sub}", deny: 403},
		"GET /subscriptions/{subscriptionId}/providers/{namespace}/locations/{location}/operationResults/{operationId}": {action: "Microsoft.Resources/subscriptions/read", scope: "{sub}", deny: 403},
	}
	// Identity: token service, OIDC and JWKS are public (the tenant in the
	// path is unknown here: 400 AADSTS90002); the managed-identity endpoint
	// checks its own secret (400 without api-version/headers).
	rows["POST /{tenant}/oauth2/v2.0/token"] = matrixRow{public: 400}
	rows["GET /{tenant}/v2.0/.well-known/openid-configuration"] = matrixRow{public: 400}
	rows["GET /{tenant}/discovery/v2.0/keys"] = matrixRow{public: 400}
	rows["GET /metadata/identity/oauth2/token"] = matrixRow{public: 400}
	rows["POST /metadata/identity/oauth2/token"] = matrixRow{public: 400}
	// Graph: members read their directory; writes need a directory
	// administrator (or, for app credentials, the app's owner; a missing
	// app answers 404 first).
	for name, row := range map[string]matrixRow{
		"GET /organization": {deny: 200}, "POST /tenants": {body: `{"displayName":"T2"}`, deny: 403},
		"GET /applications": {deny: 200}, "POST /applications": {body: `{"displayName":"a"}`, deny: 403},
		"GET /applications/{id}": {deny: 404}, "DELETE /applications/{id}": {deny: 403},
		"POST /applications/{id}/addPassword":                          {body: `{}`, deny: 404},
		"POST /applications/{id}/removePassword":                       {body: `{"keyId":"x"}`, deny: 404},
		"GET /applications/{id}/federatedIdentityCredentials":          {deny: 404},
		"POST /applications/{id}/federatedIdentityCredentials":         {body: `{"name":"fic1"}`, deny: 404},
		"GET /applications/{id}/federatedIdentityCredentials/{fic}":    {deny: 404},
		"DELETE /applications/{id}/federatedIdentityCredentials/{fic}": {deny: 404},
		"GET /servicePrincipals":                                       {deny: 200}, "POST /servicePrincipals": {body: `{"appId":"x"}`, deny: 403},
		"GET /servicePrincipals/{id}": {deny: 404}, "DELETE /servicePrincipals/{id}": {deny: 403},
	} {
		method, path, _ := strings.Cut(name, " ")
		rows[method+" /graph/v1.0"+path] = row
	}
	const mi = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ManagedIdentity/userAssignedIdentities"
	const miScope = mRG + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/mi1"
	const uai = "Microsoft.ManagedIdentity/userAssignedIdentities/"
	rows["GET /subscriptions/{subscriptionId}/providers/Microsoft.ManagedIdentity/userAssignedIdentities"] = matrixRow{action: uai + "read", scope: "{sub}", deny: 403}
	rows["GET "+mi] = matrixRow{action: uai + "read", scope: mRG, deny: 403}
	rows["PUT "+mi+"/{identityName}"] = matrixRow{action: uai + "write", scope: miScope, body: `{"location":"westeurope"}`, deny: 403}
	rows["PATCH "+mi+"/{identityName}"] = matrixRow{action: uai + "write", scope: miScope, body: `{}`, deny: 403}
	rows["GET "+mi+"/{identityName}"] = matrixRow{action: uai + "read", scope: miScope, deny: 403}
	rows["DELETE "+mi+"/{identityName}"] = matrixRow{action: uai + "delete", scope: miScope, deny: 403}
	rows["POST "+mi+"/{identityName}/secret"] = matrixRow{action: uai + "assign/action", scope: miScope, deny: 403}
	rows["GET "+mi+"/{identityName}/federatedIdentityCredentials"] = matrixRow{action: uai + "federatedIdentityCredentials/read", scope: miScope, deny: 403}
	ficBody := `{"properties":{"issuer":"https://issuer.example","subject":"s","audiences":["api://AzureADTokenExchange"]}}`
	rows["PUT "+mi+"/{identityName}/federatedIdentityCredentials/{ficName}"] = matrixRow{action: uai + "federatedIdentityCredentials/write", scope: miScope + "/federatedIdentityCredentials/fic1", body: ficBody, deny: 403}
	rows["GET "+mi+"/{identityName}/federatedIdentityCredentials/{ficName}"] = matrixRow{action: uai + "federatedIdentityCredentials/read", scope: miScope + "/federatedIdentityCredentials/fic1", deny: 403}
	rows["DELETE "+mi+"/{identityName}/federatedIdentityCredentials/{ficName}"] = matrixRow{action: uai + "federatedIdentityCredentials/delete", scope: miScope + "/federatedIdentityCredentials/fic1", deny: 403}

	// Role assignments at each scope depth.
	for prefix, scope := range map[string]string{
		"/subscriptions/{subscriptionId}":                                    "{sub}",
		"/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}": mRG,
		"/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/{providerNamespace}/{resourceType}/{resourceName}":                         mVault,
		"/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/{providerNamespace}/{resourceType}/{resourceName}/{childType}/{childName}": mKey,
	} {
		p := prefix + "/providers/Microsoft.Authorization/roleAssignments"
		rows["GET "+p] = matrixRow{action: authz.ActionAssignmentRead, scope: scope, deny: 403}
		rows["GET "+p+"/{roleAssignmentName}"] = matrixRow{action: authz.ActionAssignmentRead, scope: scope, deny: 403}
		rows["PUT "+p+"/{roleAssignmentName}"] = matrixRow{action: authz.ActionAssignmentWrite, scope: scope, body: raBody, deny: 403}
		rows["DELETE "+p+"/{roleAssignmentName}"] = matrixRow{action: authz.ActionAssignmentDelete, scope: scope, deny: 403}
	}
	// Built-in role definitions are readable by every authenticated caller.
	for _, prefix := range []string{"", "/subscriptions/{subscriptionId}", "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}",
		"/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/{providerNamespace}/{resourceType}/{resourceName}"} {
		p := prefix + "/providers/Microsoft.Authorization/roleDefinitions"
		rows["GET "+p] = matrixRow{deny: 200}
		rows["GET "+p+"/{roleDefinitionId}"] = matrixRow{deny: 200}
	}
	return rows
}

// matrixTokens authenticate the matrix's callers; "expired" and "wrongaud"
// fail the way the identity service's verification does.
type matrixTokens map[string]*authn.Principal

func (m matrixTokens) Authenticate(ctx context.Context, tok string, aud []string) (*authn.Principal, error) {
	switch tok {
	case "expired":
		return nil, fmt.Errorf("%w: %w", authn.ErrInvalidToken, authn.ErrExpired)
	case "wrongaud":
		return nil, fmt.Errorf("%w: %w", authn.ErrInvalidToken, authn.ErrAudience)
	}
	return tokens(m).Authenticate(ctx, tok, aud)
}

func TestAuthorizationMatrix(t *testing.T) {
	tk := matrixTokens{}
	srv := cvaulttest.Start(t, cvaulttest.WithConfig(func(c *app.Config) { c.Authenticator = tk }))
	b := srv.App.Bootstrap
	sub := "/subscriptions/" + b.SubscriptionID
	tk["admin"] = &authn.Principal{TenantID: b.TenantID, ObjectID: b.AdminObjectID, Type: authn.ServicePrincipal}
	tk["norole"] = &authn.Principal{TenantID: b.TenantID, ObjectID: "00000000-0000-0000-0000-0000000000cc", Type: authn.ServicePrincipal}
	// The admin's object id, presented by another tenant.
	tk["foreign"] = &authn.Principal{TenantID: "99999999-0000-0000-0000-000000000000", ObjectID: b.AdminObjectID, Type: authn.ServicePrincipal}
	if r := do(t, srv, "PUT", sub+"/resourceGroups/rg1?api-version=2021-04-01", "admin", `{"location":"westeurope"}`); r.Status != 201 {
		t.Fatalf("create rg1: %d %s", r.Status, r.Body)
	}

	rows := matrixRows()
	routes := srv.App.Server.Routes()
	sort.SliceStable(routes, func(i, j int) bool { return routes[i].Method != "DELETE" && routes[j].Method == "DELETE" })
	fill := func(s string) string { return strings.ReplaceAll(s, "{sub}", sub) }
	for _, rt := range routes {
		row, ok := rows[rt.Name()]
		if !ok {
			t.Errorf("route %s (%s) has no authorization matrix row", rt.Name(), rt.Auth)
			continue
		}
		path := rt.Pattern
		for name, v := range matrixValues {
			path = strings.ReplaceAll(path, "{"+name+"}", v)
		}
		path = strings.ReplaceAll(path, "{subscriptionId}", b.SubscriptionID)
		if !rt.APIVersions.Empty() {
			path += "?api-version=" + firstVersion(rt)
		}
		t.Run(rt.Name(), func(t *testing.T) {
			if rt.Auth != route.Bearer {
				if r := do(t, srv, rt.Method, path, "", row.body); r.Status != row.public {
					t.Errorf("anonymous: %d, want %d", r.Status, row.public)
				}
				return
			}
			for _, tok := range []string{"", "expired", "wrongaud", "forged"} {
				if r := do(t, srv, rt.Method, path, tok, row.body); r.Status != http.StatusUnauthorized {
					t.Errorf("token %q: %d, want 401", tok, r.Status)
				}
			}
			if r := do(t, srv, rt.Method, path, "norole", row.body); r.Status != row.deny {
				t.Errorf("no role: %d %s, want %d", r.Status, r.Body, row.deny)
			}
			// Another tenant sees 403 or 404, never a success.
			if r := do(t, srv, rt.Method, path, "foreign", row.body); row.deny != 200 && r.Status != 403 && r.Status != 404 {
				t.Errorf("wrong tenant: %d %s", r.Status, r.Body)
			}
			if r := do(t, srv, rt.Method, path, "admin", row.body); r.Status == 401 || r.Status == 403 {
				t.Errorf("owner refused: %d %s", r.Status, r.Body)
			}
			if row.action != "" {
				checkLevels(t, srv.App.Authz, b.TenantID, row.action, fill(row.scope), sub)
			}
		})
	}
}

// checkLevels grants a role allowing action at the target scope, its
// resource group, its subscription and a sibling, and checks that only
// the sibling grant fails.
func checkLevels(t *testing.T, az *authz.Service, tenant, action, scope, sub string) {
	t.Helper()
	ctx := context.Background()
	role := authz.RoleOwner
	if authz.IsDataAction(action) {
		role = authz.RoleKeyVaultAdministrator
	}
	levels := map[string]bool{scope: true, sub: true, sub + "-sibling": false}
	if strings.Count(scope, "/") > 2 {
		levels[sub+"/resourceGroups/rg1"] = true
		levels[sub+"/resourceGroups/rg2"] = false
	}
	for level, want := range levels {
		if strings.HasSuffix(level, "-sibling") {
			level = "/subscriptions/00000000-0000-0000-0000-0000000000ff"
		}
		n := derivedOID(action + scope + level)
		p := &authn.Principal{TenantID: tenant, ObjectID: n}
		if _, _, err := az.Assign(ctx, authz.Assignment{Name: derivedOID("a" + n), Scope: level, RoleDefinitionID: role,
			PrincipalID: n, TenantID: tenant}); err != nil {
			t.Fatal(err)
		}
		err := az.Check(ctx, p, action, scope)
		if want && err != nil {
			t.Errorf("role at %s: %v", level, err)
		}
		if !want && !errors.Is(err, authz.ErrDenied) {
			t.Errorf("role at sibling %s allowed %s", level, action)
		}
	}
}

func derivedOID(s string) string {
	h := uint64(1469598103934665603)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", uint32(h>>32), h&0xffffffffffff)
}

func firstVersion(rt route.Route) string {
	for _, v := range []string{"2022-04-01", "2021-04-01", "2022-12-01", "2024-11-30"} {
		if rt.APIVersions.Accepts(v) {
			return v
		}
	}
	return ""
}
