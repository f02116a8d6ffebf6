// Package armhttp serves the Azure Resource Manager basics over HTTP:
// subscriptions, resource groups and operation status, in the shapes the
// armresources/armsubscriptions clients and azcore's pollers expect.
package armhttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/cvault/cvault/internal/arm"
	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/route"
)

// Authorizer decides whether a principal may perform an action on a scope.
type Authorizer interface {
	Check(ctx context.Context, p *authn.Principal, action, scope string) error
}

// APIVersions are the Microsoft.Resources versions accepted (armresources
// v1-v3, armsubscriptions, the CLI).
var APIVersions = azure.Versions("2016-06-01", "2018-05-01", "2019-05-01", "2019-10-01", "2020-01-01", "2020-06-01",
	"2021-01-01", "2021-04-01", "2022-09-01", "2022-12-01", "2023-07-01", "2024-03-01", "2024-07-01",
	"2024-11-01", "2025-03-01", "2025-04-01")

// Deny renders an authorization failure as ARM does. Any error from an
// Authorizer denies (fail closed); an *azure.Error passes through.
func Deny(p *authn.Principal, action, scope string, err error) error {
	var ae *azure.Error
	if errors.As(err, &ae) {
		return ae
	}
	return (&azure.Error{Status: http.StatusForbidden, Code: azure.CodeAuthorizationFailed,
		Message: fmt.Sprintf("The client '%s' with object id '%s' does not have authorization to perform action '%s' over scope '%s' or the scope is invalid. If access was recently granted, please refresh your credentials.",
			p.ObjectID, p.ObjectID, action, scope)}).Wrap(err)
}

// Authorize checks the request's principal for action on scope.
func Authorize(r *http.Request, az Authorizer, action, scope string) error {
	p, ok := authn.FromContext(r.Context())
	if !ok {
		return azure.Errorf(http.StatusUnauthorized, azure.CodeAuthenticationFailed, "Authentication failed.")
	}
	if err := az.Check(r.Context(), p, action, scope); err != nil {
		return Deny(p, action, scope, err)
	}
	return nil
}

type handlers struct {
	svc  *arm.Service
	az   Authorizer
	base string
}

// Routes returns the ARM basics' routes.
func Routes(svc *arm.Service, az Authorizer, baseURL string) []route.Route {
	h := &handlers{svc: svc, az: az, base: strings.TrimRight(baseURL, "/")}
	r := func(method, pattern string, fn route.HandlerFunc) route.Route {
		return route.Route{Method: method, Pattern: pattern, Auth: route.Bearer, Service: route.ARM, APIVersions: APIVersions, Handler: fn}
	}
	const rg = "/subscriptions/{subscriptionId}/resourcegroups/{resourceGroupName}"
	return []route.Route{
		r("GET", "/subscriptions", h.listSubscriptions),
		r("GET", "/subscriptions/{subscriptionId}", h.getSubscription),
		r("GET", "/subscriptions/{subscriptionId}/resourcegroups", h.listGroups),
		r("PUT", rg, h.putGroup),
		r("PATCH", rg, h.patchGroup),
		r("GET", rg, h.getGroup),
		r("HEAD", rg, h.headGroup),
		r("DELETE", rg, h.deleteGroup),
		// Operation status is polled with whatever api-version the
		// resource's client used, so any resource provider's version passes.
		{Method: "GET", Pattern: "/subscriptions/{subscriptionId}/providers/{namespace}/locations/{location}/operations/{operationId}",
			Auth: route.Bearer, Service: route.ARM, Handler: h.getOperation},
		{Method: "GET", Pattern: "/subscriptions/{subscriptionId}/providers/{namespace}/locations/{location}/operationResults/{operationId}",
			Auth: route.Bearer, Service: route.ARM, Handler: h.getOperationResult},
	}
}

// MapError turns arm's errors into Azure's.
func MapError(err error) error {
	var ae *azure.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, arm.ErrBadLocation):
		return azure.Errorf(http.StatusBadRequest, azure.CodeLocationNotAvailable, "%s", strings.TrimPrefix(err.Error(), "arm: ")).Wrap(err)
	case errors.Is(err, arm.ErrInvalidName):
		return azure.Errorf(http.StatusBadRequest, "InvalidResourceGroup", "The provided resource group name is invalid: %s", err).Wrap(err)
	case errors.Is(err, arm.ErrLocationFixed):
		return azure.Errorf(http.StatusConflict, "InvalidResourceGroupLocation", "%s", strings.TrimPrefix(err.Error(), "arm: ")).Wrap(err)
	}
	return err
}

type subscriptionJSON struct {
	ID             string `json:"id"`
	SubscriptionID string `json:"subscriptionId"`
	TenantID       string `json:"tenantId"`
	DisplayName    string `json:"displayName"`
	State          string `json:"state"`
}

func subJSON(s arm.Subscription) subscriptionJSON {
	return subscriptionJSON{ID: "/subscriptions/" + s.ID, SubscriptionID: s.ID, TenantID: s.TenantID, DisplayName: s.DisplayName, State: s.State}
}

