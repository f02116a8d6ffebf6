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
	"github.com/cvault/cvault/internal/keyvault"
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
	// owner, when set, is the status the subscription's Owner must get: for
	// routes bound to one principal rather than a role (a VM's own guest).
	owner int
}

// matrixValues fills route wildcards to make a concrete request path.
var matrixValues = map[string]string{
	"resourceGroupName": "rg1", "providerNamespace": "Microsoft.KeyVault", "resourceType": "vaults", "resourceName": "kv1",
	"childType": "keys", "childName": "k1", "roleAssignmentName": "30000000-0000-0000-0000-0000000000a1",
	"roleDefinitionId": authz.RoleReader, "namespace": "Microsoft.Resources", "location": "westeurope",
	"operationId":  "40000000-0000-0000-0000-000000000001",
	"identityName": "mi1", "ficName": "fic1", "id": "50000000-0000-0000-0000-000000000001", "fic": "fic1",
	"vaultName": "kv1", "name": "k1", "version": "0123456789abcdef0123456789abcdef", "operationKind": "add",
	"disk": "d1", "instance": "default",
}

const (
	mRG    = "{sub}/resourceGroups/rg1"
	mVault = mRG + "/providers/Microsoft.KeyVault/vaults/kv1"
	mKey   = mVault + "/keys/k1"
	raBody = `{"properties":{"roleDefinitionId":"/providers/Microsoft.Authorization/roleDefinitions/` + authz.RoleReader + `","principalId":"00000000-0000-0000-0000-0000000000bb"}}`
)

