package kvhttp

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/keyvault"
	"github.com/cvault/cvault/internal/release"
	"github.com/cvault/cvault/internal/route"
)

// releaseRoutes serve Secure Key Release (wire §2) and cvault's read of the
// release audit log, which Azure does not have (GET /keys/{name}/releaseaudit).
func (h *handlers) releaseRoutes() []route.Route {
	if h.rel == nil {
		return nil
	}
	r := func(method, pattern string, fn route.HandlerFunc) route.Route {
		return route.Route{Method: method, Pattern: pattern, Host: route.Vault, Auth: route.Bearer, Service: route.KeyVault,
			APIVersions: DataAPIVersions, Handler: fn}
	}
	return []route.Route{
		r("POST", "/keys/{name}/release", h.release),
		r("POST", "/keys/{name}/{version}/release", h.release),
		r("GET", "/keys/{name}/releaseaudit", h.releaseAudit),
	}
}

type releaseBody struct {
	Target string `json:"target"`
	Nonce  string `json:"nonce"`
	Enc    string `json:"enc"`
}

func callerOfPrincipal(r *http.Request) release.Caller {
	p, ok := authn.FromContext(r.Context())
	if !ok {
		return release.Caller{}
	}
	return release.Caller{TenantID: p.TenantID, ObjectID: p.ObjectID, AppID: p.AppID}
}

func (h *handlers) release(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	name, version := r.PathValue("name"), r.PathValue("version")
	vault, err := h.begin(w, r, name, keyvault.OpRelease)
	if err != nil {
		// Refused callers are audited too; a 401 (no or foreign token) is not an attempt.
		var ae *azure.Error
		if errors.As(err, &ae) && ae.Status == http.StatusForbidden {
			if rerr := h.rel.Record(ctx, release.AuditEntry{Vault: route.VaultName(ctx), Key: name, Version: version,
				Caller: callerOfPrincipal(r), Decision: release.DecisionRefused, Reason: ae.Message}); rerr != nil {
				return errors.Join(err, rerr)
			}
		}
		return err
	}
	apiVersion := r.URL.Query().Get("api-version")
	if !strings.HasPrefix(apiVersion, "20") && apiVersion < "7.3" {
		return azure.Errorf(http.StatusBadRequest, azure.CodeBadParameter,
			"AKV.SKR.1001: The exportable attribute is only supported with premium vaults and API version >= '7.3-preview'.")
	}
	var b releaseBody
	if err := decode(r, &b); err != nil {
		return err
	}
	res, err := h.rel.Release(ctx, release.Request{
		Vault: vault, VaultURI: h.vaultURI(vault.Name), Name: name, Version: version,
		RequestKID: h.kid(vault, name, version), APIVersion: apiVersion,
		Target: b.Target, Nonce: b.Nonce, Enc: b.Enc, Caller: callerOfPrincipal(r),
		Bundle: func(v *keyvault.Version, keyHSM []byte) any {
			out := h.bundle(vault, v)
			out.Key.KeyHSM = keyHSM
			if out.Tags == nil {
				out.Tags = map[string]string{}
			}
			return out
		},
	})
	if err != nil {
		return mapReleaseErr(err)
	}
	route.AddLogAttrs(ctx, slog.String("version", res.Version))
	azure.WriteJSON(w, http.StatusOK, struct {
		Value string `json:"value"`
	}{res.Value})
	return nil
}

// mapReleaseErr turns release refusals into Key Vault's: 403 Forbidden for
// anything about the attestation (unverifiable, untrusted, policy, replay),
// 400 BadParameter for malformed requests and non-exportable keys.
func mapReleaseErr(err error) error {
	var re *release.Error
	if !errors.As(err, &re) {
		return mapErr(err)
	}
	switch {
	case errors.Is(err, release.ErrBadRequest), errors.Is(err, release.ErrNotExportable):
		return azure.Errorf(http.StatusBadRequest, azure.CodeBadParameter, "%s", re.Msg).Wrap(err)
	case errors.Is(err, release.ErrPolicy):
		return azure.Errorf(http.StatusForbidden, azure.CodeForbidden, "%s", re.Msg).WithInner("ReleasePolicyNotSatisfied").Wrap(err)
	case errors.Is(err, release.ErrUntrustedAuthority):
		return azure.Errorf(http.StatusForbidden, azure.CodeForbidden, "%s", re.Msg).WithInner("UntrustedAttestationAuthority").Wrap(err)
	case errors.Is(err, release.ErrReplay):
		return azure.Errorf(http.StatusForbidden, azure.CodeForbidden, "%s", re.Msg).WithInner("AttestationTokenReplayed").Wrap(err)
	}
	return azure.Errorf(http.StatusForbidden, azure.CodeForbidden, "%s", re.Msg).WithInner("AttestationNotVerified").Wrap(err)
}

func (h *handlers) releaseAudit(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	vault, err := h.begin(w, r, name, keyvault.OpGet)
	if err != nil {
		return err
	}
	limit, err := azure.PageSize(r, "maxresults", 100, 1000)
	if err != nil {
		return err
	}
	after, err := azure.SkipToken(r)
	if err != nil {
		return err
	}
	entries, err := h.rel.Audit(r.Context(), vault.Name, name, after, limit)
	if err != nil {
		return err
	}
	next := ""
	if len(entries) == limit {
		next = entries[len(entries)-1].ID
	}
	out := azure.Page[release.AuditEntry]{Value: entries, NextLink: azure.NextLink(h.pageBase(r, vault), r, azure.EncodeSkipToken(next))}
	azure.WriteJSON(w, http.StatusOK, out)
	return nil
}