func (h *handlers) listSubscriptions(w http.ResponseWriter, r *http.Request) error {
	p, _ := authn.FromContext(r.Context())
	subs, err := h.svc.Subscriptions(r.Context(), p.TenantID)
	if err != nil {
		return err
	}
	out := azure.Page[subscriptionJSON]{Value: []subscriptionJSON{}}
	for _, s := range subs {
		// A subscription is listed when the caller can read it.
		if h.az.Check(r.Context(), p, "Microsoft.Resources/subscriptions/read", "/subscriptions/"+s.ID) == nil {
			out.Value = append(out.Value, subJSON(s))
		}
	}
	azure.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (h *handlers) subscription(r *http.Request) (arm.Subscription, error) {
	id := r.PathValue("subscriptionId")
	sub, err := h.svc.Subscription(r.Context(), id)
	p, _ := authn.FromContext(r.Context())
	if errors.Is(err, arm.ErrNotFound) || (err == nil && !strings.EqualFold(sub.TenantID, p.TenantID)) {
		return arm.Subscription{}, azure.Errorf(http.StatusNotFound, azure.CodeSubscriptionNotFound, "The subscription '%s' could not be found.", id)
	}
	return sub, err
}

func (h *handlers) getSubscription(w http.ResponseWriter, r *http.Request) error {
	sub, err := h.subscription(r)
	if err != nil {
		return err
	}
	if err := Authorize(r, h.az, "Microsoft.Resources/subscriptions/read", "/subscriptions/"+sub.ID); err != nil {
		return err
	}
	azure.WriteJSON(w, http.StatusOK, subJSON(sub))
	return nil
}

type groupJSON struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Location   string            `json:"location"`
	Tags       map[string]string `json:"tags,omitempty"`
	ManagedBy  string            `json:"managedBy,omitempty"`
	Properties struct {
		ProvisioningState string `json:"provisioningState"`
	} `json:"properties"`
}

func toGroupJSON(g arm.ResourceGroup, state string) groupJSON {
	out := groupJSON{ID: g.ID(), Name: g.Name, Type: "Microsoft.Resources/resourceGroups", Location: g.Location, Tags: g.Tags, ManagedBy: g.ManagedBy}
	out.Properties.ProvisioningState = state
	return out
}

type groupBody struct {
	Location  *string           `json:"location"`
	Tags      map[string]string `json:"tags"`
	ManagedBy *string           `json:"managedBy"`
	Name      *string           `json:"name"`
}

func (h *handlers) putGroup(w http.ResponseWriter, r *http.Request) error {
	sub, err := h.subscription(r)
	if err != nil {
		return err
	}
	name := r.PathValue("resourceGroupName")
	g := arm.ResourceGroup{Subscription: sub.ID, Name: name}
	if err := Authorize(r, h.az, "Microsoft.Resources/subscriptions/resourceGroups/write", g.ID()); err != nil {
		return err
	}
	var body groupBody
	if err := azure.DecodeJSON(r, 0, azure.CodeInvalidRequestContent, false, &body); err != nil {
		return err
	}
	if body.Location == nil || *body.Location == "" {
		return azure.Errorf(http.StatusBadRequest, "LocationRequired", "The location property is required for this definition.")
	}
	if body.Name != nil && !strings.EqualFold(*body.Name, name) {
		return azure.Errorf(http.StatusBadRequest, azure.CodeBadRequest, "The name in the request body '%s' does not match the resource group '%s' in the URL.", *body.Name, name)
	}
	g.Location, g.Tags = *body.Location, body.Tags
	if body.ManagedBy != nil {
		g.ManagedBy = *body.ManagedBy
	}
	g, created, err := h.svc.PutResourceGroup(r.Context(), g)
	if err != nil {
		return MapError(err)
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	azure.WriteJSON(w, status, toGroupJSON(g, "Succeeded"))
	return nil
}

func (h *handlers) group(r *http.Request, action string) (arm.ResourceGroup, error) {
	sub, err := h.subscription(r)
	if err != nil {
		return arm.ResourceGroup{}, err
	}
	name := r.PathValue("resourceGroupName")
	id := "/subscriptions/" + sub.ID + "/resourceGroups/" + name
	if err := Authorize(r, h.az, action, id); err != nil {
		return arm.ResourceGroup{}, err
	}
	g, err := h.svc.ResourceGroup(r.Context(), sub.ID, name)
	if errors.Is(err, arm.ErrNotFound) {
		return arm.ResourceGroup{}, azure.Errorf(http.StatusNotFound, azure.CodeResourceGroupNotFound, "Resource group '%s' could not be found.", name)
	}
	return g, err
}

func (h *handlers) patchGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := h.group(r, "Microsoft.Resources/subscriptions/resourceGroups/write")
	if err != nil {
		return err
	}
	var body groupBody
	if err := azure.DecodeJSON(r, 0, azure.CodeInvalidRequestContent, false, &body); err != nil {
		return err
	}
	if body.Tags != nil {
		g.Tags = body.Tags
	}
	if body.ManagedBy != nil {
		g.ManagedBy = *body.ManagedBy
	}
	if body.Location != nil && arm.NormalizeLocation(*body.Location) != g.Location {
		return azure.Errorf(http.StatusConflict, "InvalidResourceGroupLocation", "Resource group '%s' already exists in location '%s'.", g.Name, g.Location)
	}
	g, _, err = h.svc.PutResourceGroup(r.Context(), g)
	if err != nil {
		return MapError(err)
	}
	azure.WriteJSON(w, http.StatusOK, toGroupJSON(g, "Succeeded"))
	return nil
}