func matrixRows() map[string]matrixRow {
	rows := map[string]matrixRow{
		"GET /healthz": {public: 200}, "GET /readyz": {public: 200}, "GET /metrics": {public: 200},

		// Signed disk URLs: the signature is the credential; none → 403 AuthenticationFailed.
		"GET /disks-data/{disk}": {public: 403}, "PUT /disks-data/{disk}": {public: 403},

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
	// Attestation: MAA's data plane is public (an empty attest body is 400);
	// instance administration is governed at the bootstrap subscription.
	const att = "/attestation/{instance}"
	const attScope = "{sub}/providers/Microsoft.Attestation/attestationProviders"
	rows["POST "+att+"/attest/SevSnpVm"] = matrixRow{public: 400}
	rows["POST "+att+"/attest/TdxVm"] = matrixRow{public: 400}
	rows["GET "+att+"/certs"] = matrixRow{public: 200}
	rows["GET "+att+"/.well-known/openid-configuration"] = matrixRow{public: 200}
	rows["GET /attestation"] = matrixRow{action: "Microsoft.Attestation/attestationProviders/read", scope: "{sub}", deny: 403}
	rows["GET "+att] = matrixRow{action: "Microsoft.Attestation/attestationProviders/read", scope: attScope + "/default", deny: 403}
	rows["PUT "+att] = matrixRow{action: "Microsoft.Attestation/attestationProviders/write", scope: attScope + "/default", body: `{}`, deny: 403}
	rows["POST "+att+"/rotateKey"] = matrixRow{action: "Microsoft.Attestation/attestationProviders/write", scope: attScope + "/default", deny: 403}

	// Built-in role definitions are readable by every authenticated caller.
	for _, prefix := range []string{"", "/subscriptions/{subscriptionId}", "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}",
		"/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/{providerNamespace}/{resourceType}/{resourceName}"} {
		p := prefix + "/providers/Microsoft.Authorization/roleDefinitions"
		rows["GET "+p] = matrixRow{deny: 200}
		rows["GET "+p+"/{roleDefinitionId}"] = matrixRow{deny: 200}
	}
	keyVaultRows(rows)
	computeRows(rows)
	return rows
}

// keyVaultRows adds the key vault's routes: ARM vaults (actions at the
// vault, deleted vaults at the subscription) and the data plane, requested
// through the /vaults/kv1 alias (data actions at the key, lists at the vault).
func keyVaultRows(rows map[string]matrixRow) {
	const kv = "Microsoft.KeyVault/vaults/"
	const vaults = "/subscriptions/{subscriptionId}/resourcegroups/{resourceGroupName}/providers/Microsoft.KeyVault/vaults"
	const prov = "/subscriptions/{subscriptionId}/providers/Microsoft.KeyVault"
	rows["PUT "+vaults+"/{vaultName}"] = matrixRow{action: kv + "write", scope: mVault, body: `{"location":"westeurope"}`, deny: 403}
	rows["PATCH "+vaults+"/{vaultName}"] = matrixRow{action: kv + "write", scope: mVault, body: `{}`, deny: 403}
	rows["GET "+vaults+"/{vaultName}"] = matrixRow{action: kv + "read", scope: mVault, deny: 403}
	rows["DELETE "+vaults+"/{vaultName}"] = matrixRow{action: kv + "delete", scope: mVault, deny: 403}
	rows["PUT "+vaults+"/{vaultName}/accessPolicies/{operationKind}"] = matrixRow{action: kv + "accessPolicies/write", scope: mVault, body: `{"properties":{"accessPolicies":[]}}`, deny: 403}
	rows["GET "+vaults] = matrixRow{deny: 200}
	rows["GET "+prov+"/vaults"] = matrixRow{deny: 200}
	rows["GET "+prov+"/deletedVaults"] = matrixRow{action: "Microsoft.KeyVault/deletedVaults/read", scope: "{sub}", deny: 403}
	rows["GET "+prov+"/locations/{location}/deletedVaults/{vaultName}"] = matrixRow{action: "Microsoft.KeyVault/deletedVaults/read", scope: "{sub}", deny: 403}
	rows["POST "+prov+"/checkNameAvailability"] = matrixRow{action: "Microsoft.KeyVault/checkNameAvailability/read", scope: "{sub}", body: `{"name":"kv1","type":"Microsoft.KeyVault/vaults"}`, deny: 403}
	rows["POST "+prov+"/locations/{location}/deletedVaults/{vaultName}/purge"] = matrixRow{action: "Microsoft.KeyVault/locations/deletedVaults/purge/action", scope: "{sub}", deny: 403}
	k := kv + "keys/"
	for name, row := range map[string]matrixRow{
		"GET /keys":                             {action: k + "read", scope: mVault},
		"POST /keys/{name}/create":              {action: k + "create/action", scope: mKey},
		"PUT /keys/{name}":                      {action: k + "import/action", scope: mKey},
		"GET /keys/{name}":                      {action: k + "read", scope: mKey},
		"GET /keys/{name}/{version}":            {action: k + "read", scope: mKey},
		"PATCH /keys/{name}":                    {action: k + "update/action", scope: mKey},
		"PATCH /keys/{name}/{version}":          {action: k + "update/action", scope: mKey},
		"DELETE /keys/{name}":                   {action: k + "delete", scope: mKey},
		"GET /keys/{name}/versions":             {action: k + "read", scope: mKey},
		"POST /keys/{name}/rotate":              {action: k + "rotate/action", scope: mKey},
		"POST /keys/{name}/backup":              {action: k + "backup/action", scope: mKey},
		"POST /keys/restore":                    {action: k + "restore/action", scope: mVault},
		"GET /keys/{name}/rotationpolicy":       {action: kv + "keyrotationpolicies/read", scope: mKey},
		"PUT /keys/{name}/rotationpolicy":       {action: kv + "keyrotationpolicies/write", scope: mKey},
		"GET /deletedkeys":                      {action: k + "read", scope: mVault},
		"GET /deletedkeys/{name}":               {action: k + "read", scope: mKey},
		"DELETE /deletedkeys/{name}":            {action: k + "purge/action", scope: mKey},
		"POST /deletedkeys/{name}/recover":      {action: k + "recover/action", scope: mKey},
		"POST /keys/{name}/wrapkey":             {action: k + "wrap/action", scope: mKey},
		"POST /keys/{name}/{version}/wrapkey":   {action: k + "wrap/action", scope: mKey},
		"POST /keys/{name}/unwrapkey":           {action: k + "unwrap/action", scope: mKey},
		"POST /keys/{name}/{version}/unwrapkey": {action: k + "unwrap/action", scope: mKey},
		"POST /keys/{name}/encrypt":             {action: k + "encrypt/action", scope: mKey},
		"POST /keys/{name}/{version}/encrypt":   {action: k + "encrypt/action", scope: mKey},
		"POST /keys/{name}/decrypt":             {action: k + "decrypt/action", scope: mKey},
		"POST /keys/{name}/{version}/decrypt":   {action: k + "decrypt/action", scope: mKey},
		"POST /keys/{name}/sign":                {action: k + "sign/action", scope: mKey},
		"POST /keys/{name}/{version}/sign":      {action: k + "sign/action", scope: mKey},
		"POST /keys/{name}/verify":              {action: k + "verify/action", scope: mKey},
		"POST /keys/{name}/{version}/verify":    {action: k + "verify/action", scope: mKey},
		"POST /keys/{name}/release":             {action: k + "release/action", scope: mKey},
		"POST /keys/{name}/{version}/release":   {action: k + "release/action", scope: mKey},
		"GET /keys/{name}/releaseaudit":         {action: k + "read", scope: mKey},
	} {
		row.deny, row.body = 403, `{}`
		rows[name] = row
	}
}

// ensureVault (re)creates rg1 and the RBAC vault kv1 the key-vault rows
// address, since earlier rows delete them, and grants the admin Key Vault
// Administrator on it (the bootstrap admin holds no data role).
func ensureVault(t *testing.T, srv *cvaulttest.Server) {
	t.Helper()
	ctx := context.Background()
	b := srv.App.Bootstrap
	if r := do(t, srv, "PUT", "/subscriptions/"+b.SubscriptionID+"/resourceGroups/rg1?api-version=2021-04-01", "admin", `{"location":"westeurope"}`); r.Status >= 300 {
		t.Fatalf("create rg1: %d %s", r.Status, r.Body)
	}
	kvs := srv.App.KeyVault
	if _, err := kvs.VaultByName(ctx, "kv1"); err == nil {
		return
	}
	if _, err := kvs.RecoverVault(ctx, b.SubscriptionID, "rg1", "kv1"); err == nil {
		return
	}
	v := keyvault.Vault{Subscription: b.SubscriptionID, ResourceGroup: "rg1", Name: "kv1", Location: "westeurope",
		Properties: keyvault.VaultProperties{TenantID: b.TenantID, SKU: keyvault.SKUPremium, EnableRBACAuthorization: true}}
	if _, _, err := kvs.PutVault(ctx, v, b.TenantID); err != nil {
		t.Fatal(err)
	}
	scope := "/subscriptions/" + b.SubscriptionID + "/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/kv1"
	if _, _, err := srv.App.Authz.Assign(ctx, authz.Assignment{Name: derivedOID("admin-kv"), Scope: scope,
		RoleDefinitionID: authz.RoleKeyVaultAdministrator, PrincipalID: b.AdminObjectID, TenantID: b.TenantID}); err != nil {
		t.Fatal(err)
	}
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
		if rt.Host == route.Vault {
			path = "/vaults/kv1" + path
		}
		if !rt.APIVersions.Empty() {
			path += "?api-version=" + firstVersion(rt)
		}
		t.Run(rt.Name(), func(t *testing.T) {
			if strings.Contains(rt.Pattern, "Microsoft.KeyVault") || rt.Service == route.KeyVault {
				ensureVault(t, srv)
			}
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
			// Another tenant sees 403 or 404, never a success; a key vault
			// answers 401 with the challenge naming its own tenant, as Azure
			// does, so a multi-tenant client re-acquires its token there.
			if r := do(t, srv, rt.Method, path, "foreign", row.body); rt.Service == route.KeyVault {
				if r.Status != 401 || !strings.Contains(r.Header.Get("WWW-Authenticate"), b.TenantID) {
					t.Errorf("wrong tenant: %d %v %s", r.Status, r.Header, r.Body)
				}
			} else if row.deny != 200 && r.Status != 403 && r.Status != 404 {
				t.Errorf("wrong tenant: %d %s", r.Status, r.Body)
			}
			if r := do(t, srv, rt.Method, path, "admin", row.body); row.owner != 0 && r.Status != row.owner {
				t.Errorf("owner: %d %s, want %d", r.Status, r.Body, row.owner)
			} else if row.owner == 0 && (r.Status == 401 || r.Status == 403) {
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
	if strings.Contains(strings.ToLower(scope), "/resourcegroups/") {
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
	for _, v := range []string{"2022-04-01", "2021-04-01", "2022-12-01", "2024-11-30", "2024-11-01", "7.5"} {
		if rt.APIVersions.Accepts(v) {
			return v
		}
	}
	return ""
}

// computeRows adds Microsoft.Compute: encryption sets, disks and VMs, each
// action at the resource, lists at their group or subscription.
func computeRows(rows map[string]matrixRow) {
	const rgp = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Compute"
	const subp = "/subscriptions/{subscriptionId}/providers/Microsoft.Compute"
	const scope = mRG + "/providers/Microsoft.Compute"
	for typ, name := range map[string]string{"diskEncryptionSets": "des", "disks": "disk", "virtualMachines": "vm"} {
		a := "Microsoft.Compute/" + typ + "/"
		path := rgp + "/" + typ + "/{" + name + "Name}"
		res := scope + "/" + typ + "/" + name + "1"
		rows["PUT "+path] = matrixRow{action: a + "write", scope: res, body: `{"location":"westeurope"}`, deny: 403}
		rows["PATCH "+path] = matrixRow{action: a + "write", scope: res, body: `{}`, deny: 403}
		rows["GET "+path] = matrixRow{action: a + "read", scope: res, deny: 403}
		rows["DELETE "+path] = matrixRow{action: a + "delete", scope: res, deny: 403}
		rows["GET "+rgp+"/"+typ] = matrixRow{action: a + "read", scope: mRG, deny: 403}
		rows["GET "+subp+"/"+typ] = matrixRow{action: a + "read", scope: "{sub}", deny: 403}
	}
	des := scope + "/diskEncryptionSets/des1"
	rows["GET "+rgp+"/diskEncryptionSets/{desName}/associatedResources"] = matrixRow{action: "Microsoft.Compute/diskEncryptionSets/read", scope: des, deny: 403}
	disk := scope + "/disks/disk1"
	rows["POST "+rgp+"/disks/{diskName}/beginGetAccess"] = matrixRow{action: "Microsoft.Compute/disks/beginGetAccess/action", scope: disk, body: `{"access":"Read","durationInSeconds":60}`, deny: 403}
	rows["POST "+rgp+"/disks/{diskName}/endGetAccess"] = matrixRow{action: "Microsoft.Compute/disks/endGetAccess/action", scope: disk, deny: 403}
	vm := scope + "/virtualMachines/vm1"
	rows["GET "+rgp+"/virtualMachines/{vmName}/instanceView"] = matrixRow{action: "Microsoft.Compute/virtualMachines/instanceView/read", scope: vm, deny: 403}
	rows["POST "+rgp+"/virtualMachines/{vmName}/identitySecret"] = matrixRow{action: "Microsoft.Compute/virtualMachines/identitySecret/action", scope: vm, deny: 403}
	// Only the VM's own managed identity may release its disk key (no role grants it).
	rows["POST "+rgp+"/virtualMachines/{vmName}/releaseDiskEncryptionKey"] = matrixRow{body: `{"target":"x"}`, deny: 403, owner: 403}
	for _, op := range []string{"start", "powerOff", "deallocate", "restart"} {
		rows["POST "+rgp+"/virtualMachines/{vmName}/"+op] = matrixRow{action: "Microsoft.Compute/virtualMachines/" + op + "/action", scope: vm, deny: 403}
	}
}
