// Package kvhttp serves the key vault over HTTP: Microsoft.KeyVault/vaults
// as ARM resources in armkeyvault's shapes, and the keys data plane on
// vault hosts ({vault}.{vault-domain}, or the /vaults/{vault}/… alias) in
// azkeys' shapes (wire/keyvault-release-attestation.md §1 and §5).
//
// Data-plane callers must hold a token of the vault's tenant: a token of
// another tenant gets 401 with the challenge naming the vault's tenant,
// which is what Azure answers (AKV10032 invalid issuer), so a client
// re-acquires a token from the right tenant if it can. A vault with
// enableRbacAuthorization asks the Authorizer for the operation's data
// action at {vaultID}/keys/{name}; otherwise its access policies decide
// (authz.CheckAccessPolicy). Denials are 403 Forbidden with innererror
// ForbiddenByRbac or ForbiddenByPolicy.
package kvhttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/cvault/cvault/internal/arm"
	"github.com/cvault/cvault/internal/arm/armhttp"
	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/keyops"
	"github.com/cvault/cvault/internal/keyvault"
	"github.com/cvault/cvault/internal/release"
	"github.com/cvault/cvault/internal/route"
	"github.com/cvault/cvault/internal/store"
)

// Authorizer decides whether a principal may perform an action or data
// action on a scope (implemented by authz). Any error denies.
type Authorizer interface {
	Check(ctx context.Context, p *authn.Principal, action, scope string) error
}

// Config wires the handlers.
type Config struct {
	Service    *keyvault.Service
	ARM        *arm.Service
	Authorizer Authorizer
	// BaseURL is the server's public base URL; VaultDomain the parent
	// domain of vault hosts. Vault URIs are https://{vault}.{domain}[:port]
	// with the base URL's port.
	BaseURL     *url.URL
	VaultDomain string
	// Release serves Secure Key Release; nil leaves the release routes out.
	Release *release.Service
}

// DataAPIVersions are the Key Vault data-plane versions accepted: 7.0 to
// 7.6 and the dated versions azkeys ≥ 1.5 sends.
var DataAPIVersions = azure.Versions("7.0", "7.1", "7.2", "7.3-preview", "7.3", "7.4-preview.1", "7.4",
	"7.5-preview.1", "7.5", "7.6-preview.1", "7.6-preview.2", "7.6").AndDatesFrom("2025-07-01")

// ARMAPIVersions are the Microsoft.KeyVault resource-provider versions
// accepted (armkeyvault v1.5.0 sends 2024-11-01; seed templates use
// 2021-11-01-preview and older).
var ARMAPIVersions = azure.Versions("2015-06-01", "2016-10-01", "2018-02-14", "2019-09-01", "2020-04-01-preview",
	"2021-04-01-preview", "2021-06-01-preview", "2021-10-01", "2021-11-01-preview", "2022-02-01-preview",
	"2022-07-01", "2022-11-01", "2023-02-01", "2023-07-01", "2023-08-01-preview", "2024-04-01-preview",
	"2024-11-01", "2024-12-01-preview", "2025-05-01")

type handlers struct {
	svc      *keyvault.Service
	arm      *arm.Service
	az       Authorizer
	base     string
	domain   string
	port     string
	resource string
	rel      *release.Service
}

// VaultURI is the URI of a vault: https://{name}.{domain}[:port].
func VaultURI(base *url.URL, domain, name string) string {
	u := "https://" + strings.ToLower(name) + "." + domain
	if p := base.Port(); p != "" && p != "443" {
		u += ":" + p
	}
	return u
}

// Routes returns the ARM and data-plane routes of the key vault.
func Routes(cfg Config) []route.Route {
	h := &handlers{svc: cfg.Service, arm: cfg.ARM, az: cfg.Authorizer, base: strings.TrimRight(cfg.BaseURL.String(), "/"),
		domain: cfg.VaultDomain, port: cfg.BaseURL.Port(), rel: cfg.Release}
	// The challenge resource, as server.VaultResource makes it.
	h.resource = "https://" + cfg.VaultDomain
	if h.port != "" && h.port != "443" {
		h.resource += ":" + h.port
	}
	return append(append(h.dataRoutes(), h.releaseRoutes()...), h.armRoutes()...)
}

func (h *handlers) vaultURI(name string) string {
	return VaultURI(&url.URL{Host: "x:" + h.port}, h.domain, name)
}

// principal returns the request's authenticated caller.
func principal(r *http.Request) (*authn.Principal, error) {
	p, ok := authn.FromContext(r.Context())
	if !ok {
		return nil, azure.Errorf(http.StatusUnauthorized, azure.CodeUnauthorized, "AKV10000: Request is missing a Bearer or PoP token.")
	}
	return p, nil
}

