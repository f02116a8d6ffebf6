// Package computehttp serves the compute resource provider's ARM routes —
// Microsoft.Compute/diskEncryptionSets, disks (+ beginGetAccess,
// endGetAccess) and virtualMachines (+ start, powerOff, deallocate,
// restart, instanceView, and cvault's identitySecret and
// releaseDiskEncryptionKey, see cvm.go) — in the shapes and status codes armcompute v8
// expects (wire §5, §6.3): DES and disk PUT/PATCH answer 202, VM PUT 201 or
// 200, power actions and deletes 202, each with an absolute
// Azure-AsyncOperation URL. Work is done within the request, so the
// operation is terminal when the client first polls it (hence no
// Retry-After, which azcore would sleep before that first poll); a key-access failure ends the operation Failed with its code
// (seed 003's KeyVaultAccessForbidden …) and nothing is stored.
package computehttp

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/cvault/cvault/internal/arm"
	"github.com/cvault/cvault/internal/arm/armhttp"
	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/compute"
	"github.com/cvault/cvault/internal/compute/diskdata"
	"github.com/cvault/cvault/internal/route"
)

// APIVersions are the DiskRP and ComputeRP versions accepted: armcompute
// v6-v8's, the seeds' (DES 2021-12-01, VMs 2021-11-01) and those between.
var APIVersions = azure.Versions(
	"2020-12-01", "2021-04-01", "2021-07-01", "2021-08-01", "2021-11-01", "2021-12-01", "2022-03-01", "2022-03-02",
	"2022-07-02", "2022-08-01", "2022-11-01", "2023-01-02", "2023-03-01", "2023-04-02", "2023-07-01", "2023-09-01",
	"2023-10-02", "2024-03-01", "2024-03-02", "2024-07-01", "2024-11-01", "2025-01-02", "2025-04-01",
	"2026-03-02", "2026-04-01")

// Config wires the routes.
type Config struct {
	Service    *compute.Service
	ARM        *arm.Service
	Authorizer armhttp.Authorizer
	BaseURL    string
}

type handlers struct {
	svc  *compute.Service
	arm  *arm.Service
	az   armhttp.Authorizer
	base string
}

const (
	rgp      = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Compute"
	subp     = "/subscriptions/{subscriptionId}/providers/Microsoft.Compute"
	desPath  = rgp + "/diskEncryptionSets/{desName}"
	diskPath = rgp + "/disks/{diskName}"
	vmPath   = rgp + "/virtualMachines/{vmName}"
)

// Routes returns the compute routes.
func Routes(cfg Config) []route.Route {
	h := &handlers{svc: cfg.Service, arm: cfg.ARM, az: cfg.Authorizer, base: strings.TrimRight(cfg.BaseURL, "/")}
	r := func(method, pattern string, fn route.HandlerFunc) route.Route {
		return route.Route{Method: method, Pattern: pattern, Auth: route.Bearer, Service: route.ARM, APIVersions: APIVersions, Handler: fn}
	}
	return []route.Route{
		r("PUT", desPath, h.putDES),
		r("PATCH", desPath, h.patchDES),
		r("GET", desPath, h.getDES),
		r("DELETE", desPath, h.deleteDES),
		r("GET", desPath+"/associatedResources", h.desAssociated),
		r("GET", rgp+"/diskEncryptionSets", h.listDES),
		r("GET", subp+"/diskEncryptionSets", h.listDES),

		r("PUT", diskPath, h.putDisk),
		r("PATCH", diskPath, h.patchDisk),
		r("GET", diskPath, h.getDisk),
		r("DELETE", diskPath, h.deleteDisk),
		r("POST", diskPath+"/beginGetAccess", h.beginGetAccess),
		r("POST", diskPath+"/endGetAccess", h.endGetAccess),
		r("GET", rgp+"/disks", h.listDisks),
		r("GET", subp+"/disks", h.listDisks),

		r("PUT", vmPath, h.putVM),
		r("PATCH", vmPath, h.patchVM),
		r("GET", vmPath, h.getVM),
		r("DELETE", vmPath, h.deleteVM),
		r("GET", vmPath+"/instanceView", h.instanceView),
		r("POST", vmPath+"/start", h.power(compute.ActionStart)),
		r("POST", vmPath+"/powerOff", h.power(compute.ActionPowerOff)),
		r("POST", vmPath+"/deallocate", h.power(compute.ActionDeallocate)),
		r("POST", vmPath+"/restart", h.power(compute.ActionRestart)),
		r("POST", vmPath+"/identitySecret", h.identitySecret),
		r("POST", vmPath+"/releaseDiskEncryptionKey", h.releaseDiskKey),
		r("GET", rgp+"/virtualMachines", h.listVMs),
		r("GET", subp+"/virtualMachines", h.listVMs),
	}
}

