package idhttp

import (
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/identity"
)

// Graph list envelope.
type graphList[T any] struct {
	Context string `json:"@odata.context,omitempty"`
	Value   []T    `json:"value"`
}

type graphApplication struct {
	ID                  string                    `json:"id"`
	AppID               string                    `json:"appId"`
	DisplayName         string                    `json:"displayName"`
	SignInAudience      string                    `json:"signInAudience"`
	PublisherDomain     string                    `json:"publisherDomain,omitempty"`
	CreatedDateTime     time.Time                 `json:"createdDateTime"`
	PasswordCredentials []graphPasswordCredential `json:"passwordCredentials"`
}

type graphPasswordCredential struct {
	KeyID         string    `json:"keyId"`
	DisplayName   string    `json:"displayName,omitempty"`
	Hint          string    `json:"hint"`
	StartDateTime time.Time `json:"startDateTime"`
	EndDateTime   time.Time `json:"endDateTime"`
	SecretText    *string   `json:"secretText"`
}

type graphServicePrincipal struct {
	ID                     string   `json:"id"`
	AppID                  string   `json:"appId"`
	DisplayName            string   `json:"displayName"`
	AppOwnerOrganizationID string   `json:"appOwnerOrganizationId"`
	ServicePrincipalType   string   `json:"servicePrincipalType"`
	AlternativeNames       []string `json:"alternativeNames"`
	AccountEnabled         bool     `json:"accountEnabled"`
}

func toGraphApp(a identity.Application) graphApplication {
	g := graphApplication{ID: a.ObjectID, AppID: a.AppID, DisplayName: a.DisplayName, SignInAudience: a.SignInAudience,
		CreatedDateTime: a.Created, PasswordCredentials: []graphPasswordCredential{}}
	for _, p := range a.PasswordCredentials {
		g.PasswordCredentials = append(g.PasswordCredentials, toGraphPassword(p, nil))
	}
	return g
}

func toGraphPassword(p identity.PasswordCredential, secret *string) graphPasswordCredential {
	return graphPasswordCredential{KeyID: p.KeyID, DisplayName: p.DisplayName, Hint: p.Hint, StartDateTime: p.Start,
		EndDateTime: p.End, SecretText: secret}
}

func toGraphSP(sp identity.ServicePrincipal) graphServicePrincipal {
	alt := sp.AlternativeNames
	if alt == nil {
		alt = []string{}
	}
	return graphServicePrincipal{ID: sp.ObjectID, AppID: sp.AppID, DisplayName: sp.DisplayName,
		AppOwnerOrganizationID: sp.AppOwnerTenantID, ServicePrincipalType: sp.Type, AlternativeNames: alt, AccountEnabled: true}
}

func (h *handler) organization(w http.ResponseWriter, r *http.Request) error {
	p, err := principal(r)
	if err != nil {
		return err
	}
	t, err := h.svc.GetTenant(r.Context(), p.TenantID)
	if err != nil {
		return graphError(err)
	}
	azure.WriteJSON(w, http.StatusOK, graphList[map[string]any]{Value: []map[string]any{
		{"id": t.ID, "displayName": t.DisplayName, "createdDateTime": t.Created},
	}})
	return nil
}

// createTenant is cvault's own extension: a new tenant and its
// administrator's credentials, shown once.
func (h *handler) createTenant(w http.ResponseWriter, r *http.Request) error {
	p, err := principal(r)
	if err != nil {
		return err
	}
	var body struct {
		DisplayName string `json:"displayName"`
	}
	if err := azure.DecodeJSON(r, 0, "Request_BadRequest", false, &body); err != nil {
		return err
	}
	t, creds, err := h.svc.CreateTenant(r.Context(), p, body.DisplayName)
	if err != nil {
		return graphError(err)
	}
	azure.WriteJSON(w, http.StatusCreated, map[string]any{"id": t.ID, "displayName": t.DisplayName,
		"createdDateTime": t.Created, "admin": creds})
	return nil
}

