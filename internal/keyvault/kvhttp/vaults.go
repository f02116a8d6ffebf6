package kvhttp

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/cvault/cvault/internal/arm"
	"github.com/cvault/cvault/internal/arm/armhttp"
	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/authz"
	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/keyvault"
	"github.com/cvault/cvault/internal/route"
)

// ARM actions of Microsoft.KeyVault.
const (
	actionVaultRead         = "Microsoft.KeyVault/vaults/read"
	actionVaultWrite        = "Microsoft.KeyVault/vaults/write"
	actionVaultDelete       = "Microsoft.KeyVault/vaults/delete"
	actionAccessPolicyWrite = "Microsoft.KeyVault/vaults/accessPolicies/write"
	actionDeletedVaultRead  = "Microsoft.KeyVault/deletedVaults/read"
	actionPurge             = "Microsoft.KeyVault/locations/deletedVaults/purge/action"
	actionCheckName         = "Microsoft.KeyVault/checkNameAvailability/read"
)

func (h *handlers) armRoutes() []route.Route {
	r := func(method, pattern string, fn route.HandlerFunc) route.Route {
		return route.Route{Method: method, Pattern: pattern, Auth: route.Bearer, Service: route.ARM, APIVersions: ARMAPIVersions, Handler: fn}
	}
	const (
		sub    = "/subscriptions/{subscriptionId}"
		prov   = sub + "/providers/Microsoft.KeyVault"
		vaults = sub + "/resourcegroups/{resourceGroupName}/providers/Microsoft.KeyVault/vaults"
	)
	return []route.Route{
		r("PUT", vaults+"/{vaultName}", h.putVault),
		r("PATCH", vaults+"/{vaultName}", h.patchVault),
		r("GET", vaults+"/{vaultName}", h.getVault),
		r("DELETE", vaults+"/{vaultName}", h.deleteVault),
		r("PUT", vaults+"/{vaultName}/accessPolicies/{operationKind}", h.updateAccessPolicies),
		r("GET", vaults, h.listVaults),
		r("GET", prov+"/vaults", h.listVaults),
		r("GET", prov+"/deletedVaults", h.listDeletedVaults),
		r("POST", prov+"/checkNameAvailability", h.checkNameAvailability),
		r("GET", prov+"/locations/{location}/deletedVaults/{vaultName}", h.getDeletedVault),
		r("POST", prov+"/locations/{location}/deletedVaults/{vaultName}/purge", h.purgeDeletedVault),
	}
}

type skuJSON struct {
	Family string `json:"family"`
	Name   string `json:"name"`
}

type vaultPropsJSON struct {
	TenantID                     *string              `json:"tenantId,omitempty"`
	SKU                          *skuJSON             `json:"sku,omitempty"`
	AccessPolicies               []authz.AccessPolicy `json:"accessPolicies"`
	VaultURI                     string               `json:"vaultUri,omitempty"`
	EnabledForDeployment         *bool                `json:"enabledForDeployment,omitempty"`
	EnabledForDiskEncryption     *bool                `json:"enabledForDiskEncryption,omitempty"`
	EnabledForTemplateDeployment *bool                `json:"enabledForTemplateDeployment,omitempty"`
	EnableSoftDelete             *bool                `json:"enableSoftDelete,omitempty"`
	SoftDeleteRetentionInDays    *int                 `json:"softDeleteRetentionInDays,omitempty"`
	EnableRBACAuthorization      *bool                `json:"enableRbacAuthorization,omitempty"`
	CreateMode                   *string              `json:"createMode,omitempty"`
	EnablePurgeProtection        *bool                `json:"enablePurgeProtection,omitempty"`
	PublicNetworkAccess          *string              `json:"publicNetworkAccess,omitempty"`
	ProvisioningState            string               `json:"provisioningState,omitempty"`
}

type vaultJSON struct {
	ID         string            `json:"id,omitempty"`
	Name       string            `json:"name,omitempty"`
	Type       string            `json:"type,omitempty"`
	Location   *string           `json:"location,omitempty"`
	Tags       map[string]string `json:"tags"`
	Properties *vaultPropsJSON   `json:"properties,omitempty"`
}

