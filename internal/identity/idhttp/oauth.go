package idhttp

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/identity"
)

// maxForm bounds a token request body (assertions are a few KiB).
const maxForm = 64 << 10

// token is POST /{tenant}/oauth2/v2.0/token.
func (h *handler) token(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		return writeOAuthError(w, r, &identity.OAuthError{Status: http.StatusBadRequest, Code: "invalid_request",
			AADSTS: 900144, Description: "The request body must be application/x-www-form-urlencoded.", Err: err})
	}
	f := r.PostForm
	req := identity.TokenRequest{GrantType: f.Get("grant_type"), ClientID: f.Get("client_id"), ClientSecret: f.Get("client_secret"),
		ClientAssertionType: f.Get("client_assertion_type"), ClientAssertion: f.Get("client_assertion"), Scope: f.Get("scope")}
	// client_secret_basic (RFC 6749 §2.3.1: form-encoded id and secret).
	if id, secret, ok := r.BasicAuth(); ok && req.ClientSecret == "" {
		if u, err := url.QueryUnescape(id); err == nil {
			id = u
		}
		if u, err := url.QueryUnescape(secret); err == nil {
			secret = u
		}
		if req.ClientID == "" {
			req.ClientID = id
		}
		req.ClientSecret = secret
	}
	tok, err := h.svc.Token(r.Context(), r.PathValue("tenant"), req)
	if err != nil {
		return writeOAuthError(w, r, err)
	}
	secs := int(time.Until(tok.ExpiresOn).Seconds())
	if secs <= 0 || secs > int(tok.Lifetime.Seconds()) {
		secs = int(tok.Lifetime.Seconds())
	}
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.Header().Set("Pragma", "no-cache")
	azure.WriteJSON(w, http.StatusOK, map[string]any{
		"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": tok.AccessToken,
	})
	return nil
}

