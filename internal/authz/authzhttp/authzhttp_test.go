package authzhttp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/authorization/armauthorization/v2"

	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/authz"
	"github.com/cvault/cvault/internal/authz/authzhttp"
	"github.com/cvault/cvault/internal/server"
	"github.com/cvault/cvault/internal/store/embedded/embeddedtest"
)

const (
	tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	subID  = "00000000-0000-0000-0000-000000000001"
	rg     = "/subscriptions/" + subID + "/resourceGroups/rg1"
	vault  = rg + "/providers/Microsoft.KeyVault/vaults/v1"
	key    = vault + "/keys/k1"
)

// tokens is the test's authn.Authenticator: a system-boundary stand-in
// for the identity service (token string → principal).
type tokens map[string]*authn.Principal

func (t tokens) Authenticate(_ context.Context, tok string, _ []string) (*authn.Principal, error) {
	if p, ok := t[tok]; ok {
		return p, nil
	}
	return nil, authn.ErrInvalidToken
}

type staticCred string

func (c staticCred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(c), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func oid(n int) string { return fmt.Sprintf("10000000-0000-0000-0000-%012d", n) }

func start(t *testing.T) (*httptest.Server, *authz.Service) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st := embeddedtest.Open(t)
	svc, err := authz.New(authz.Config{Store: st, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	base, _ := url.Parse(ts.URL)
	toks := tokens{
		"admin":    {TenantID: tenant, ObjectID: oid(1), Type: authn.User},
		"operator": {TenantID: tenant, ObjectID: oid(2), Type: authn.ServicePrincipal},
	}
	srv, err := server.New(server.Config{BaseURL: base, Store: st, Logger: log, Authenticator: toks, Routes: authzhttp.Routes(svc)})
	if err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = srv
	if err := svc.Bootstrap(context.Background(), tenant, subID, oid(1)); err != nil {
		t.Fatal(err)
	}
	return ts, svc
}

func clientOptions(ts *httptest.Server) *arm.ClientOptions {
	return &arm.ClientOptions{ClientOptions: policy.ClientOptions{
		Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: ts.URL, Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: ts.URL, Audience: ts.URL}}},
		Transport: ts.Client(),
		Retry:     policy.RetryOptions{MaxRetries: -1},
	}}
}