// mapErr turns keyvault, keyops and store errors into Key Vault's data-plane errors.
func mapErr(err error) error {
	var ae *azure.Error
	var ke *keyvault.Error
	msg := func() string {
		if errors.As(err, &ke) {
			return ke.Msg
		}
		return ""
	}
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, keyvault.ErrVaultNotFound):
		return azure.Errorf(http.StatusNotFound, "VaultNotFound", "%s", msg()).Wrap(err)
	case errors.Is(err, keyvault.ErrKeyNotFound):
		return azure.Errorf(http.StatusNotFound, "KeyNotFound", "%s", msg()).Wrap(err)
	case errors.Is(err, keyvault.ErrKeyDeleted), errors.Is(err, keyvault.ErrConflict), errors.Is(err, keyvault.ErrKeyExists):
		return azure.Errorf(http.StatusConflict, azure.CodeConflict, "%s", msg()).Wrap(err)
	case errors.Is(err, keyvault.ErrKeyDisabled):
		return azure.Errorf(http.StatusForbidden, azure.CodeForbidden, "%s", msg()).WithInner("KeyDisabled").Wrap(err)
	case errors.Is(err, keyvault.ErrKeyNotYetValid):
		return azure.Errorf(http.StatusForbidden, azure.CodeForbidden, "%s", msg()).WithInner("KeyNotYetValid").Wrap(err)
	case errors.Is(err, keyvault.ErrKeyExpired):
		return azure.Errorf(http.StatusForbidden, azure.CodeForbidden, "%s", msg()).WithInner("KeyExpired").Wrap(err)
	case errors.Is(err, keyvault.ErrPurgeProtected):
		return azure.Errorf(http.StatusForbidden, azure.CodeForbidden, "%s", msg()).Wrap(err)
	case errors.Is(err, keyvault.ErrBadParameter), errors.Is(err, keyvault.ErrOpNotPermitted), errors.Is(err, keyvault.ErrTooManyVersions):
		return azure.Errorf(http.StatusBadRequest, azure.CodeBadParameter, "%s", msg()).Wrap(err)
	case errors.Is(err, keyops.ErrUnsupportedAlgorithm):
		return azure.Errorf(http.StatusBadRequest, azure.CodeBadParameter, "The algorithm is not supported for this operation.").Wrap(err)
	case errors.Is(err, keyops.ErrAlgorithmMismatch):
		return azure.Errorf(http.StatusBadRequest, azure.CodeBadParameter, "The algorithm is not valid for this key type, size or curve.").Wrap(err)
	case errors.Is(err, keyops.ErrBadDigestLength):
		return azure.Errorf(http.StatusBadRequest, azure.CodeBadParameter, "The digest length does not match the algorithm.").Wrap(err)
	case errors.Is(err, keyops.ErrInvalidInput):
		return azure.Errorf(http.StatusBadRequest, azure.CodeBadParameter, "The value, iv, aad or tag has a length the algorithm cannot take.").Wrap(err)
	case errors.Is(err, keyops.ErrDecryption):
		return azure.Errorf(http.StatusBadRequest, azure.CodeBadParameter, "Decryption failed.").Wrap(err)
	case errors.Is(err, store.ErrConflict):
		return azure.Errorf(http.StatusConflict, azure.CodeConflict, "The key was changed concurrently; retry.").Wrap(err)
	}
	return err
}

// mapARMErr turns service errors into ARM's.
func mapARMErr(err error) error {
	var ae *azure.Error
	var ke *keyvault.Error
	msg := ""
	if errors.As(err, &ke) {
		msg = ke.Msg
	}
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, keyvault.ErrVaultNotFound):
		return azure.Errorf(http.StatusNotFound, azure.CodeResourceNotFound, "%s", msg).Wrap(err)
	case errors.Is(err, keyvault.ErrInvalidName):
		return azure.Errorf(http.StatusBadRequest, "VaultNameNotValid", "%s", msg).Wrap(err)
	case errors.Is(err, keyvault.ErrVaultNameTaken):
		return azure.Errorf(http.StatusConflict, "VaultAlreadyExists", "%s", msg).Wrap(err)
	case errors.Is(err, keyvault.ErrVaultDeleted):
		return azure.Errorf(http.StatusConflict, "ConflictError", "%s", msg).Wrap(err)
	case errors.Is(err, keyvault.ErrInvalidVault):
		return azure.Errorf(http.StatusBadRequest, azure.CodeBadRequest, "%s", msg).Wrap(err)
	case errors.Is(err, keyvault.ErrPurgeProtected):
		return azure.Errorf(http.StatusConflict, "VaultPurgeProtected", "%s", msg).Wrap(err)
	case errors.Is(err, arm.ErrNotFound):
		return azure.Errorf(http.StatusNotFound, azure.CodeResourceGroupNotFound, "The resource group was not found.").Wrap(err)
	case errors.Is(err, store.ErrConflict):
		return azure.Errorf(http.StatusConflict, azure.CodeConflict, "The vault was changed concurrently; retry.").Wrap(err)
	}
	return armhttp.MapError(err)
}

// issuerOf renders the caller as Key Vault's messages name it.
func callerOf(p *authn.Principal) string {
	return fmt.Sprintf("appid=%s;oid=%s;iss=%s", p.AppID, p.ObjectID, p.Issuer)
}