func (h *handlers) getGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := h.group(r, "Microsoft.Resources/subscriptions/resourceGroups/read")
	if err != nil {
		return err
	}
	azure.WriteJSON(w, http.StatusOK, toGroupJSON(g, "Succeeded"))
	return nil
}

func (h *handlers) headGroup(w http.ResponseWriter, r *http.Request) error {
	_, err := h.group(r, "Microsoft.Resources/subscriptions/resourceGroups/read")
	var ae *azure.Error
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		w.WriteHeader(http.StatusNotFound)
		return nil
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteGroup deletes synchronously and answers 202 with an operation that
// has already finished, which azcore's poller accepts and which survives a
// crash honestly (a half-done delete leaves the group, and retrying continues).
func (h *handlers) deleteGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := h.group(r, "Microsoft.Resources/subscriptions/resourceGroups/delete")
	var ae *azure.Error
	if errors.As(err, &ae) && ae.Code == azure.CodeResourceGroupNotFound {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if err != nil {
		return err
	}
	op, err := h.svc.StartOperation(r.Context(), g.Subscription, "Microsoft.Resources", g.Location, g.ID())
	if err != nil {
		return err
	}
	var opErr *azure.OpError
	if err := h.svc.DeleteResourceGroup(r.Context(), g.Subscription, g.Name); err != nil {
		e := azure.AsError(MapError(err), "")
		opErr = &azure.OpError{Code: e.Code, Message: e.Message}
	}
	if op, err = h.svc.FinishOperation(r.Context(), op, opErr, nil); err != nil {
		return err
	}
	v := r.URL.Query().Get("api-version")
	azure.SetLROHeaders(w, op.StatusURL(h.base, v), op.ResultURL(h.base, v))
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (h *handlers) operation(r *http.Request) (arm.Operation, error) {
	sub, err := h.subscription(r)
	if err != nil {
		return arm.Operation{}, err
	}
	if err := Authorize(r, h.az, "Microsoft.Resources/subscriptions/read", "/subscriptions/"+sub.ID); err != nil {
		return arm.Operation{}, err
	}
	op, err := h.svc.Operation(r.Context(), sub.ID, r.PathValue("operationId"))
	if errors.Is(err, arm.ErrNotFound) || (err == nil && !strings.EqualFold(op.Namespace, r.PathValue("namespace"))) {
		return arm.Operation{}, azure.Errorf(http.StatusNotFound, azure.CodeNotFound, "The operation '%s' was not found.", r.PathValue("operationId"))
	}
	return op, err
}

func (h *handlers) getOperation(w http.ResponseWriter, r *http.Request) error {
	op, err := h.operation(r)
	if err != nil {
		return err
	}
	if !op.Status.Terminal() {
		w.Header().Set("Retry-After", "1")
	}
	st := op.Status
	st.ID = strings.Split(op.StatusURL("", ""), "?")[0]
	azure.WriteJSON(w, http.StatusOK, st)
	return nil
}

func (h *handlers) getOperationResult(w http.ResponseWriter, r *http.Request) error {
	op, err := h.operation(r)
	if err != nil {
		return err
	}
	switch op.Status.Status {
	case azure.StatusInProgress:
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Location", op.ResultURL(h.base, r.URL.Query().Get("api-version")))
		w.WriteHeader(http.StatusAccepted)
	case azure.StatusSucceeded:
		w.WriteHeader(http.StatusNoContent)
	default:
		code, msg := azure.CodeInternal, "The operation failed."
		if op.Status.Error != nil {
			code, msg = op.Status.Error.Code, op.Status.Error.Message
		}
		return azure.Errorf(http.StatusBadRequest, code, "%s", msg)
	}
	return nil
}

func (h *handlers) listGroups(w http.ResponseWriter, r *http.Request) error {
	sub, err := h.subscription(r)
	if err != nil {
		return err
	}
	p, _ := authn.FromContext(r.Context())
	top, err := azure.PageSize(r, "$top", 100, 1000)
	if err != nil {
		return err
	}
	after, err := azure.SkipToken(r)
	if err != nil {
		return err
	}
	groups, next, err := h.svc.ResourceGroups(r.Context(), sub.ID, after, top)
	if err != nil {
		return err
	}
	out := azure.Page[groupJSON]{Value: []groupJSON{}, NextLink: azure.NextLink(h.base, r, azure.EncodeSkipToken(next))}
	for _, g := range groups {
		if h.az.Check(r.Context(), p, "Microsoft.Resources/subscriptions/resourceGroups/read", g.ID()) == nil {
			out.Value = append(out.Value, toGroupJSON(g, "Succeeded"))
		}
	}
	azure.WriteJSON(w, http.StatusOK, out)
	return nil
}