func TestRoleAssignmentsSDK(t *testing.T) {
	ts, svc := start(t)
	ctx := context.Background()
	admin, err := armauthorization.NewRoleAssignmentsClient(subID, staticCred("admin"), clientOptions(ts))
	if err != nil {
		t.Fatal(err)
	}
	defs, err := armauthorization.NewRoleDefinitionsClient(staticCred("operator"), clientOptions(ts))
	if err != nil {
		t.Fatal(err)
	}

	// Look the role up by name as the CLI and seeds do.
	var roleID string
	pager := defs.NewListPager("subscriptions/"+subID, &armauthorization.RoleDefinitionsClientListOptions{
		Filter: to.Ptr("roleName eq 'Key Vault Crypto Service Encryption User'")})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range page.Value {
			roleID = *d.ID
			if got := len(d.Properties.Permissions[0].DataActions); got != 3 {
				t.Errorf("dataActions: %d", got)
			}
		}
	}
	if roleID != "/subscriptions/"+subID+"/providers/Microsoft.Authorization/roleDefinitions/"+authz.RoleKeyVaultCryptoServiceEncryption {
		t.Fatalf("role id %q", roleID)
	}
	if d, err := defs.Get(ctx, "subscriptions/"+subID, authz.RoleOwner, nil); err != nil || *d.Properties.RoleName != "Owner" {
		t.Fatalf("get definition: %v", err)
	}

	name := "30000000-0000-0000-0000-000000000001"
	params := armauthorization.RoleAssignmentCreateParameters{Properties: &armauthorization.RoleAssignmentProperties{
		RoleDefinitionID: to.Ptr(roleID), PrincipalID: to.Ptr(oid(2)), PrincipalType: to.Ptr(armauthorization.PrincipalTypeServicePrincipal)}}
	created, err := admin.Create(ctx, vault[1:], name, params, nil)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if *created.ID != vault+"/providers/Microsoft.Authorization/roleAssignments/"+name || *created.Properties.Scope != vault ||
		*created.Properties.PrincipalID != oid(2) || created.Properties.CreatedOn == nil {
		t.Errorf("created: %+v", *created.Properties)
	}
	p := &authn.Principal{TenantID: tenant, ObjectID: oid(2)}
	if err := svc.Check(ctx, p, "Microsoft.KeyVault/vaults/keys/wrap/action", key); err != nil {
		t.Errorf("grant not effective: %v", err)
	}

	// The same body again is accepted; another role under the same name is not.
	if _, err := admin.Create(ctx, vault[1:], name, params, nil); err != nil {
		t.Errorf("repeat create: %v", err)
	}
	other := params
	other.Properties = &armauthorization.RoleAssignmentProperties{RoleDefinitionID: to.Ptr("/providers/Microsoft.Authorization/roleDefinitions/" + authz.RoleKeyVaultReader),
		PrincipalID: to.Ptr(oid(2))}
	_, err = admin.Create(ctx, vault[1:], name, other, nil)
	wantCode(t, err, http.StatusConflict, "RoleAssignmentUpdateNotPermitted")
	_, err = admin.Create(ctx, vault[1:], "30000000-0000-0000-0000-000000000002", params, nil)
	wantCode(t, err, http.StatusConflict, "RoleAssignmentExists")

	got, err := admin.GetByID(ctx, (*created.ID)[1:], nil)
	if err != nil || *got.Name != name {
		t.Errorf("get by id: %v", err)
	}
	n := 0
	lp := admin.NewListForResourcePager("rg1", "Microsoft.KeyVault", "vaults", "v1", nil)
	for lp.More() {
		page, err := lp.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n += len(page.Value)
	}
	if n != 2 { // the bootstrap Owner above and the new one
		t.Errorf("list for resource: %d", n)
	}
	// armauthorization/v2 appends $filter to the query unescaped (so
	// does Azure's wire); callers escape it, or the request line breaks.
	sp := admin.NewListForSubscriptionPager(&armauthorization.RoleAssignmentsClientListForSubscriptionOptions{
		Filter: to.Ptr(url.PathEscape("principalId eq '" + oid(2) + "'"))})
	n = 0
	for sp.More() {
		page, err := sp.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n += len(page.Value)
	}
	if n != 1 {
		t.Errorf("list for subscription by principal: %d", n)
	}

	// A non-owner is refused.
	operator, _ := armauthorization.NewRoleAssignmentsClient(subID, staticCred("operator"), clientOptions(ts))
	_, err = operator.Create(ctx, vault[1:], "30000000-0000-0000-0000-000000000003", armauthorization.RoleAssignmentCreateParameters{
		Properties: &armauthorization.RoleAssignmentProperties{RoleDefinitionID: to.Ptr(roleID), PrincipalID: to.Ptr(oid(2))}}, nil)
	wantCode(t, err, http.StatusForbidden, "AuthorizationFailed")
	_, err = operator.Delete(ctx, vault[1:], name, nil)
	wantCode(t, err, http.StatusForbidden, "AuthorizationFailed")

	if _, err := admin.Delete(ctx, vault[1:], name, nil); err != nil {
		t.Errorf("delete: %v", err)
	}
	if _, err := admin.Delete(ctx, vault[1:], name, nil); err != nil {
		t.Errorf("delete again (204): %v", err)
	}
	if err := svc.Check(ctx, p, "Microsoft.KeyVault/vaults/keys/wrap/action", key); !errors.Is(err, authz.ErrDenied) {
		t.Errorf("deleted grant still effective: %v", err)
	}
	_, err = admin.Get(ctx, vault[1:], name, nil)
	wantCode(t, err, http.StatusNotFound, "RoleAssignmentNotFound")

	// Child-resource (single key) scope.
	if _, err := admin.Create(ctx, key[1:], name, params, nil); err != nil {
		t.Errorf("create at key scope: %v", err)
	}
	if err := svc.Check(ctx, p, "Microsoft.KeyVault/vaults/keys/wrap/action", key); err != nil {
		t.Errorf("key-scope grant: %v", err)
	}
	if err := svc.Check(ctx, p, "Microsoft.KeyVault/vaults/keys/wrap/action", vault+"/keys/k2"); !errors.Is(err, authz.ErrDenied) {
		t.Errorf("key-scope grant leaks to a sibling key: %v", err)
	}
}

func wantCode(t *testing.T, err error, status int, code string) {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != status || re.ErrorCode != code {
		t.Errorf("want %d %s, got %v", status, code, err)
	}
}