func (h *handler) listApplications(w http.ResponseWriter, r *http.Request) error {
	p, err := principal(r)
	if err != nil {
		return err
	}
	apps, err := h.svc.ListApplications(r.Context(), p.TenantID)
	if err != nil {
		return graphError(err)
	}
	out := graphList[graphApplication]{Value: []graphApplication{}}
	filter := appIDFilter(r)
	for _, a := range apps {
		if filter == "" || strings.EqualFold(filter, a.AppID) {
			out.Value = append(out.Value, toGraphApp(a))
		}
	}
	azure.WriteJSON(w, http.StatusOK, out)
	return nil
}

var appIDFilterRE = regexp.MustCompile(`^\s*appId\s+eq\s+'([0-9a-fA-F-]{36})'\s*$`)

// appIDFilter reads the one $filter clients use here: appId eq '{guid}'.
func appIDFilter(r *http.Request) string {
	if m := appIDFilterRE.FindStringSubmatch(r.URL.Query().Get("$filter")); m != nil {
		return m[1]
	}
	return ""
}

func (h *handler) createApplication(w http.ResponseWriter, r *http.Request) error {
	p, err := principal(r)
	if err != nil {
		return err
	}
	var body struct {
		DisplayName    string `json:"displayName"`
		SignInAudience string `json:"signInAudience"`
	}
	if err := azure.DecodeJSON(r, 0, "Request_BadRequest", false, &body); err != nil {
		return err
	}
	a, err := h.svc.CreateApplication(r.Context(), p, body.DisplayName, body.SignInAudience)
	if err != nil {
		return graphError(err)
	}
	azure.WriteJSON(w, http.StatusCreated, toGraphApp(a))
	return nil
}

func (h *handler) getApplication(w http.ResponseWriter, r *http.Request) error {
	p, err := principal(r)
	if err != nil {
		return err
	}
	a, err := h.svc.GetApplication(r.Context(), p.TenantID, r.PathValue("id"))
	if err != nil {
		return graphError(err)
	}
	azure.WriteJSON(w, http.StatusOK, toGraphApp(a))
	return nil
}

