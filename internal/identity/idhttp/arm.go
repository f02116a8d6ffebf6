package idhttp

import (
	"errors"
	"net/http"
	"strings"

	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/identity"
)

const (
	actionRead      = "Microsoft.ManagedIdentity/userAssignedIdentities/read"
	actionWrite     = "Microsoft.ManagedIdentity/userAssignedIdentities/write"
	actionDelete    = "Microsoft.ManagedIdentity/userAssignedIdentities/delete"
	actionAssign    = "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action"
	actionFICRead   = "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/read"
	actionFICWrite  = "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write"
	actionFICDelete = "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/delete"
	ficType         = identity.UserAssignedIdentityType + "/federatedIdentityCredentials"
)

type armIdentity struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Location   string            `json:"location"`
	Tags       map[string]string `json:"tags"`
	Properties struct {
		TenantID       string `json:"tenantId"`
		PrincipalID    string `json:"principalId"`
		ClientID       string `json:"clientId"`
		IsolationScope string `json:"isolationScope"`
	} `json:"properties"`
}

func toARM(mi identity.UserAssignedIdentity) armIdentity {
	a := armIdentity{ID: mi.ID, Name: mi.Name, Type: identity.UserAssignedIdentityType, Location: mi.Location, Tags: mi.Tags}
	if a.Tags == nil {
		a.Tags = map[string]string{}
	}
	a.Properties.TenantID, a.Properties.PrincipalID, a.Properties.ClientID = mi.TenantID, mi.PrincipalID, mi.ClientID
	a.Properties.IsolationScope = "None"
	return a
}

type armFIC struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Properties struct {
		Issuer    string   `json:"issuer"`
		Subject   string   `json:"subject"`
		Audiences []string `json:"audiences"`
	} `json:"properties"`
}

func toARMFIC(miID string, f identity.FederatedCredential) armFIC {
	a := armFIC{ID: miID + "/federatedIdentityCredentials/" + f.Name, Name: f.Name, Type: ficType}
	a.Properties.Issuer, a.Properties.Subject, a.Properties.Audiences = f.Issuer, f.Subject, f.Audiences
	return a
}

// authorize checks the caller against the subscription's tenant (a token
// from another tenant is refused as ARM refuses it) and asks the Authorizer.
func (h *handler) authorize(r *http.Request, action, scope string) (*authn.Principal, error) {
	p, err := principal(r)
	if err != nil {
		return nil, err
	}
	tenant, err := h.svc.SubscriptionTenant(r.Context(), r.PathValue("subscriptionId"), "")
	if err != nil {
		return nil, armError(err)
	}
	if !strings.EqualFold(tenant, p.TenantID) {
		// Another tenant's subscription does not exist for this caller.
		return nil, armError(identity.ErrSubscriptionNotFound)
	}
	if h.az == nil {
		return nil, denied(p, action, scope, errors.New("no authorizer configured"))
	}
	if err := h.az.Check(r.Context(), p, action, scope); err != nil {
		var ae *azure.Error
		if errors.As(err, &ae) {
			return nil, err
		}
		return nil, denied(p, action, scope, err)
	}
	return p, nil
}

func denied(p *authn.Principal, action, scope string, err error) error {
	return azure.Errorf(http.StatusForbidden, azure.CodeAuthorizationFailed,
		"The client '%s' with object id '%s' does not have authorization to perform action '%s' over scope '%s' or the scope is invalid. "+
			"If access was recently granted, please refresh your credentials.", p.ObjectID, p.ObjectID, action, scope).Wrap(err)
}

func identityID(r *http.Request) string {
	return identity.IdentityResourceID(r.PathValue("subscriptionId"), r.PathValue("resourceGroupName"), r.PathValue("identityName"))
}

func ficID(r *http.Request) string {
	return identityID(r) + "/federatedIdentityCredentials/" + r.PathValue("ficName")
}

// userAssignedIdentity reads the identity named in the URL.
func (h *handler) userAssignedIdentity(r *http.Request) (identity.UserAssignedIdentity, error) {
	mi, err := h.svc.GetUserAssignedIdentity(r.Context(), r.PathValue("subscriptionId"), r.PathValue("resourceGroupName"), r.PathValue("identityName"))
	return mi, armError(err)
}

// writePut answers a PUT as ARM does: 201 when it created v, 200 when it
// replaced it.
func writePut(w http.ResponseWriter, created bool, v any) {
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	azure.WriteJSON(w, status, v)
}

// writeDeleted answers a DELETE as ARM does: 200 when something was
// deleted, 204 when there was nothing.
func writeDeleted(w http.ResponseWriter, existed bool) {
	if existed {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusNoContent)
	}
}