// writeOAuthError renders an OAuth failure in Entra's shape. The token
// endpoint is not an ARM API, so it cannot use the azure envelope the
// server renders for returned errors; other errors still go back to it.
func writeOAuthError(w http.ResponseWriter, r *http.Request, err error) error {
	var oe *identity.OAuthError
	if !errors.As(err, &oe) {
		return err
	}
	now := time.Now().UTC()
	trace := w.Header().Get("x-ms-request-id")
	corr := r.Header.Get("client-request-id")
	if corr == "" {
		corr = trace
	}
	desc := "AADSTS" + strconv.Itoa(oe.AADSTS) + ": " + oe.Description + " Trace ID: " + trace +
		" Correlation ID: " + corr + " Timestamp: " + now.Format("2006-01-02 15:04:05Z")
	if oe.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="cvault"`)
	}
	w.Header().Set("Cache-Control", "no-store, no-cache")
	azure.WriteJSON(w, oe.Status, map[string]any{
		"error": oe.Code, "error_description": desc, "error_codes": []int{oe.AADSTS},
		"timestamp": now.Format("2006-01-02 15:04:05Z"), "trace_id": trace, "correlation_id": corr,
		"error_uri": "https://login.microsoftonline.com/error?code=" + strconv.Itoa(oe.AADSTS),
	})
	return nil
}

// openIDConfiguration is the tenant's OIDC metadata; MSAL requires
// authorization_endpoint, token_endpoint and an issuer on the authority's origin.
func (h *handler) openIDConfiguration(w http.ResponseWriter, r *http.Request) error {
	tenant := strings.ToLower(r.PathValue("tenant"))
	if _, err := h.svc.GetTenant(r.Context(), tenant); err != nil {
		return tenantError(w, r, tenant, err)
	}
	a := h.svc.Authority(tenant)
	azure.WriteJSON(w, http.StatusOK, map[string]any{
		"issuer":                                h.svc.Issuer(tenant),
		"authorization_endpoint":                a + "/oauth2/v2.0/authorize",
		"token_endpoint":                        a + "/oauth2/v2.0/token",
		"jwks_uri":                              a + "/discovery/v2.0/keys",
		"response_types_supported":              []string{"code", "id_token", "code id_token", "token id_token"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"grant_types_supported":                 []string{"client_credentials"},
		"tenant_region_scope":                   nil,
		"cloud_instance_name":                   "cvault",
	})
	return nil
}

func tenantError(w http.ResponseWriter, r *http.Request, tenant string, err error) error {
	if errors.Is(err, identity.ErrNotFound) {
		return writeOAuthError(w, r, &identity.OAuthError{Status: http.StatusBadRequest, Code: "invalid_tenant",
			AADSTS: identity.CodeTenantNotFound, Description: "Tenant '" + tenant + "' not found. Check to make sure you have " +
				"the correct tenant ID and are signing into the correct cloud.", Err: err})
	}
	return err
}

// keys is the tenant's JWKS.
func (h *handler) keys(w http.ResponseWriter, r *http.Request) error {
	tenant := strings.ToLower(r.PathValue("tenant"))
	set, err := h.svc.JWKS(r.Context(), tenant)
	if err != nil {
		return tenantError(w, r, tenant, err)
	}
	b, err := json.Marshal(set)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "max-age=300")
	_, err = w.Write(b)
	return err
}

// managedIdentityToken is the managed-identity endpoint in both shapes:
// IMDS (api-version 2018-02-01, Metadata: true, client_id|object_id|msi_res_id;
// the secret added by `cvault guest imds-proxy`) and App Service
// (api-version 2019-08-01, X-IDENTITY-HEADER, client_id|object_id|principal_id|mi_res_id).
func (h *handler) managedIdentityToken(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err == nil {
			q = r.Form
		}
	}
	secret := r.Header.Get("X-IDENTITY-HEADER")
	if secret == "" {
		secret = r.Header.Get("secret") // Azure ML shape
	}
	if secret == "" {
		if !strings.EqualFold(r.Header.Get("Metadata"), "true") {
			return miError(w, http.StatusBadRequest, "invalid_request", "Required metadata header not specified")
		}
		return miError(w, http.StatusUnauthorized, "unauthorized_client",
			"No managed identity secret: send X-IDENTITY-HEADER, or call through `cvault guest imds-proxy`")
	}
	sel := identity.IdentitySelector{ClientID: first(q, "client_id", "clientid"), ObjectID: first(q, "object_id", "principal_id"),
		ResourceID: first(q, "msi_res_id", "mi_res_id")}
	resource := q.Get("resource")
	if resource == "" {
		return miError(w, http.StatusBadRequest, "invalid_request", "Required query variable 'resource' is missing")
	}
	tok, err := h.svc.ManagedIdentityToken(r.Context(), secret, sel, resource)
	switch {
	case errors.Is(err, identity.ErrUnauthorized):
		return miError(w, http.StatusUnauthorized, "unauthorized_client", "The managed identity secret is not valid")
	case errors.Is(err, identity.ErrNotFound):
		return miError(w, http.StatusBadRequest, "invalid_request", "Identity not found")
	case errors.Is(err, identity.ErrInvalid):
		return miError(w, http.StatusBadRequest, "invalid_request", strings.TrimPrefix(err.Error(), identity.ErrInvalid.Error()+": "))
	case err != nil:
		return err
	}
	life := int(tok.Lifetime.Seconds())
	w.Header().Set("Cache-Control", "no-store, no-cache")
	// IMDS returns the numbers as strings; clients parse either.
	azure.WriteJSON(w, http.StatusOK, map[string]string{
		"access_token": tok.AccessToken, "refresh_token": "", "expires_in": strconv.Itoa(life), "ext_expires_in": strconv.Itoa(life),
		"expires_on": strconv.FormatInt(tok.ExpiresOn.Unix(), 10), "not_before": strconv.FormatInt(tok.NotBefore.Unix(), 10),
		"resource": tok.Resource, "token_type": "Bearer", "client_id": tok.ClientID,
	})
	return nil
}

func first(q url.Values, names ...string) string {
	for _, n := range names {
		if v := q.Get(n); v != "" {
			return v
		}
	}
	return ""
}

// miError writes IMDS's error shape.
func miError(w http.ResponseWriter, status int, code, desc string) error {
	azure.WriteJSON(w, status, map[string]string{"error": code, "error_description": desc})
	return nil
}
