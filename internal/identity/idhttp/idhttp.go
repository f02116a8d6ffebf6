// Package idhttp serves the identity service over HTTP in the shapes the
// Azure SDK and Entra clients expect: the token endpoint, OIDC metadata
// and JWKS (Entra), the managed-identity endpoint (IMDS and App Service
// shapes), the Graph-shaped directory API under /graph/v1.0, and ARM's
// Microsoft.ManagedIdentity/userAssignedIdentities with their federated
// identity credentials. Wire shapes: wire/identity-rbac-compute.md §1-3.
package idhttp

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/identity"
	"github.com/cvault/cvault/internal/route"
)

// Authorizer decides ARM actions (implemented by authz). Any error denies.
type Authorizer interface {
	Check(ctx context.Context, p *authn.Principal, action, scope string) error
}

// ARM api-versions of Microsoft.ManagedIdentity (armmsi v1.3.0 sends 2024-11-30).
var armVersions = azure.Versions("2018-11-30", "2021-09-30-preview", "2022-01-31-preview", "2023-01-31",
	"2023-07-31-preview", "2024-11-30", "2025-01-31-preview")

// Managed-identity endpoint api-versions: IMDS (2018-02-01), App Service (2019-08-01).
var miVersions = azure.Versions("2018-02-01", "2019-08-01", "2017-09-01")

type handler struct {
	svc *identity.Service
	az  Authorizer
}

// Routes returns the identity routes.
func Routes(svc *identity.Service, az Authorizer) []route.Route {
	h := &handler{svc: svc, az: az}
	pub := func(method, pattern string, fn route.HandlerFunc) route.Route {
		return route.Route{Method: method, Pattern: pattern, Auth: route.Public, Service: route.Identity, Handler: fn}
	}
	graph := func(method, pattern string, fn route.HandlerFunc) route.Route {
		return route.Route{Method: method, Pattern: "/graph/v1.0" + pattern, Auth: route.Bearer, Service: route.Graph, Handler: fn}
	}
	const mi = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ManagedIdentity/userAssignedIdentities"
	arm := func(method, pattern string, fn route.HandlerFunc) route.Route {
		return route.Route{Method: method, Pattern: pattern, Auth: route.Bearer, Service: route.ARM, APIVersions: armVersions, Handler: fn}
	}
	miRoute := func(method string) route.Route {
		return route.Route{Method: method, Pattern: "/metadata/identity/oauth2/token", Auth: route.Secret,
			Service: route.Identity, APIVersions: miVersions, Handler: h.managedIdentityToken}
	}
	return []route.Route{
		pub("POST", "/{tenant}/oauth2/v2.0/token", h.token),
		pub("GET", "/{tenant}/v2.0/.well-known/openid-configuration", h.openIDConfiguration),
		pub("GET", "/{tenant}/discovery/v2.0/keys", h.keys),
		miRoute("GET"),
		miRoute("POST"),

		graph("GET", "/organization", h.organization),
		graph("POST", "/tenants", h.createTenant),
		graph("GET", "/applications", h.listApplications),
		graph("POST", "/applications", h.createApplication),
		graph("GET", "/applications/{id}", h.getApplication),
		graph("DELETE", "/applications/{id}", h.deleteApplication),
		graph("POST", "/applications/{id}/addPassword", h.addPassword),
		graph("POST", "/applications/{id}/removePassword", h.removePassword),
		graph("GET", "/applications/{id}/federatedIdentityCredentials", h.listAppFICs),
		graph("POST", "/applications/{id}/federatedIdentityCredentials", h.createAppFIC),
		graph("GET", "/applications/{id}/federatedIdentityCredentials/{fic}", h.getAppFIC),
		graph("DELETE", "/applications/{id}/federatedIdentityCredentials/{fic}", h.deleteAppFIC),
		graph("GET", "/servicePrincipals", h.listServicePrincipals),
		graph("POST", "/servicePrincipals", h.createServicePrincipal),
		graph("GET", "/servicePrincipals/{id}", h.getServicePrincipal),
		graph("DELETE", "/servicePrincipals/{id}", h.deleteServicePrincipal),

		arm("GET", "/subscriptions/{subscriptionId}/providers/Microsoft.ManagedIdentity/userAssignedIdentities", h.listIdentities),
		arm("GET", mi, h.listIdentities),
		arm("PUT", mi+"/{identityName}", h.putIdentity),
		arm("PATCH", mi+"/{identityName}", h.patchIdentity),
		arm("GET", mi+"/{identityName}", h.getIdentity),
		arm("DELETE", mi+"/{identityName}", h.deleteIdentity),
		arm("POST", mi+"/{identityName}/secret", h.issueIdentitySecret),
		arm("GET", mi+"/{identityName}/federatedIdentityCredentials", h.listIdentityFICs),
		arm("PUT", mi+"/{identityName}/federatedIdentityCredentials/{ficName}", h.putIdentityFIC),
		arm("GET", mi+"/{identityName}/federatedIdentityCredentials/{ficName}", h.getIdentityFIC),
		arm("DELETE", mi+"/{identityName}/federatedIdentityCredentials/{ficName}", h.deleteIdentityFIC),
	}
}