func (h *handler) listIdentities(w http.ResponseWriter, r *http.Request) error {
	scope := "/subscriptions/" + r.PathValue("subscriptionId")
	if rg := r.PathValue("resourceGroupName"); rg != "" {
		scope += "/resourceGroups/" + rg
	}
	if _, err := h.authorize(r, actionRead, scope); err != nil {
		return err
	}
	list, err := h.svc.ListUserAssignedIdentities(r.Context(), r.PathValue("subscriptionId"), r.PathValue("resourceGroupName"))
	if err != nil {
		return armError(err)
	}
	out := azure.Page[armIdentity]{Value: []armIdentity{}}
	for _, mi := range list {
		out.Value = append(out.Value, toARM(mi))
	}
	azure.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (h *handler) putIdentity(w http.ResponseWriter, r *http.Request) error {
	if _, err := h.authorize(r, actionWrite, identityID(r)); err != nil {
		return err
	}
	var body struct {
		Location string            `json:"location"`
		Tags     map[string]string `json:"tags"`
	}
	if err := azure.DecodeJSON(r, 0, azure.CodeInvalidRequestContent, false, &body); err != nil {
		return err
	}
	mi, created, err := h.svc.PutUserAssignedIdentity(r.Context(), r.PathValue("subscriptionId"), r.PathValue("resourceGroupName"), r.PathValue("identityName"), body.Location, body.Tags)
	if err != nil {
		return armError(err)
	}
	writePut(w, created, toARM(mi))
	return nil
}

func (h *handler) patchIdentity(w http.ResponseWriter, r *http.Request) error {
	if _, err := h.authorize(r, actionWrite, identityID(r)); err != nil {
		return err
	}
	var body struct {
		Tags map[string]string `json:"tags"`
	}
	if err := azure.DecodeJSON(r, 0, azure.CodeInvalidRequestContent, true, &body); err != nil {
		return err
	}
	cur, err := h.userAssignedIdentity(r)
	if err != nil {
		return err
	}
	if body.Tags != nil {
		cur.Tags = body.Tags
	}
	mi, _, err := h.svc.PutUserAssignedIdentity(r.Context(), r.PathValue("subscriptionId"), r.PathValue("resourceGroupName"), r.PathValue("identityName"), cur.Location, cur.Tags)
	if err != nil {
		return armError(err)
	}
	azure.WriteJSON(w, http.StatusOK, toARM(mi))
	return nil
}

func (h *handler) getIdentity(w http.ResponseWriter, r *http.Request) error {
	if _, err := h.authorize(r, actionRead, identityID(r)); err != nil {
		return err
	}
	mi, err := h.userAssignedIdentity(r)
	if err != nil {
		return err
	}
	azure.WriteJSON(w, http.StatusOK, toARM(mi))
	return nil
}

func (h *handler) deleteIdentity(w http.ResponseWriter, r *http.Request) error {
	if _, err := h.authorize(r, actionDelete, identityID(r)); err != nil {
		return err
	}
	existed, err := h.svc.DeleteUserAssignedIdentity(r.Context(), r.PathValue("subscriptionId"), r.PathValue("resourceGroupName"), r.PathValue("identityName"))
	if err != nil {
		return armError(err)
	}
	writeDeleted(w, existed)
	return nil
}

// issueIdentitySecret is cvault's extension behind `cvault identity secret`:
// a new secret for the managed-identity endpoint, shown once.
func (h *handler) issueIdentitySecret(w http.ResponseWriter, r *http.Request) error {
	if _, err := h.authorize(r, actionAssign, identityID(r)); err != nil {
		return err
	}
	secret, err := h.svc.IssueIdentitySecret(r.Context(), r.PathValue("subscriptionId"), r.PathValue("resourceGroupName"), r.PathValue("identityName"))
	if err != nil {
		return armError(err)
	}
	w.Header().Set("Cache-Control", "no-store")
	azure.WriteJSON(w, http.StatusOK, map[string]string{"secret": secret,
		"identityEndpoint": h.svc.BaseURL() + "/metadata/identity/oauth2/token"})
	return nil
}

func (h *handler) listIdentityFICs(w http.ResponseWriter, r *http.Request) error {
	if _, err := h.authorize(r, actionFICRead, identityID(r)); err != nil {
		return err
	}
	mi, err := h.userAssignedIdentity(r)
	if err != nil {
		return err
	}
	out := azure.Page[armFIC]{Value: []armFIC{}}
	for _, f := range mi.FederatedCredentials {
		out.Value = append(out.Value, toARMFIC(mi.ID, f))
	}
	azure.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (h *handler) putIdentityFIC(w http.ResponseWriter, r *http.Request) error {
	if _, err := h.authorize(r, actionFICWrite, ficID(r)); err != nil {
		return err
	}
	var body struct {
		Properties struct {
			Issuer    string   `json:"issuer"`
			Subject   string   `json:"subject"`
			Audiences []string `json:"audiences"`
		} `json:"properties"`
	}
	if err := azure.DecodeJSON(r, 0, azure.CodeInvalidRequestContent, false, &body); err != nil {
		return err
	}
	f := identity.FederatedCredential{Name: r.PathValue("ficName"), Issuer: body.Properties.Issuer, Subject: body.Properties.Subject,
		Audiences: body.Properties.Audiences}
	out, created, err := h.svc.PutIdentityFederatedCredential(r.Context(), r.PathValue("subscriptionId"), r.PathValue("resourceGroupName"), r.PathValue("identityName"), f)
	if err != nil {
		return armError(err)
	}
	writePut(w, created, toARMFIC(identityID(r), out))
	return nil
}

func (h *handler) getIdentityFIC(w http.ResponseWriter, r *http.Request) error {
	if _, err := h.authorize(r, actionFICRead, ficID(r)); err != nil {
		return err
	}
	mi, err := h.userAssignedIdentity(r)
	if err != nil {
		return err
	}
	for _, f := range mi.FederatedCredentials {
		if strings.EqualFold(f.Name, r.PathValue("ficName")) {
			azure.WriteJSON(w, http.StatusOK, toARMFIC(mi.ID, f))
			return nil
		}
	}
	return armError(identity.ErrNotFound)
}

func (h *handler) deleteIdentityFIC(w http.ResponseWriter, r *http.Request) error {
	if _, err := h.authorize(r, actionFICDelete, ficID(r)); err != nil {
		return err
	}
	existed, err := h.svc.DeleteIdentityFederatedCredential(r.Context(), r.PathValue("subscriptionId"), r.PathValue("resourceGroupName"), r.PathValue("identityName"), r.PathValue("ficName"))
	if err != nil {
		return armError(err)
	}
	writeDeleted(w, existed)
	return nil
}