func ptr[T any](v T) *T { return &v }

func (h *handlers) vaultJSON(v *keyvault.Vault) vaultJSON {
	p := v.Properties
	aps := p.AccessPolicies
	if aps == nil {
		aps = []authz.AccessPolicy{}
	}
	tags := v.Tags
	if tags == nil {
		tags = map[string]string{}
	}
	props := &vaultPropsJSON{TenantID: ptr(p.TenantID), SKU: &skuJSON{Family: "A", Name: p.SKU}, AccessPolicies: aps,
		VaultURI: h.vaultURI(v.Name), EnabledForDeployment: ptr(p.EnabledForDeployment), EnabledForDiskEncryption: ptr(p.EnabledForDiskEncryption),
		EnabledForTemplateDeployment: ptr(p.EnabledForTemplateDeployment), EnableSoftDelete: ptr(true),
		SoftDeleteRetentionInDays: ptr(p.SoftDeleteRetentionInDays), EnableRBACAuthorization: ptr(p.EnableRBACAuthorization),
		PublicNetworkAccess: ptr(p.PublicNetworkAccess), ProvisioningState: "Succeeded"}
	if p.EnablePurgeProtection {
		props.EnablePurgeProtection = ptr(true)
	}
	return vaultJSON{ID: v.ID(), Name: v.Name, Type: "Microsoft.KeyVault/vaults", Location: ptr(v.Location), Tags: tags, Properties: props}
}

// subscription checks that the subscription exists in the caller's tenant
// (404 otherwise, so existence doesn't leak) and returns its tenant.
func (h *handlers) subscription(r *http.Request) (string, error) {
	id := r.PathValue("subscriptionId")
	sub, err := h.arm.Subscription(r.Context(), id)
	p, _ := authn.FromContext(r.Context())
	if errors.Is(err, arm.ErrNotFound) || (err == nil && (p == nil || !strings.EqualFold(sub.TenantID, p.TenantID))) {
		return "", azure.Errorf(http.StatusNotFound, azure.CodeSubscriptionNotFound, "The subscription '%s' could not be found.", id)
	}
	if err != nil {
		return "", err
	}
	return sub.TenantID, nil
}

func (h *handlers) vaultID(r *http.Request) string {
	return "/subscriptions/" + r.PathValue("subscriptionId") + "/resourceGroups/" + r.PathValue("resourceGroupName") +
		"/providers/Microsoft.KeyVault/vaults/" + r.PathValue("vaultName")
}

func (h *handlers) notFound(r *http.Request) error {
	return azure.Errorf(http.StatusNotFound, azure.CodeResourceNotFound, "The Resource 'Microsoft.KeyVault/vaults/%s' under resource group '%s' was not found.",
		r.PathValue("vaultName"), r.PathValue("resourceGroupName"))
}

// existing returns the vault of the URL, or nil when there is none.
func (h *handlers) existing(r *http.Request) (*keyvault.Vault, error) {
	v, err := h.svc.Vault(r.Context(), r.PathValue("subscriptionId"), r.PathValue("resourceGroupName"), r.PathValue("vaultName"))
	if errors.Is(err, keyvault.ErrVaultNotFound) {
		return nil, nil
	}
	return v, err
}

// found returns the vault of the URL, or ARM's 404 when there is none.
func (h *handlers) found(r *http.Request) (*keyvault.Vault, error) {
	v, err := h.existing(r)
	if err != nil {
		return nil, mapARMErr(err)
	}
	if v == nil {
		return nil, h.notFound(r)
	}
	return v, nil
}

// authorize checks the subscription (see subscription) and then the
// caller's right to action over scope; it returns the subscription's tenant.
func (h *handlers) authorize(r *http.Request, action, scope string) (string, error) {
	tenant, err := h.subscription(r)
	if err != nil {
		return "", err
	}
	if err := armhttp.Authorize(r, h.az, action, scope); err != nil {
		return "", err
	}
	return tenant, nil
}

