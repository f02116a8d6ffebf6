// Package authzhttp serves authz over ARM's Microsoft.Authorization API
// (api-version 2022-04-01, what armauthorization/v2 sends): role
// definitions and role assignments at subscription, resource group,
// resource and child-resource scope.
package authzhttp

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/authz"
	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/route"
)

// APIVersions are the Microsoft.Authorization versions served; the shape
// is 2022-04-01's for all of them.
var apiVersions = azure.Versions("2022-04-01", "2020-10-01-preview", "2020-04-01-preview", "2018-01-01-preview", "2015-07-01")

// scopePrefixes are the scope depths served: subscription, resource
// group, resource, child resource (…/vaults/{v}/keys/{k}).
var scopePrefixes = []string{
	"/subscriptions/{subscriptionId}",
	"/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}",
	"/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/{providerNamespace}/{resourceType}/{resourceName}",
	"/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/{providerNamespace}/{resourceType}/{resourceName}/{childType}/{childName}",
}

const (
	assignmentsPath = "/providers/Microsoft.Authorization/roleAssignments"
	definitionsPath = "/providers/Microsoft.Authorization/roleDefinitions"
)

// Routes returns the authorization routes.
func Routes(svc *authz.Service) []route.Route {
	h := &handlers{svc: svc}
	var rs []route.Route
	add := func(method, pattern string, fn route.HandlerFunc) {
		rs = append(rs, route.Route{Method: method, Pattern: pattern, Auth: route.Bearer, Service: route.ARM,
			APIVersions: apiVersions, Handler: fn})
	}
	for _, p := range scopePrefixes {
		add(http.MethodGet, p+assignmentsPath, h.listAssignments)
		add(http.MethodPut, p+assignmentsPath+"/{roleAssignmentName}", h.putAssignment)
		add(http.MethodGet, p+assignmentsPath+"/{roleAssignmentName}", h.getAssignment)
		add(http.MethodDelete, p+assignmentsPath+"/{roleAssignmentName}", h.deleteAssignment)
	}
	for _, p := range append([]string{""}, scopePrefixes[:3]...) {
		add(http.MethodGet, p+definitionsPath, h.listDefinitions)
		add(http.MethodGet, p+definitionsPath+"/{roleDefinitionId}", h.getDefinition)
	}
	return rs
}

type handlers struct{ svc *authz.Service }

// scopeOf cuts the scope from a request path ".../{scope}/providers/Microsoft.Authorization/…".
func scopeOf(r *http.Request) string {
	p := r.URL.Path
	if i := strings.LastIndex(strings.ToLower(p), "/providers/microsoft.authorization/"); i >= 0 {
		return p[:i]
	}
	return p
}

// Wire shapes (armauthorization/v2 RoleAssignment, RoleDefinition).
type assignmentJSON struct {
	ID         string               `json:"id"`
	Name       string               `json:"name"`
	Type       string               `json:"type"`
	Properties assignmentProperties `json:"properties"`
}

type assignmentProperties struct {
	RoleDefinitionID string     `json:"roleDefinitionId"`
	PrincipalID      string     `json:"principalId"`
	PrincipalType    string     `json:"principalType,omitempty"`
	Scope            string     `json:"scope,omitempty"`
	Description      string     `json:"description,omitempty"`
	Condition        string     `json:"condition,omitempty"`
	ConditionVersion string     `json:"conditionVersion,omitempty"`
	CreatedOn        *time.Time `json:"createdOn,omitempty"`
	UpdatedOn        *time.Time `json:"updatedOn,omitempty"`
	CreatedBy        string     `json:"createdBy,omitempty"`
	UpdatedBy        string     `json:"updatedBy,omitempty"`
}

