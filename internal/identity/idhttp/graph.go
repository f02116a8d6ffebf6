package idhttp

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/cvault/cvault/internal/authn"
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

// serveGraph is the shape the Graph handlers share: the caller's
// principal, call's work, and status with what reply makes of the result.
// call's errors map to Graph's codes (an *azure.Error, such as a decode
// error, passes unchanged).
func serveGraph[T, R any](w http.ResponseWriter, r *http.Request, status int,
	call func(ctx context.Context, p *authn.Principal) (T, error), reply func(T) R) error {
	p, err := principal(r)
	if err != nil {
		return err
	}
	v, err := call(r.Context(), p)
	if err != nil {
		return graphError(err)
	}
	azure.WriteJSON(w, status, reply(v))
	return nil
}

// deleteGraph is serveGraph for the calls that answer 204 No Content.
func deleteGraph(w http.ResponseWriter, r *http.Request, call func(ctx context.Context, p *authn.Principal) error) error {
	p, err := principal(r)
	if err != nil {
		return err
	}
	if err := call(r.Context(), p); err != nil {
		return graphError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func asIs[T any](v T) T { return v }

func (h *handler) organization(w http.ResponseWriter, r *http.Request) error {
	return serveGraph(w, r, http.StatusOK, func(ctx context.Context, p *authn.Principal) (identity.Tenant, error) {
		return h.svc.GetTenant(ctx, p.TenantID)
	}, func(t identity.Tenant) graphList[map[string]any] {
		return graphList[map[string]any]{Value: []map[string]any{
			{"id": t.ID, "displayName": t.DisplayName, "createdDateTime": t.Created},
		}}
	})
}

// createTenant is cvault's own extension: a new tenant and its
// administrator's credentials, shown once.
func (h *handler) createTenant(w http.ResponseWriter, r *http.Request) error {
	return serveGraph(w, r, http.StatusCreated, func(ctx context.Context, p *authn.Principal) (map[string]any, error) {
		var body struct {
			DisplayName string `json:"displayName"`
		}
		if err := azure.DecodeJSON(r, 0, "Request_BadRequest", false, &body); err != nil {
			return nil, err
		}
		t, creds, err := h.svc.CreateTenant(ctx, p, body.DisplayName)
		if err != nil {
			return nil, err
		}
		return map[string]any{"id": t.ID, "displayName": t.DisplayName, "createdDateTime": t.Created, "admin": creds}, nil
	}, asIs)
}

func (h *handler) listApplications(w http.ResponseWriter, r *http.Request) error {
	return serveGraph(w, r, http.StatusOK, func(ctx context.Context, p *authn.Principal) ([]identity.Application, error) {
		return h.svc.ListApplications(ctx, p.TenantID)
	}, func(apps []identity.Application) graphList[graphApplication] {
		return byAppID(r, apps, func(a identity.Application) string { return a.AppID }, toGraphApp)
	})
}

// byAppID converts the items whose appId the request's $filter names (all
// of them without a filter).
func byAppID[T, G any](r *http.Request, items []T, appID func(T) string, conv func(T) G) graphList[G] {
	out := graphList[G]{Value: []G{}}
	filter := appIDFilter(r)
	for _, it := range items {
		if filter == "" || strings.EqualFold(filter, appID(it)) {
			out.Value = append(out.Value, conv(it))
		}
	}
	return out
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
	return serveGraph(w, r, http.StatusCreated, func(ctx context.Context, p *authn.Principal) (identity.Application, error) {
		var body struct {
			DisplayName    string `json:"displayName"`
			SignInAudience string `json:"signInAudience"`
		}
		if err := azure.DecodeJSON(r, 0, "Request_BadRequest", false, &body); err != nil {
			return identity.Application{}, err
		}
		return h.svc.CreateApplication(ctx, p, body.DisplayName, body.SignInAudience)
	}, toGraphApp)
}

func (h *handler) getApplication(w http.ResponseWriter, r *http.Request) error {
	return serveGraph(w, r, http.StatusOK, h.application(r), toGraphApp)
}

// application reads the application named in the URL, in the caller's tenant.
func (h *handler) application(r *http.Request) func(ctx context.Context, p *authn.Principal) (identity.Application, error) {
	return func(ctx context.Context, p *authn.Principal) (identity.Application, error) {
		return h.svc.GetApplication(ctx, p.TenantID, r.PathValue("id"))
	}
}

func (h *handler) deleteApplication(w http.ResponseWriter, r *http.Request) error {
	return deleteGraph(w, r, func(ctx context.Context, p *authn.Principal) error {
		return h.svc.DeleteApplication(ctx, p, r.PathValue("id"))
	})
}

func (h *handler) addPassword(w http.ResponseWriter, r *http.Request) error {
	return serveGraph(w, r, http.StatusOK, func(ctx context.Context, p *authn.Principal) (graphPasswordCredential, error) {
		var body struct {
			PasswordCredential struct {
				DisplayName string    `json:"displayName"`
				EndDateTime time.Time `json:"endDateTime"`
			} `json:"passwordCredential"`
		}
		if err := azure.DecodeJSON(r, 0, "Request_BadRequest", true, &body); err != nil {
			return graphPasswordCredential{}, err
		}
		pc, secret, err := h.svc.AddPassword(ctx, p, r.PathValue("id"), body.PasswordCredential.DisplayName, body.PasswordCredential.EndDateTime)
		if err != nil {
			return graphPasswordCredential{}, err
		}
		return toGraphPassword(pc, &secret), nil
	}, asIs)
}

func (h *handler) removePassword(w http.ResponseWriter, r *http.Request) error {
	return deleteGraph(w, r, func(ctx context.Context, p *authn.Principal) error {
		var body struct {
			KeyID string `json:"keyId"`
		}
		if err := azure.DecodeJSON(r, 0, "Request_BadRequest", false, &body); err != nil {
			return err
		}
		return h.svc.RemovePassword(ctx, p, r.PathValue("id"), body.KeyID)
	})
}

func (h *handler) listAppFICs(w http.ResponseWriter, r *http.Request) error {
	return serveGraph(w, r, http.StatusOK, h.application(r), func(a identity.Application) graphList[identity.FederatedCredential] {
		out := graphList[identity.FederatedCredential]{Value: a.FederatedCredentials}
		if out.Value == nil {
			out.Value = []identity.FederatedCredential{}
		}
		return out
	})
}

func (h *handler) createAppFIC(w http.ResponseWriter, r *http.Request) error {
	return serveGraph(w, r, http.StatusCreated, func(ctx context.Context, p *authn.Principal) (identity.FederatedCredential, error) {
		var f identity.FederatedCredential
		if err := azure.DecodeJSON(r, 0, "Request_BadRequest", false, &f); err != nil {
			return f, err
		}
		return h.svc.AddFederatedCredential(ctx, p, r.PathValue("id"), f)
	}, asIs)
}

func (h *handler) getAppFIC(w http.ResponseWriter, r *http.Request) error {
	return serveGraph(w, r, http.StatusOK, func(ctx context.Context, p *authn.Principal) (identity.FederatedCredential, error) {
		a, err := h.application(r)(ctx, p)
		if err != nil {
			return identity.FederatedCredential{}, err
		}
		for _, f := range a.FederatedCredentials {
			if strings.EqualFold(f.ID, r.PathValue("fic")) || strings.EqualFold(f.Name, r.PathValue("fic")) {
				return f, nil
			}
		}
		return identity.FederatedCredential{}, identity.ErrNotFound
	}, asIs)
}

func (h *handler) deleteAppFIC(w http.ResponseWriter, r *http.Request) error {
	return deleteGraph(w, r, func(ctx context.Context, p *authn.Principal) error {
		return h.svc.DeleteFederatedCredential(ctx, p, r.PathValue("id"), r.PathValue("fic"))
	})
}

func (h *handler) listServicePrincipals(w http.ResponseWriter, r *http.Request) error {
	return serveGraph(w, r, http.StatusOK, func(ctx context.Context, p *authn.Principal) ([]identity.ServicePrincipal, error) {
		return h.svc.ListServicePrincipals(ctx, p.TenantID)
	}, func(sps []identity.ServicePrincipal) graphList[graphServicePrincipal] {
		return byAppID(r, sps, func(sp identity.ServicePrincipal) string { return sp.AppID }, toGraphSP)
	})
}

// createServicePrincipal is consent: the app's instance in the caller's tenant.
func (h *handler) createServicePrincipal(w http.ResponseWriter, r *http.Request) error {
	return serveGraph(w, r, http.StatusCreated, func(ctx context.Context, p *authn.Principal) (identity.ServicePrincipal, error) {
		var body struct {
			AppID string `json:"appId"`
		}
		if err := azure.DecodeJSON(r, 0, "Request_BadRequest", false, &body); err != nil {
			return identity.ServicePrincipal{}, err
		}
		return h.svc.CreateServicePrincipal(ctx, p, body.AppID)
	}, toGraphSP)
}

func (h *handler) getServicePrincipal(w http.ResponseWriter, r *http.Request) error {
	return serveGraph(w, r, http.StatusOK, func(ctx context.Context, p *authn.Principal) (identity.ServicePrincipal, error) {
		return h.svc.GetServicePrincipal(ctx, p.TenantID, r.PathValue("id"))
	}, toGraphSP)
}

func (h *handler) deleteServicePrincipal(w http.ResponseWriter, r *http.Request) error {
	return deleteGraph(w, r, func(ctx context.Context, p *authn.Principal) error {
		return h.svc.DeleteServicePrincipal(ctx, p, r.PathValue("id"))
	})
}