// apply merges a PUT/PATCH body into v: fields the body leaves out keep
// their values.
func apply(v *keyvault.Vault, b *vaultJSON) error {
	if b.Tags != nil {
		v.Tags = b.Tags
	}
	bp := b.Properties
	if bp == nil {
		return nil
	}
	p := &v.Properties
	if bp.TenantID != nil {
		p.TenantID = *bp.TenantID
	}
	if bp.SKU != nil {
		if bp.SKU.Family != "" && !strings.EqualFold(bp.SKU.Family, "A") {
			return azure.Errorf(http.StatusBadRequest, azure.CodeBadRequest, "sku.family must be 'A'.")
		}
		p.SKU = bp.SKU.Name
	}
	if bp.AccessPolicies != nil {
		p.AccessPolicies = bp.AccessPolicies
	}
	set := func(dst *bool, src *bool) {
		if src != nil {
			*dst = *src
		}
	}
	set(&p.EnabledForDeployment, bp.EnabledForDeployment)
	set(&p.EnabledForDiskEncryption, bp.EnabledForDiskEncryption)
	set(&p.EnabledForTemplateDeployment, bp.EnabledForTemplateDeployment)
	set(&p.EnableRBACAuthorization, bp.EnableRBACAuthorization)
	set(&p.EnablePurgeProtection, bp.EnablePurgeProtection)
	if bp.EnableSoftDelete != nil && !*bp.EnableSoftDelete {
		return azure.Errorf(http.StatusBadRequest, azure.CodeBadRequest, `The property "enableSoftDelete" cannot be set to false; soft delete is always on.`)
	}
	if bp.SoftDeleteRetentionInDays != nil {
		p.SoftDeleteRetentionInDays = *bp.SoftDeleteRetentionInDays
	}
	if bp.PublicNetworkAccess != nil {
		p.PublicNetworkAccess = *bp.PublicNetworkAccess
	}
	return nil
}