func toJSON(a authz.Assignment) assignmentJSON {
	sub := ""
	if id, err := azure.ParseResourceID(a.Scope); err == nil {
		sub = "/subscriptions/" + id.Subscription
	}
	c, u := a.CreatedOn, a.UpdatedOn
	return assignmentJSON{ID: a.ID(), Name: a.Name, Type: "Microsoft.Authorization/roleAssignments",
		Properties: assignmentProperties{
			RoleDefinitionID: sub + definitionsPath + "/" + a.RoleDefinitionID,
			PrincipalID:      a.PrincipalID, PrincipalType: a.PrincipalType, Scope: a.Scope,
			Description: a.Description, CreatedOn: &c, UpdatedOn: &u, CreatedBy: a.CreatedBy, UpdatedBy: a.UpdatedBy,
		}}
}

type definitionJSON struct {
	ID         string               `json:"id"`
	Name       string               `json:"name"`
	Type       string               `json:"type"`
	Properties definitionProperties `json:"properties"`
}

type definitionProperties struct {
	RoleName         string           `json:"roleName"`
	Type             string           `json:"type"`
	Description      string           `json:"description"`
	AssignableScopes []string         `json:"assignableScopes"`
	Permissions      []permissionJSON `json:"permissions"`
}

type permissionJSON struct {
	Actions        []string `json:"actions"`
	NotActions     []string `json:"notActions"`
	DataActions    []string `json:"dataActions"`
	NotDataActions []string `json:"notDataActions"`
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func defJSON(scope string, d authz.RoleDefinition) definitionJSON {
	out := definitionJSON{ID: scope + definitionsPath + "/" + d.ID, Name: d.ID, Type: "Microsoft.Authorization/roleDefinitions",
		Properties: definitionProperties{RoleName: d.Name, Type: "BuiltInRole", Description: d.Description, AssignableScopes: []string{"/"}}}
	for _, p := range d.Permissions {
		out.Properties.Permissions = append(out.Properties.Permissions, permissionJSON{
			Actions: nonNil(p.Actions), NotActions: nonNil(p.NotActions),
			DataActions: nonNil(p.DataActions), NotDataActions: nonNil(p.NotDataActions)})
	}
	return out
}

func principal(r *http.Request) *authn.Principal {
	p, _ := authn.FromContext(r.Context())
	return p
}

func (h *handlers) putAssignment(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Properties assignmentProperties `json:"properties"`
	}
	if err := azure.DecodeJSON(r, 0, azure.CodeInvalidRequestContent, false, &body); err != nil {
		return err
	}
	if body.Properties.Condition != "" {
		return azure.Errorf(http.StatusBadRequest, "InvalidRoleAssignmentCondition", "Role assignment conditions are not supported.")
	}
	a, created, err := h.svc.Create(r.Context(), principal(r), authz.Assignment{
		Name: r.PathValue("roleAssignmentName"), Scope: scopeOf(r),
		RoleDefinitionID: body.Properties.RoleDefinitionID, PrincipalID: body.Properties.PrincipalID,
		PrincipalType: body.Properties.PrincipalType, Description: body.Properties.Description,
	})
	if err != nil {
		return httpError(err, principal(r))
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	azure.WriteJSON(w, status, toJSON(a))
	return nil
}

func (h *handlers) getAssignment(w http.ResponseWriter, r *http.Request) error {
	a, err := h.svc.Get(r.Context(), principal(r), scopeOf(r), r.PathValue("roleAssignmentName"))
	if err != nil {
		return httpError(err, principal(r))
	}
	azure.WriteJSON(w, http.StatusOK, toJSON(a))
	return nil
}

func (h *handlers) deleteAssignment(w http.ResponseWriter, r *http.Request) error {
	a, err := h.svc.Delete(r.Context(), principal(r), scopeOf(r), r.PathValue("roleAssignmentName"))
	if errors.Is(err, authz.ErrNotFound) {
		w.WriteHeader(http.StatusNoContent) // Azure: deleting a missing assignment is 204
		return nil
	}
	if err != nil {
		return httpError(err, principal(r))
	}
	azure.WriteJSON(w, http.StatusOK, toJSON(a))
	return nil
}

func (h *handlers) listAssignments(w http.ResponseWriter, r *http.Request) error {
	f, err := authz.ParseFilter(r.URL.Query().Get("$filter"))
	if err != nil {
		return httpError(err, principal(r))
	}
	as, err := h.svc.List(r.Context(), principal(r), scopeOf(r), f)
	if err != nil {
		return httpError(err, principal(r))
	}
	page := azure.Page[assignmentJSON]{Value: make([]assignmentJSON, 0, len(as))}
	for _, a := range as {
		page.Value = append(page.Value, toJSON(a))
	}
	azure.WriteJSON(w, http.StatusOK, page)
	return nil
}

// Built-in role definitions are readable by every authenticated caller:
// they are the same public list in every tenant.
func (h *handlers) getDefinition(w http.ResponseWriter, r *http.Request) error {
	d, err := h.svc.RoleDefinition(r.PathValue("roleDefinitionId"))
	if err != nil {
		return azure.Errorf(http.StatusNotFound, "RoleDefinitionDoesNotExist",
			"The specified role definition with ID '%s' does not exist.", r.PathValue("roleDefinitionId")).Wrap(err)
	}
	azure.WriteJSON(w, http.StatusOK, defJSON(defScope(r), d))
	return nil
}

func (h *handlers) listDefinitions(w http.ResponseWriter, r *http.Request) error {
	name := ""
	if f := strings.TrimSpace(r.URL.Query().Get("$filter")); f != "" {
		v, ok := authz.ParseEq(f, "roleName")
		_, builtIn := authz.ParseEq(f, "type")
		if !ok && !builtIn {
			return azure.Errorf(http.StatusBadRequest, azure.CodeBadRequest, "The $filter '%s' is not supported.", f)
		}
		name = v
	}
	ds := h.svc.RoleDefinitions(name)
	page := azure.Page[definitionJSON]{Value: make([]definitionJSON, 0, len(ds))}
	for _, d := range ds {
		page.Value = append(page.Value, defJSON(defScope(r), d))
	}
	azure.WriteJSON(w, http.StatusOK, page)
	return nil
}

// defScope is the scope role definition IDs are rendered under: the
// request's subscription, or the tenant level ("").
func defScope(r *http.Request) string {
	if s := r.PathValue("subscriptionId"); s != "" {
		return "/subscriptions/" + s
	}
	return ""
}

// httpError maps authz errors to ARM's.
func httpError(err error, p *authn.Principal) error {
	var de *authz.DeniedError
	switch {
	case errors.As(err, &de):
		if de.ObjectID == "" && p != nil {
			d := *de
			d.ObjectID = p.ObjectID
			de = &d
		}
		return DeniedError(de).Wrap(err)
	case errors.Is(err, authz.ErrNotFound):
		return azure.Errorf(http.StatusNotFound, "RoleAssignmentNotFound", "The role assignment does not exist.").Wrap(err)
	case errors.Is(err, authz.ErrExists):
		return azure.Errorf(http.StatusConflict, "RoleAssignmentExists", "The role assignment already exists.").Wrap(err)
	case errors.Is(err, authz.ErrUpdateNotPermitted):
		return azure.Errorf(http.StatusConflict, "RoleAssignmentUpdateNotPermitted",
			"Tenant ID, application ID, principal ID, and scope are not allowed to be updated.").Wrap(err)
	case errors.Is(err, authz.ErrRoleNotFound):
		return azure.Errorf(http.StatusBadRequest, "RoleDefinitionDoesNotExist", "The specified role definition does not exist.").Wrap(err)
	case errors.Is(err, authz.ErrInvalid):
		return azure.Errorf(http.StatusBadRequest, azure.CodeBadRequest, "%s", strings.ReplaceAll(err.Error(), "authz: invalid request: ", "")).Wrap(err)
	}
	return err
}

// DeniedError renders a denial as ARM's 403 AuthorizationFailed, for any
// ARM http package to use.
func DeniedError(de *authz.DeniedError) *azure.Error {
	return azure.Errorf(http.StatusForbidden, azure.CodeAuthorizationFailed,
		"The client '%s' with object id '%s' does not have authorization to perform action '%s' over scope '%s' or the scope is invalid. If access was recently granted, please refresh your credentials.",
		de.ObjectID, de.ObjectID, de.Action, de.Scope)
}