func (h *handler) deleteApplication(w http.ResponseWriter, r *http.Request) error {
	p, err := principal(r)
	if err != nil {
		return err
	}
	if err := h.svc.DeleteApplication(r.Context(), p, r.PathValue("id")); err != nil {
		return graphError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *handler) addPassword(w http.ResponseWriter, r *http.Request) error {
	p, err := principal(r)
	if err != nil {
		return err
	}
	var body struct {
		PasswordCredential struct {
			DisplayName string    `json:"displayName"`
			EndDateTime time.Time `json:"endDateTime"`
		} `json:"passwordCredential"`
	}
	if err := azure.DecodeJSON(r, 0, "Request_BadRequest", true, &body); err != nil {
		return err
	}
	pc, secret, err := h.svc.AddPassword(r.Context(), p, r.PathValue("id"), body.PasswordCredential.DisplayName, body.PasswordCredential.EndDateTime)
	if err != nil {
		return graphError(err)
	}
	azure.WriteJSON(w, http.StatusOK, toGraphPassword(pc, &secret))
	return nil
}

func (h *handler) removePassword(w http.ResponseWriter, r *http.Request) error {
	p, err := principal(r)
	if err != nil {
		return err
	}
	var body struct {
		KeyID string `json:"keyId"`
	}
	if err := azure.DecodeJSON(r, 0, "Request_BadRequest", false, &body); err != nil {
		return err
	}
	if err := h.svc.RemovePassword(r.Context(), p, r.PathValue("id"), body.KeyID); err != nil {
		return graphError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *handler) listAppFICs(w http.ResponseWriter, r *http.Request) error {
	p, err := principal(r)
	if err != nil {
		return err
	}
	a, err := h.svc.GetApplication(r.Context(), p.TenantID, r.PathValue("id"))
	if err != nil {
		return graphError(err)
	}
	out := graphList[identity.FederatedCredential]{Value: a.FederatedCredentials}
	if out.Value == nil {
		out.Value = []identity.FederatedCredential{}
	}
	azure.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (h *handler) createAppFIC(w http.ResponseWriter, r *http.Request) error {
	p, err := principal(r)
	if err != nil {
		return err
	}
	var f identity.FederatedCredential
	if err := azure.DecodeJSON(r, 0, "Request_BadRequest", false, &f); err != nil {
		return err
	}
	out, err := h.svc.AddFederatedCredential(r.Context(), p, r.PathValue("id"), f)
	if err != nil {
		return graphError(err)
	}
	azure.WriteJSON(w, http.StatusCreated, out)
	return nil
}

func (h *handler) getAppFIC(w http.ResponseWriter, r *http.Request) error {
	p, err := principal(r)
	if err != nil {
		return err
	}
	a, err := h.svc.GetApplication(r.Context(), p.TenantID, r.PathValue("id"))
	if err != nil {
		return graphError(err)
	}
	for _, f := range a.FederatedCredentials {
		if strings.EqualFold(f.ID, r.PathValue("fic")) || strings.EqualFold(f.Name, r.PathValue("fic")) {
			azure.WriteJSON(w, http.StatusOK, f)
			return nil
		}
	}
	return graphError(identity.ErrNotFound)
}

func (h *handler) deleteAppFIC(w http.ResponseWriter, r *http.Request) error {
	p, err := principal(r)
	if err != nil {
		return err
	}
	if err := h.svc.DeleteFederatedCredential(r.Context(), p, r.PathValue("id"), r.PathValue("fic")); err != nil {
		return graphError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *handler) listServicePrincipals(w http.ResponseWriter, r *http.Request) error {
	p, err := principal(r)
	if err != nil {
		return err
	}
	sps, err := h.svc.ListServicePrincipals(r.Context(), p.TenantID)
	if err != nil {
		return graphError(err)
	}
	out := graphList[graphServicePrincipal]{Value: []graphServicePrincipal{}}
	filter := appIDFilter(r)
	for _, sp := range sps {
		if filter == "" || strings.EqualFold(filter, sp.AppID) {
			out.Value = append(out.Value, toGraphSP(sp))
		}
	}
	azure.WriteJSON(w, http.StatusOK, out)
	return nil
}

// createServicePrincipal is consent: the app's instance in the caller's tenant.
func (h *handler) createServicePrincipal(w http.ResponseWriter, r *http.Request) error {
	p, err := principal(r)
	if err != nil {
		return err
	}
	var body struct {
		AppID string `json:"appId"`
	}
	if err := azure.DecodeJSON(r, 0, "Request_BadRequest", false, &body); err != nil {
		return err
	}
	sp, err := h.svc.CreateServicePrincipal(r.Context(), p, body.AppID)
	if err != nil {
		return graphError(err)
	}
	azure.WriteJSON(w, http.StatusCreated, toGraphSP(sp))
	return nil
}

func (h *handler) getServicePrincipal(w http.ResponseWriter, r *http.Request) error {
	p, err := principal(r)
	if err != nil {
		return err
	}
	sp, err := h.svc.GetServicePrincipal(r.Context(), p.TenantID, r.PathValue("id"))
	if err != nil {
		return graphError(err)
	}
	azure.WriteJSON(w, http.StatusOK, toGraphSP(sp))
	return nil
}

func (h *handler) deleteServicePrincipal(w http.ResponseWriter, r *http.Request) error {
	p, err := principal(r)
	if err != nil {
		return err
	}
	if err := h.svc.DeleteServicePrincipal(r.Context(), p, r.PathValue("id")); err != nil {
		return graphError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