func principal(r *http.Request) (*authn.Principal, error) {
	p, ok := authn.FromContext(r.Context())
	if !ok {
		return nil, azure.Errorf(http.StatusUnauthorized, azure.CodeAuthenticationFailed, "Authentication failed.")
	}
	return p, nil
}

// errCode is how one service sentinel answers on the wire.
type errCode struct {
	sentinel error
	status   int
	code     string
	message  string // "" shows the detail after the sentinel's text
}

var graphCodes = []errCode{
	{identity.ErrNotFound, http.StatusNotFound, "Request_ResourceNotFound", "Resource does not exist or one of its queried reference-property objects are not present."},
	{identity.ErrForbidden, http.StatusForbidden, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."},
	{identity.ErrConflict, http.StatusConflict, "Request_MultipleObjectsWithSameKeyValue", ""},
	{identity.ErrInvalid, http.StatusBadRequest, "Request_BadRequest", ""},
}

// armCodes is in match order: the more specific not-found sentinels first.
var armCodes = []errCode{
	{identity.ErrSubscriptionNotFound, http.StatusNotFound, azure.CodeSubscriptionNotFound, "The subscription could not be found."},
	{identity.ErrResourceGroupNotFound, http.StatusNotFound, azure.CodeResourceGroupNotFound, "The resource group could not be found."},
	{identity.ErrNotFound, http.StatusNotFound, azure.CodeResourceNotFound, "The Resource was not found."},
	{identity.ErrConflict, http.StatusConflict, azure.CodeConflict, ""},
	{identity.ErrInvalid, http.StatusBadRequest, azure.CodeBadRequest, ""},
}

// graphError maps service errors to Graph's codes.
func graphError(err error) error { return mapError(err, graphCodes) }

// armError maps service errors to ARM's codes.
func armError(err error) error { return mapError(err, armCodes) }

// mapError answers err with the first code whose sentinel it matches; an
// *azure.Error, nil or an unmatched error passes unchanged.
func mapError(err error, codes []errCode) error {
	var ae *azure.Error
	if err == nil || errors.As(err, &ae) {
		return err
	}
	for _, c := range codes {
		if errors.Is(err, c.sentinel) {
			msg := c.message
			if msg == "" {
				msg = trimSentinel(err)
			}
			return azure.Errorf(c.status, c.code, "%s", msg).Wrap(err)
		}
	}
	return err
}

// trimSentinel shows the client the detail after the sentinel's text.
func trimSentinel(err error) string {
	s := err.Error()
	for _, sent := range []error{identity.ErrInvalid, identity.ErrConflict} {
		if i := strings.Index(s, sent.Error()+": "); i >= 0 {
			return s[i+len(sent.Error())+2:]
		}
	}
	return s
}