func (h *handlers) putVault(w http.ResponseWriter, r *http.Request) error {
	tenant, err := h.authorize(r, actionVaultWrite, h.vaultID(r))
	if err != nil {
		return err
	}
	var b vaultJSON
	if err := azure.DecodeJSON(r, 0, azure.CodeInvalidRequestContent, false, &b); err != nil {
		return err
	}
	if b.Name != "" && !strings.EqualFold(b.Name, r.PathValue("vaultName")) {
		return azure.Errorf(http.StatusBadRequest, azure.CodeBadRequest, "The name in the request body '%s' does not match the vault '%s' in the URL.", b.Name, r.PathValue("vaultName"))
	}
	sub, rg, name := r.PathValue("subscriptionId"), r.PathValue("resourceGroupName"), r.PathValue("vaultName")
	if b.Properties != nil && b.Properties.CreateMode != nil && strings.EqualFold(*b.Properties.CreateMode, "recover") {
		v, err := h.svc.RecoverVault(r.Context(), sub, rg, name)
		if err != nil {
			return mapARMErr(err)
		}
		azure.WriteJSON(w, http.StatusOK, h.vaultJSON(v))
		return nil
	}
	prev, err := h.existing(r)
	if err != nil {
		return mapARMErr(err)
	}
	v := keyvault.Vault{Subscription: sub, ResourceGroup: rg, Name: name}
	if prev != nil {
		v = *prev
	} else {
		if b.Properties == nil || b.Properties.SKU == nil || b.Properties.TenantID == nil {
			return azure.Errorf(http.StatusBadRequest, azure.CodeBadRequest, "properties.sku and properties.tenantId are required to create a vault.")
		}
	}
	if b.Location == nil || *b.Location == "" {
		return azure.Errorf(http.StatusBadRequest, "LocationRequired", "The location property is required for this definition.")
	}
	v.Location = *b.Location
	if prev != nil && arm.NormalizeLocation(*b.Location) != arm.NormalizeLocation(prev.Location) {
		return azure.Errorf(http.StatusBadRequest, azure.CodeBadRequest, "The location of vault '%s' cannot change from '%s'.", prev.Name, prev.Location)
	}
	if prev != nil {
		v.Location = prev.Location
	}
	if err := apply(&v, &b); err != nil {
		return err
	}
	out, created, err := h.svc.PutVault(r.Context(), v, tenant)
	if err != nil {
		return mapARMErr(err)
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	azure.WriteJSON(w, status, h.vaultJSON(&out))
	return nil
}

func (h *handlers) patchVault(w http.ResponseWriter, r *http.Request) error {
	tenant, err := h.authorize(r, actionVaultWrite, h.vaultID(r))
	if err != nil {
		return err
	}
	var b vaultJSON
	if err := azure.DecodeJSON(r, 0, azure.CodeInvalidRequestContent, false, &b); err != nil {
		return err
	}
	prev, err := h.found(r)
	if err != nil {
		return err
	}
	v := *prev
	if err := apply(&v, &b); err != nil {
		return err
	}
	out, _, err := h.svc.PutVault(r.Context(), v, tenant)
	if err != nil {
		return mapARMErr(err)
	}
	azure.WriteJSON(w, http.StatusOK, h.vaultJSON(&out))
	return nil
}

func (h *handlers) getVault(w http.ResponseWriter, r *http.Request) error {
	if _, err := h.authorize(r, actionVaultRead, h.vaultID(r)); err != nil {
		return err
	}
	v, err := h.found(r)
	if err != nil {
		return err
	}
	azure.WriteJSON(w, http.StatusOK, h.vaultJSON(v))
	return nil
}

func (h *handlers) deleteVault(w http.ResponseWriter, r *http.Request) error {
	if _, err := h.authorize(r, actionVaultDelete, h.vaultID(r)); err != nil {
		return err
	}
	err := h.svc.DeleteVault(r.Context(), r.PathValue("subscriptionId"), r.PathValue("resourceGroupName"), r.PathValue("vaultName"))
	if errors.Is(err, keyvault.ErrVaultNotFound) {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if err != nil {
		return mapARMErr(err)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (h *handlers) listVaults(w http.ResponseWriter, r *http.Request) error {
	if _, err := h.subscription(r); err != nil {
		return err
	}
	sub, rg := r.PathValue("subscriptionId"), r.PathValue("resourceGroupName")
	if rg != "" {
		if err := h.arm.ResourceGroupExists(r.Context(), sub, rg); err != nil {
			return azure.Errorf(http.StatusNotFound, azure.CodeResourceGroupNotFound, "Resource group '%s' could not be found.", rg)
		}
	}
	top, err := azure.PageSize(r, "$top", maxVaultPage, maxVaultPage)
	if err != nil {
		return err
	}
	after, err := azure.SkipToken(r)
	if err != nil {
		return err
	}
	vs, next, err := h.svc.VaultPage(r.Context(), sub, rg, after, top)
	if err != nil {
		return mapARMErr(err)
	}
	// Vaults the caller may not read are left out of their page; the
	// nextLink still follows the store order, so paging stays stable.
	p, _ := authn.FromContext(r.Context())
	out := azure.Page[vaultJSON]{Value: []vaultJSON{}, NextLink: azure.NextLink(h.base, r, azure.EncodeSkipToken(next))}
	for i := range vs {
		if h.az.Check(r.Context(), p, actionVaultRead, vs[i].ID()) == nil {
			out.Value = append(out.Value, h.vaultJSON(&vs[i]))
		}
	}
	azure.WriteJSON(w, http.StatusOK, out)
	return nil
}

// maxVaultPage is the largest (and default) $top of a vault list.
const maxVaultPage = 1000

type checkNameJSON struct {
	Name *string `json:"name"`
	Type *string `json:"type"`
}

type checkNameResultJSON struct {
	NameAvailable bool   `json:"nameAvailable"`
	Reason        string `json:"reason,omitempty"`
	Message       string `json:"message,omitempty"`
}

// checkNameAvailability serves POST …/providers/Microsoft.KeyVault/checkNameAvailability.
func (h *handlers) checkNameAvailability(w http.ResponseWriter, r *http.Request) error {
	sub := r.PathValue("subscriptionId")
	if _, err := h.authorize(r, actionCheckName, "/subscriptions/"+sub); err != nil {
		return err
	}
	var b checkNameJSON
	if err := azure.DecodeJSON(r, 0, azure.CodeInvalidRequestContent, false, &b); err != nil {
		return err
	}
	if b.Name == nil {
		return azure.Errorf(http.StatusBadRequest, azure.CodeBadRequest, "The vault name (name) is required.")
	}
	if b.Type != nil && !strings.EqualFold(*b.Type, "Microsoft.KeyVault/vaults") {
		return azure.Errorf(http.StatusBadRequest, azure.CodeBadRequest, "The resource type '%s' is not Microsoft.KeyVault/vaults.", *b.Type)
	}
	out := checkNameResultJSON{NameAvailable: true}
	err := h.svc.CheckVaultName(r.Context(), *b.Name)
	var ke *keyvault.Error
	switch {
	case err == nil:
	case errors.Is(err, keyvault.ErrInvalidName) && errors.As(err, &ke):
		out = checkNameResultJSON{Reason: "AccountNameInvalid", Message: ke.Msg}
	case errors.Is(err, keyvault.ErrVaultNameTaken) && errors.As(err, &ke):
		out = checkNameResultJSON{Reason: "AlreadyExists", Message: ke.Msg}
	default:
		return mapARMErr(err)
	}
	azure.WriteJSON(w, http.StatusOK, out)
	return nil
}

type deletedVaultJSON struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Properties struct {
		VaultID                string            `json:"vaultId"`
		Location               string            `json:"location"`
		DeletionDate           time.Time         `json:"deletionDate"`
		ScheduledPurgeDate     time.Time         `json:"scheduledPurgeDate"`
		Tags                   map[string]string `json:"tags,omitempty"`
		PurgeProtectionEnabled bool              `json:"purgeProtectionEnabled"`
	} `json:"properties"`
}

func deletedJSON(v *keyvault.Vault) deletedVaultJSON {
	var d deletedVaultJSON
	d.ID = "/subscriptions/" + v.Subscription + "/providers/Microsoft.KeyVault/locations/" + v.Location + "/deletedVaults/" + v.Name
	d.Name, d.Type = v.Name, "Microsoft.KeyVault/deletedVaults"
	d.Properties.VaultID, d.Properties.Location, d.Properties.Tags = v.ID(), v.Location, v.Tags
	d.Properties.DeletionDate, d.Properties.ScheduledPurgeDate = v.Deleted.Deleted, v.Deleted.ScheduledPurgeDate
	d.Properties.PurgeProtectionEnabled = v.Properties.EnablePurgeProtection
	return d
}

func (h *handlers) listDeletedVaults(w http.ResponseWriter, r *http.Request) error {
	sub := r.PathValue("subscriptionId")
	if _, err := h.authorize(r, actionDeletedVaultRead, "/subscriptions/"+sub); err != nil {
		return err
	}
	vs, err := h.svc.DeletedVaults(r.Context(), sub)
	if err != nil {
		return mapARMErr(err)
	}
	out := azure.Page[deletedVaultJSON]{Value: []deletedVaultJSON{}}
	for i := range vs {
		out.Value = append(out.Value, deletedJSON(&vs[i]))
	}
	azure.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (h *handlers) getDeletedVault(w http.ResponseWriter, r *http.Request) error {
	sub := r.PathValue("subscriptionId")
	if _, err := h.authorize(r, actionDeletedVaultRead, "/subscriptions/"+sub); err != nil {
		return err
	}
	v, err := h.svc.DeletedVault(r.Context(), sub, r.PathValue("location"), r.PathValue("vaultName"))
	if err != nil {
		return mapARMErr(err)
	}
	azure.WriteJSON(w, http.StatusOK, deletedJSON(v))
	return nil
}

func (h *handlers) purgeDeletedVault(w http.ResponseWriter, r *http.Request) error {
	sub := r.PathValue("subscriptionId")
	if _, err := h.authorize(r, actionPurge, "/subscriptions/"+sub+"/providers/Microsoft.KeyVault/locations/"+r.PathValue("location")); err != nil {
		return err
	}
	if err := h.svc.PurgeVault(r.Context(), sub, r.PathValue("location"), r.PathValue("vaultName")); err != nil {
		return mapARMErr(err)
	}
	// Purge is synchronous: 200 with no polling headers ends azcore's poller.
	w.WriteHeader(http.StatusOK)
	return nil
}

// updateAccessPolicies serves PUT …/accessPolicies/{add|replace|remove}.
func (h *handlers) updateAccessPolicies(w http.ResponseWriter, r *http.Request) error {
	tenant, err := h.authorize(r, actionAccessPolicyWrite, h.vaultID(r))
	if err != nil {
		return err
	}
	kind := strings.ToLower(r.PathValue("operationKind"))
	if kind != "add" && kind != "replace" && kind != "remove" {
		return azure.Errorf(http.StatusBadRequest, azure.CodeBadRequest, "The operation kind '%s' is not one of add, replace, remove.", r.PathValue("operationKind"))
	}
	var b struct {
		Properties struct {
			AccessPolicies []authz.AccessPolicy `json:"accessPolicies"`
		} `json:"properties"`
	}
	if err := azure.DecodeJSON(r, 0, azure.CodeInvalidRequestContent, false, &b); err != nil {
		return err
	}
	prev, err := h.found(r)
	if err != nil {
		return err
	}
	v := *prev
	v.Properties.AccessPolicies = mergePolicies(prev.Properties.AccessPolicies, b.Properties.AccessPolicies, kind)
	out, _, err := h.svc.PutVault(r.Context(), v, tenant)
	if err != nil {
		return mapARMErr(err)
	}
	full := h.vaultJSON(&out)
	azure.WriteJSON(w, http.StatusOK, map[string]any{
		"id": out.ID() + "/accessPolicies/" + kind, "type": "Microsoft.KeyVault/vaults/accessPolicies",
		"properties": map[string]any{"accessPolicies": full.Properties.AccessPolicies},
	})
	return nil
}

// mergePolicies applies an incremental access-policy edit: entries match
// on tenant, object and application; add unions permissions, remove
// subtracts them (dropping emptied entries), replace swaps the entry.
func mergePolicies(cur, in []authz.AccessPolicy, kind string) []authz.AccessPolicy {
	out := slices.Clone(cur)
	same := func(a, b authz.AccessPolicy) bool {
		return strings.EqualFold(a.TenantID, b.TenantID) && strings.EqualFold(a.ObjectID, b.ObjectID) && strings.EqualFold(a.ApplicationID, b.ApplicationID)
	}
	union := func(a, b []string) []string {
		for _, p := range b {
			if !slices.ContainsFunc(a, func(x string) bool { return strings.EqualFold(x, p) }) {
				a = append(a, p)
			}
		}
		return a
	}
	minus := func(a, b []string) []string {
		return slices.DeleteFunc(slices.Clone(a), func(x string) bool {
			return slices.ContainsFunc(b, func(y string) bool { return strings.EqualFold(x, y) })
		})
	}
	for _, ap := range in {
		i := slices.IndexFunc(out, func(c authz.AccessPolicy) bool { return same(c, ap) })
		switch {
		case i < 0 && kind != "remove":
			out = append(out, ap)
		case i < 0:
		case kind == "replace":
			out[i] = ap
		case kind == "add":
			p := &out[i].Permissions
			p.Keys, p.Secrets = union(p.Keys, ap.Permissions.Keys), union(p.Secrets, ap.Permissions.Secrets)
			p.Certificates, p.Storage = union(p.Certificates, ap.Permissions.Certificates), union(p.Storage, ap.Permissions.Storage)
		default:
			p := &out[i].Permissions
			p.Keys, p.Secrets = minus(p.Keys, ap.Permissions.Keys), minus(p.Secrets, ap.Permissions.Secrets)
			p.Certificates, p.Storage = minus(p.Certificates, ap.Permissions.Certificates), minus(p.Storage, ap.Permissions.Storage)
		}
	}
	return slices.DeleteFunc(out, func(ap authz.AccessPolicy) bool {
		p := ap.Permissions
		return kind == "remove" && len(p.Keys)+len(p.Secrets)+len(p.Certificates)+len(p.Storage) == 0
	})
}
