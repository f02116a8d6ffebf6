package identity

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// JWTBearer is the client_assertion_type of a JWT client assertion.
const JWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// OAuthError is a token-endpoint failure as Entra reports it:
// {"error": Code, "error_description": "AADSTS<AADSTS>: <Description>", "error_codes": [AADSTS]}.
type OAuthError struct {
	Status      int
	Code        string // OAuth error: invalid_client, invalid_request, …
	AADSTS      int
	Description string
	Err         error // internal cause, never sent
}

func (e *OAuthError) Error() string {
	s := fmt.Sprintf("%s AADSTS%d: %s", e.Code, e.AADSTS, e.Description)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *OAuthError) Unwrap() error { return e.Err }

func oauthErr(status int, code string, aadsts int, format string, args ...any) *OAuthError {
	return &OAuthError{Status: status, Code: code, AADSTS: aadsts, Description: fmt.Sprintf(format, args...)}
}

// AADSTS codes cvault produces (learn.microsoft.com/entra/identity-platform/reference-error-codes).
const (
	CodeTenantNotFound        = 90002
	CodeAppNotFound           = 700016
	CodeInvalidSecret         = 7000215
	CodeExpiredSecret         = 7000222
	CodeMissingCredential     = 7000218
	CodeAssertionSignature    = 700027
	CodeAssertionTime         = 700024
	CodeNoMatchingFederated   = 70021
	CodeInvalidScope          = 70011
	CodeUnsupportedGrant      = 70003
	CodeMissingParameter      = 900144
	CodeMalformedJWT          = 50027
	CodeExternalOIDCFailed    = 50166
	CodeInvalidAssertionType  = 700023
	CodeApplicationNotAllowed = 700019
)

// TokenRequest is a client-credentials token request.
type TokenRequest struct {
	GrantType           string
	ClientID            string
	ClientSecret        string
	ClientAssertionType string
	ClientAssertion     string
	Scope               string
}

// oidcScopes are appended by MSAL to every request and ignored here.
var oidcScopes = []string{"openid", "offline_access", "profile", "email"}

// ParseScope returns the resource of a client-credentials scope
// ("{resource}/.default", ignoring MSAL's OIDC scopes).
func ParseScope(scope string) (string, error) {
	var res []string
	for f := range strings.FieldsSeq(scope) {
		if !slices.Contains(oidcScopes, f) {
			res = append(res, f)
		}
	}
	if len(res) == 0 {
		return "", oauthErr(http.StatusBadRequest, "invalid_scope", CodeInvalidScope,
			"The provided request must include a 'scope' input parameter.")
	}
	r, ok := strings.CutSuffix(res[0], "/.default")
	if len(res) != 1 || !ok || r == "" {
		return "", oauthErr(http.StatusBadRequest, "invalid_scope", CodeInvalidScope,
			"The provided value for the input parameter 'scope' is not valid. The scope %s is not valid. "+
				"The client credentials flow requires exactly one scope of the form {resource}/.default.", scope)
	}
	return r, nil
}

// principalFor is who a client_id authenticates as in a tenant: an app's
// service principal there, or a user-assigned managed identity of that tenant.
type principalFor struct {
	objectID, appID, miResourceID string
	app                           *appRecord
	fics                          []FederatedCredential
}