// kind is what the handlers' shared steps need to know of a resource type.
type kind struct {
	typ       string // ARM type, e.g. compute.TypeDES
	segment   string // the URL's collection, e.g. "diskEncryptionSets"
	nameParam string // the route's name parameter, e.g. "desName"
	action    string // RBAC action prefix, e.g. "Microsoft.Compute/diskEncryptionSets/"
}

var (
	desKind  = kind{compute.TypeDES, "diskEncryptionSets", "desName", compute.TypeDES + "/"}
	diskKind = kind{compute.TypeDisk, "disks", "diskName", compute.TypeDisk + "/"}
	vmKind   = kind{compute.TypeVM, "virtualMachines", "vmName", compute.TypeVM + "/"}
)

// resourceID is the request's resource ID.
func (k kind) resourceID(r *http.Request) (azure.ResourceID, error) {
	id, err := azure.ParseResourceID("/subscriptions/" + r.PathValue("subscriptionId") + "/resourceGroups/" +
		r.PathValue("resourceGroupName") + "/providers/Microsoft.Compute/" + k.segment + "/" + r.PathValue(k.nameParam))
	if err != nil {
		return azure.ResourceID{}, azure.Errorf(http.StatusBadRequest, "InvalidResourceName", "The resource name '%s' is invalid.", r.PathValue(k.nameParam))
	}
	return id, nil
}

// authorized is the request's resource ID once the caller may do verb
// (e.g. "read", "start/action") on it.
func (h *handlers) authorized(r *http.Request, k kind, verb string) (azure.ResourceID, error) {
	id, err := k.resourceID(r)
	if err != nil {
		return azure.ResourceID{}, err
	}
	if err := armhttp.Authorize(r, h.az, k.action+verb, id.String()); err != nil {
		return azure.ResourceID{}, err
	}
	return id, nil
}

// authorizedBody is authorized's resource ID and the request body, decoded
// once the caller may do verb.
func authorizedBody[T any](h *handlers, r *http.Request, k kind, verb string) (azure.ResourceID, T, error) {
	var in T
	id, err := h.authorized(r, k, verb)
	if err != nil {
		return id, in, err
	}
	if err := decode(r, &in); err != nil {
		return id, in, err
	}
	return id, in, nil
}

// found turns compute.ErrNotFound into ARM's 404 for id; other errors pass
// through as they are.
func (k kind) found(id azure.ResourceID, err error) error {
	if errors.Is(err, compute.ErrNotFound) {
		return azure.Errorf(http.StatusNotFound, azure.CodeResourceNotFound, "The Resource '%s/%s' under resource group '%s' was not found.", k.typ, id.Name(), id.ResourceGroup)
	}
	return err
}

// serveGet answers a read: 200 with what get returns for the resource, or
// its 404.
func serveGet[T any](h *handlers, w http.ResponseWriter, r *http.Request, k kind, verb string, get func(ctx context.Context, id string) (T, error)) error {
	id, err := h.authorized(r, k, verb)
	if err != nil {
		return err
	}
	v, err := get(r.Context(), id.String())
	if err != nil {
		return k.found(id, err)
	}
	azure.WriteJSON(w, http.StatusOK, v)
	return nil
}

// serveList answers a list over the URL's group or subscription.
func serveList[T any](h *handlers, w http.ResponseWriter, r *http.Request, k kind, list func(ctx context.Context, sub, rg string) ([]T, error)) error {
	sub, rg, scope := listScope(r)
	if err := armhttp.Authorize(r, h.az, k.action+"read", scope); err != nil {
		return err
	}
	items, err := list(r.Context(), sub, rg)
	if err != nil {
		return err
	}
	azure.WriteJSON(w, http.StatusOK, azure.Page[T]{Value: items})
	return nil
}

// serveDelete answers a delete: 204 when there was nothing, else 202 with
// a terminal operation and its Location. locate reads the resource's
// location and ID before it goes.
func (h *handlers) serveDelete(w http.ResponseWriter, r *http.Request, k kind,
	locate func(ctx context.Context, id string) (location, resourceID string),
	del func(ctx context.Context, id string) (bool, error)) error {
	id, err := h.authorized(r, k, "delete")
	if err != nil {
		return err
	}
	location, resourceID := locate(r.Context(), id.String())
	existed, err := del(r.Context(), id.String())
	if err != nil {
		return mapErr(err)
	}
	if !existed {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return h.lro(w, r, location, resourceID, http.StatusAccepted, nil, nil, true)
}

// listScope is the scope of a list request: its group or subscription.
func listScope(r *http.Request) (sub, rg, scope string) {
	sub, rg = r.PathValue("subscriptionId"), r.PathValue("resourceGroupName")
	scope = "/subscriptions/" + sub
	if rg != "" {
		scope += "/resourceGroups/" + rg
	}
	return sub, rg, scope
}

// mapErr turns compute's errors into Azure's.
func mapErr(err error) error {
	var ae *azure.Error
	var ke *compute.KeyError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &ke):
		return azure.Errorf(http.StatusBadRequest, ke.Code, "%s", ke.Message).Wrap(err)
	case errors.Is(err, compute.ErrNotFound), errors.Is(err, diskdata.ErrNotFound):
		return azure.Errorf(http.StatusNotFound, azure.CodeResourceNotFound, "The requested resource was not found.").Wrap(err)
	case errors.Is(err, compute.ErrConflict):
		return azure.Errorf(http.StatusConflict, "Conflict", "The resource was changed concurrently; retry the request.").Wrap(err)
	}
	return err
}

// lro records a long-running operation for work already done: a
// *compute.KeyError (or any Azure error when failAsync) ends it Failed,
// success ends it Succeeded. It sets the polling headers and writes status
// with body; other errors are returned for a synchronous answer.
func (h *handlers) lro(w http.ResponseWriter, r *http.Request, location, resourceID string, status int, body any, workErr error, withLocation bool) error {
	var ke *compute.KeyError
	if workErr != nil && !errors.As(workErr, &ke) {
		return mapErr(workErr)
	}
	ctx := r.Context()
	if location == "" {
		location = "westeurope"
	}
	op, err := h.arm.StartOperation(ctx, r.PathValue("subscriptionId"), compute.Namespace, location, resourceID)
	if err != nil {
		return err
	}
	var opErr *azure.OpError
	if ke != nil {
		opErr = &azure.OpError{Code: ke.Code, Message: ke.Message}
	}
	if op, err = h.arm.FinishOperation(ctx, op, opErr, nil); err != nil {
		return err
	}
	v := r.URL.Query().Get("api-version")
	loc := ""
	if withLocation {
		loc = op.ResultURL(h.base, v)
	}
	// The operation is already terminal (the work ran within the request),
	// so no Retry-After: azcore would wait it out before its first poll.
	w.Header().Set("Azure-AsyncOperation", op.StatusURL(h.base, v))
	if loc != "" {
		w.Header().Set("Location", loc)
	}
	if body == nil {
		w.WriteHeader(status)
		return nil
	}
	azure.WriteJSON(w, status, body)
	return nil
}

// assignIdentities checks the caller may assign each user-assigned identity.
func (h *handlers) assignIdentities(r *http.Request, id *compute.ResourceIdentity) error {
	if id == nil {
		return nil
	}
	for uid := range id.UserAssignedIdentities {
		if err := armhttp.Authorize(r, h.az, "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action", strings.TrimRight(uid, "/")); err != nil {
			return err
		}
	}
	return nil
}

// decode reads a request body into v.
func decode(r *http.Request, v any) error {
	return azure.DecodeJSON(r, azure.MaxBody, azure.CodeInvalidRequestContent, false, v)
}

// checkBodyID: where a body names id/name/type they must match the URL.
func checkBodyID(id azure.ResourceID, typ, bodyID, bodyName, bodyType string) error {
	if bodyID != "" {
		bid, err := azure.ParseResourceID(strings.TrimRight(bodyID, "/"))
		if err != nil || !bid.Equal(id) {
			return azure.Errorf(http.StatusBadRequest, "InvalidParameter", "The id '%s' in the body does not match the request URL.", bodyID)
		}
	}
	if bodyName != "" && !strings.EqualFold(strings.TrimSpace(bodyName), id.Name()) {
		return azure.Errorf(http.StatusBadRequest, "InvalidParameter", "The name '%s' in the body does not match the request URL.", bodyName)
	}
	if bodyType != "" && !strings.EqualFold(bodyType, typ) {
		return azure.Errorf(http.StatusBadRequest, "InvalidParameter", "The type '%s' in the body does not match the request URL.", bodyType)
	}
	return nil
}