// Token handles POST /{tenant}/oauth2/v2.0/token for the client-credentials
// grant with a client secret or a JWT client assertion (federated
// credential). Failures are *OAuthError with Entra's AADSTS codes.
func (s *Service) Token(ctx context.Context, tenant string, req TokenRequest) (*Token, error) {
	tenant = strings.ToLower(tenant)
	if _, err := s.GetTenant(ctx, tenant); err != nil {
		return nil, s.tenantError(tenant, err)
	}
	if req.GrantType != "client_credentials" {
		return nil, oauthErr(http.StatusBadRequest, "unsupported_grant_type", CodeUnsupportedGrant,
			"The provided grant type '%s' is not supported. cvault supports client_credentials.", req.GrantType)
	}
	if req.ClientID == "" {
		return nil, oauthErr(http.StatusBadRequest, "invalid_request", CodeMissingParameter,
			"The request body must contain the following parameter: 'client_id'.")
	}
	resource, err := ParseScope(req.Scope)
	if err != nil {
		return nil, err
	}
	who, err := s.clientPrincipal(ctx, tenant, req.ClientID)
	if err != nil {
		return nil, err
	}
	acr := "1"
	switch {
	case req.ClientAssertion != "":
		if req.ClientAssertionType != JWTBearer {
			return nil, oauthErr(http.StatusBadRequest, "invalid_request", CodeInvalidAssertionType,
				"Client assertion type must be '%s'.", JWTBearer)
		}
		if err := s.ValidateAssertion(ctx, req.ClientAssertion, who.fics); err != nil {
			return nil, err
		}
		acr = "2"
	case req.ClientSecret != "":
		if who.app == nil {
			return nil, oauthErr(http.StatusUnauthorized, "invalid_client", CodeInvalidSecret,
				"Invalid client secret provided for '%s': managed identities have no client secrets.", req.ClientID)
		}
		if err := s.checkSecret(who.app, req.ClientSecret); err != nil {
			return nil, err
		}
	default:
		return nil, oauthErr(http.StatusUnauthorized, "invalid_client", CodeMissingCredential,
			"The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
	}
	return s.issue(ctx, tenant, Claims{Audience: jwt.Audience{resource}, ObjectID: who.objectID, Subject: who.objectID,
		AzP: who.appID, AppID: who.appID, AzPACR: acr, AppIDACR: acr, MIResourceID: who.miResourceID})
}

func (s *Service) tenantError(tenant string, err error) error {
	if errors.Is(err, ErrNotFound) {
		return oauthErr(http.StatusBadRequest, "invalid_request", CodeTenantNotFound,
			"Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant)
	}
	return err
}

// clientPrincipal resolves client_id in tenant: the app's service principal
// there (AADSTS700016 when the app is unknown or not instantiated in the
// tenant), or a managed identity of the tenant (its FICs only).
func (s *Service) clientPrincipal(ctx context.Context, tenant, clientID string) (*principalFor, error) {
	notFound := oauthErr(http.StatusBadRequest, "unauthorized_client", CodeAppNotFound,
		"Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been "+
			"installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your "+
			"authentication request to the wrong tenant.", clientID, tenant)
	app, err := s.appByAppID(ctx, clientID)
	if errors.Is(err, ErrNotFound) {
		mi, merr := s.miByClientID(ctx, clientID)
		if errors.Is(merr, ErrNotFound) || (merr == nil && mi.TenantID != tenant) {
			return nil, notFound
		}
		if merr != nil {
			return nil, merr
		}
		return &principalFor{objectID: mi.PrincipalID, appID: mi.ClientID, miResourceID: mi.ID, fics: mi.FederatedCredentials}, nil
	}
	if err != nil {
		return nil, err
	}
	var spID string
	_, err = getJSON(ctx, s.cfg.Store, kindSPApp, appKey(tenant, app.AppID), &spID)
	if errors.Is(err, ErrNotFound) {
		notFound.Err = errors.New("no service principal in the tenant")
		return nil, notFound
	}
	if err != nil {
		return nil, err
	}
	return &principalFor{objectID: spID, appID: app.AppID, app: app, fics: app.FederatedCredentials}, nil
}

// checkSecret compares secret with every client secret of app (each in
// constant time); a match on an expired secret is AADSTS7000222.
func (s *Service) checkSecret(app *appRecord, secret string) error {
	now := s.now()
	expired := false
	for _, pc := range app.PasswordCredentials {
		h, ok := app.Secrets[pc.KeyID]
		if !ok || !h.matches(secret) {
			continue
		}
		if now.Before(pc.Start.Add(-clockSkew)) || !now.Before(pc.End) {
			expired = true
			continue
		}
		return nil
	}
	if expired {
		return oauthErr(http.StatusUnauthorized, "invalid_client", CodeExpiredSecret,
			"The provided client secret keys for app '%s' are expired. Visit the Azure portal to create new keys for your app, "+
				"or consider using certificate credentials for added security.", app.AppID)
	}
	return oauthErr(http.StatusUnauthorized, "invalid_client", CodeInvalidSecret,
		"Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the "+
			"client secret ID, for a secret added to app '%s'.", app.AppID)
}

// ValidateAssertion checks a JWT client assertion against federated
// credentials: a credential must match iss and sub exactly and contain one
// of the assertion's audiences (AADSTS70021); the signature must verify
// with the issuer's keys — cvault's own tenants' keys or an external OIDC
// issuer's published JWKS (AADSTS700027); and now must lie within
// [nbf, exp] give or take clockSkew (AADSTS700024).
func (s *Service) ValidateAssertion(ctx context.Context, raw string, fics []FederatedCredential) error {
	tok, c, err := ParseToken(raw)
	if err != nil {
		return &OAuthError{Status: http.StatusBadRequest, Code: "invalid_request", AADSTS: CodeMalformedJWT,
			Description: "JWT token is invalid or malformed.", Err: err}
	}
	if matchFIC(fics, c) == nil {
		return oauthErr(http.StatusBadRequest, "invalid_request", CodeNoMatchingFederated,
			"No matching federated identity record found for presented assertion. Assertion Issuer: '%s'. "+
				"Assertion Subject: '%s'. Assertion Audience: '%s'.", c.Issuer, c.Subject, strings.Join(c.Audience, ","))
	}
	if _, local := s.localTenant(c.Issuer); local {
		if err := s.verifyLocal(ctx, tok, &c); err != nil {
			return &OAuthError{Status: http.StatusUnauthorized, Code: "invalid_client", AADSTS: CodeAssertionSignature,
				Description: "Client assertion failed signature validation.", Err: err}
		}
	} else {
		key, err := s.externalKey(ctx, c.Issuer, tok.Headers[0].KeyID)
		if err != nil {
			return &OAuthError{Status: http.StatusUnauthorized, Code: "invalid_client", AADSTS: CodeExternalOIDCFailed,
				Description: fmt.Sprintf("Request to External OIDC endpoint failed for issuer '%s'.", c.Issuer), Err: err}
		}
		var verified Claims
		if err := tok.Claims(key, &verified); err != nil {
			return &OAuthError{Status: http.StatusUnauthorized, Code: "invalid_client", AADSTS: CodeAssertionSignature,
				Description: "Client assertion failed signature validation.", Err: err}
		}
		c = verified
	}
	now := s.now()
	if c.Expiry == nil || !now.Before(c.Expiry.Time().Add(clockSkew)) ||
		(c.NotBefore != nil && now.Add(clockSkew).Before(c.NotBefore.Time())) {
		return oauthErr(http.StatusUnauthorized, "invalid_client", CodeAssertionTime,
			"Client assertion is not within its valid time range. Current time: %s, assertion valid from %s, expiry time of assertion %s.",
			now.Format(time.RFC3339), fmtDate(c.NotBefore), fmtDate(c.Expiry))
	}
	return nil
}

func fmtDate(d *jwt.NumericDate) string {
	if d == nil {
		return "(none)"
	}
	return d.Time().UTC().Format(time.RFC3339)
}

func matchFIC(fics []FederatedCredential, c Claims) *FederatedCredential {
	for i, f := range fics {
		if f.Issuer != c.Issuer || f.Subject != c.Subject {
			continue
		}
		for _, a := range f.Audiences {
			if c.Audience.Contains(a) {
				return &fics[i]
			}
		}
	}
	return nil
}

// externalIssuer caches an external OIDC issuer's keys.
type externalIssuer struct {
	keys    jose.JSONWebKeySet
	fetched time.Time
}

const externalKeyTTL = time.Hour

// externalKey returns kid from iss's JWKS, found via its discovery
// document; refetched after externalKeyTTL or (at most once a minute)
// when kid is unknown.
func (s *Service) externalKey(ctx context.Context, iss, kid string) (crypto.PublicKey, error) {
	now := s.now()
	s.extMu.Lock()
	e := s.extIss[iss]
	s.extMu.Unlock()
	if e != nil && now.Sub(e.fetched) < externalKeyTTL {
		if k := e.keys.Key(kid); len(k) > 0 {
			return k[0].Key, nil
		}
		if now.Sub(e.fetched) < time.Minute {
			return nil, errUnknownKey
		}
	}
	keys, err := s.fetchIssuerKeys(ctx, iss)
	if err != nil {
		return nil, err
	}
	s.extMu.Lock()
	s.extIss[iss] = &externalIssuer{keys: keys, fetched: now}
	s.extMu.Unlock()
	if k := keys.Key(kid); len(k) > 0 {
		return k[0].Key, nil
	}
	return nil, errUnknownKey
}

func (s *Service) fetchIssuerKeys(ctx context.Context, iss string) (jose.JSONWebKeySet, error) {
	var keys jose.JSONWebKeySet
	u, err := url.Parse(iss)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return keys, fmt.Errorf("issuer %q is not an https URL", iss)
	}
	var meta struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := s.getJSONURL(ctx, strings.TrimRight(iss, "/")+"/.well-known/openid-configuration", &meta); err != nil {
		return keys, err
	}
	if meta.Issuer != iss || !strings.HasPrefix(meta.JWKSURI, "https://") {
		return keys, fmt.Errorf("issuer %q: discovery document names issuer %q and jwks_uri %q", iss, meta.Issuer, meta.JWKSURI)
	}
	if err := s.getJSONURL(ctx, meta.JWKSURI, &keys); err != nil {
		return keys, err
	}
	return keys, nil
}

func (s *Service) getJSONURL(ctx context.Context, u string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch %s: status %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v); err != nil {
		return fmt.Errorf("fetch %s: %w", u, err)
	}
	return nil
}
