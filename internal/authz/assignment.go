package authz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/store"
)

// Actions authz itself checks.
const (
	ActionAssignmentRead   = "Microsoft.Authorization/roleAssignments/read"
	ActionAssignmentWrite  = "Microsoft.Authorization/roleAssignments/write"
	ActionAssignmentDelete = "Microsoft.Authorization/roleAssignments/delete"
)

// Assignment is a role assignment: PrincipalID holds role RoleDefinitionID
// at Scope and everything below it.
type Assignment struct {
	Name             string    `json:"name"`             // GUID
	Scope            string    `json:"scope"`            // ARM ID, caller's casing of names
	RoleDefinitionID string    `json:"roleDefinitionId"` // role GUID
	PrincipalID      string    `json:"principalId"`
	PrincipalType    string    `json:"principalType"`
	TenantID         string    `json:"tenantId"` // tenant whose principals the grant is for
	Description      string    `json:"description,omitempty"`
	CreatedOn        time.Time `json:"createdOn"`
	UpdatedOn        time.Time `json:"updatedOn"`
	CreatedBy        string    `json:"createdBy,omitempty"`
	UpdatedBy        string    `json:"updatedBy,omitempty"`
}

const assignmentsSegment = "/providers/Microsoft.Authorization/roleAssignments/"

// ID is the assignment's ARM resource ID.
func (a Assignment) ID() string { return a.Scope + assignmentsSegment + a.Name }

func assignmentKey(scope, name string) string {
	return strings.ToLower(scope + assignmentsSegment + name)
}

func uniqueKey(a Assignment) string {
	return strings.ToLower(a.PrincipalID + "|" + a.RoleDefinitionID + "|" + azure.Scope(a.Scope))
}

func decodeAssignment(b []byte) (Assignment, error) {
	var a Assignment
	err := json.Unmarshal(b, &a)
	return a, err
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// NormalizeScope validates an ARM scope (subscription, resource group,
// resource or child resource) and renders it canonically.
func NormalizeScope(scope string) (string, error) {
	id, err := azure.ParseResourceID(scope)
	if err != nil {
		return "", invalid("the scope '%s' is not valid", scope)
	}
	return id.String(), nil
}

// ParseRoleDefinitionID accepts a role definition GUID or its ARM ID, at
// tenant level (/providers/Microsoft.Authorization/roleDefinitions/{id}) or
// under a scope (/subscriptions/{s}/providers/…), and returns the GUID.
func ParseRoleDefinitionID(s string) (string, error) {
	g := s
	if i := strings.LastIndex(strings.ToLower(s), "/providers/microsoft.authorization/roledefinitions/"); i >= 0 {
		g = s[i+len("/providers/microsoft.authorization/roledefinitions/"):]
	} else if strings.Contains(s, "/") {
		return "", invalid("the role definition id '%s' is not valid", s)
	}
	if !azure.IsGUID(g) {
		return "", invalid("the role definition id '%s' is not valid", s)
	}
	return strings.ToLower(g), nil
}

// RoleDefinition returns the role with the given GUID.
func (s *Service) RoleDefinition(id string) (RoleDefinition, error) {
	c := s.roles.byID[strings.ToLower(id)]
	if c == nil {
		return RoleDefinition{}, fmt.Errorf("role definition %s: %w", id, ErrRoleNotFound)
	}
	return c.def, nil
}

// RoleDefinitions lists roles; roleName, if not "", selects one by its
// exact name (case-insensitive), as $filter=roleName eq '…' does.
func (s *Service) RoleDefinitions(roleName string) []RoleDefinition {
	if roleName != "" {
		if c := s.roles.byName[strings.ToLower(roleName)]; c != nil {
			return []RoleDefinition{c.def}
		}
		return nil
	}
	return Roles()
}

func (s *Service) validate(a *Assignment) error {
	var errs []error
	if !azure.IsGUID(a.Name) {
		errs = append(errs, invalid("the role assignment name '%s' is not a GUID", a.Name))
	}
	scope, err := NormalizeScope(a.Scope)
	if err != nil {
		errs = append(errs, err)
	}
	a.Scope = scope
	if !azure.IsGUID(a.PrincipalID) {
		errs = append(errs, invalid("the principal id '%s' is not a GUID", a.PrincipalID))
	}
	if rid, err := ParseRoleDefinitionID(a.RoleDefinitionID); err != nil {
		errs = append(errs, err)
	} else if s.roles.byID[rid] == nil {
		errs = append(errs, fmt.Errorf("role definition %s: %w", rid, ErrRoleNotFound))
	} else {
		a.RoleDefinitionID = rid
	}
	switch a.PrincipalType {
	case "":
		a.PrincipalType = string(authn.User)
	case "User", "Group", "ServicePrincipal", "ForeignGroup", "Device":
	default:
		errs = append(errs, invalid("the principal type '%s' is not valid", a.PrincipalType))
	}
	return errors.Join(errs...)
}

// Create grants a role: the caller needs roleAssignments/write at the
// scope (Owner, User Access Administrator). A PUT repeating an existing
// assignment returns it unchanged (created false); the same name with
// another principal, role or scope is ErrUpdateNotPermitted; the same
// principal, role and scope under another name is ErrExists.
func (s *Service) Create(ctx context.Context, p *authn.Principal, a Assignment) (Assignment, bool, error) {
	if err := s.validate(&a); err != nil {
		return Assignment{}, false, err
	}
	if err := s.Check(ctx, p, ActionAssignmentWrite, a.Scope); err != nil {
		return Assignment{}, false, err
	}
	a.TenantID = p.TenantID
	a.CreatedBy, a.UpdatedBy = p.ObjectID, p.ObjectID
	return s.put(ctx, a)
}

// Assign grants a role without checking a caller: for bootstrap and
// services acting for the platform (never for a request's principal).
func (s *Service) Assign(ctx context.Context, a Assignment) (Assignment, bool, error) {
	if err := s.validate(&a); err != nil {
		return Assignment{}, false, err
	}
	return s.put(ctx, a)
}

func (s *Service) put(ctx context.Context, a Assignment) (Assignment, bool, error) {
	now := s.cfg.Now().UTC()
	a.CreatedOn, a.UpdatedOn = now, now
	key, ukey := assignmentKey(a.Scope, a.Name), uniqueKey(a)
	out, created := a, true
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		out, created = a, true
		rec, err := tx.Get(ctx, KindAssignment, key)
		switch {
		case err == nil:
			old, err := decodeAssignment(rec.Value)
			if err != nil {
				return fmt.Errorf("decode %s: %w", key, err)
			}
			if !strings.EqualFold(old.PrincipalID, a.PrincipalID) || !strings.EqualFold(old.RoleDefinitionID, a.RoleDefinitionID) {
				return fmt.Errorf("role assignment %s: %w", a.Name, ErrUpdateNotPermitted)
			}
			out, created = old, false
			return nil
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		if _, err := tx.Get(ctx, KindAssignmentUnique, ukey); err == nil {
			return fmt.Errorf("role assignment for %s: %w", a.PrincipalID, ErrExists)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		// Assignment names are unique per tenant in Azure; the ID key
		// already makes them unique per scope, which is what the URL addresses.
		b, err := json.Marshal(a)
		if err != nil {
			return err
		}
		if _, err := tx.Put(ctx, KindAssignment, key, b, store.Absent); err != nil {
			return err
		}
		_, err = tx.Put(ctx, KindAssignmentUnique, ukey, []byte(key), store.Absent)
		return err
	})
	if err != nil {
		return Assignment{}, false, fmt.Errorf("create role assignment: %w", err)
	}
	if created {
		s.dirty.Store(true)
	}
	return out, created, nil
}

// Get returns an assignment; the caller needs roleAssignments/read.
func (s *Service) Get(ctx context.Context, p *authn.Principal, scope, name string) (Assignment, error) {
	scope, err := NormalizeScope(scope)
	if err != nil {
		return Assignment{}, err
	}
	if err := s.Check(ctx, p, ActionAssignmentRead, scope); err != nil {
		return Assignment{}, err
	}
	rec, err := s.cfg.Store.Get(ctx, KindAssignment, assignmentKey(scope, name))
	if errors.Is(err, store.ErrNotFound) {
		return Assignment{}, fmt.Errorf("role assignment %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return Assignment{}, fmt.Errorf("get role assignment: %w", err)
	}
	return decodeAssignment(rec.Value)
}

// Delete removes an assignment and returns it; the caller needs
// roleAssignments/delete. A missing one is ErrNotFound.
func (s *Service) Delete(ctx context.Context, p *authn.Principal, scope, name string) (Assignment, error) {
	scope, err := NormalizeScope(scope)
	if err != nil {
		return Assignment{}, err
	}
	if err := s.Check(ctx, p, ActionAssignmentDelete, scope); err != nil {
		return Assignment{}, err
	}
	key := assignmentKey(scope, name)
	var old Assignment
	err = s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		rec, err := tx.Get(ctx, KindAssignment, key)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("role assignment %s: %w", name, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if old, err = decodeAssignment(rec.Value); err != nil {
			return err
		}
		if err := tx.Delete(ctx, KindAssignment, key, rec.Version); err != nil {
			return err
		}
		return tx.Delete(ctx, KindAssignmentUnique, uniqueKey(old), store.Any)
	})
	if err != nil {
		return Assignment{}, fmt.Errorf("delete role assignment: %w", err)
	}
	s.dirty.Store(true)
	return old, nil
}

// Filter selects assignments in List.
type Filter struct {
	// AtScope keeps only assignments at or above the scope ($filter=atScope()).
	AtScope bool
	// PrincipalID keeps one principal's assignments ($filter=principalId eq '…').
	PrincipalID string
}

// List returns the assignments at, above or below scope (only at or
// above with AtScope), as Azure's list does; the caller needs
// roleAssignments/read at the scope.
func (s *Service) List(ctx context.Context, p *authn.Principal, scope string, f Filter) ([]Assignment, error) {
	scope, err := NormalizeScope(scope)
	if err != nil {
		return nil, err
	}
	if err := s.Check(ctx, p, ActionAssignmentRead, scope); err != nil {
		return nil, err
	}
	idx, err := s.index(ctx)
	if err != nil {
		return nil, fmt.Errorf("list role assignments: %w", err)
	}
	var out []Assignment
	for _, a := range idx.all {
		if f.PrincipalID != "" && !strings.EqualFold(a.PrincipalID, f.PrincipalID) {
			continue
		}
		above := azure.InScope(scope, a.Scope)
		if above || (!f.AtScope && azure.InScope(a.Scope, scope)) {
			out = append(out, a)
		}
	}
	return out, nil
}

// ParseFilter reads an ARM $filter for role assignments: "", "atScope()",
// "principalId eq '{id}'" or "assignedTo('{id}')" (no groups here, so the
// same as principalId).
func ParseFilter(s string) (Filter, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Filter{}, nil
	}
	if strings.EqualFold(s, "atScope()") {
		return Filter{AtScope: true}, nil
	}
	if v, ok := ParseEq(s, "principalId"); ok {
		return Filter{PrincipalID: v}, nil
	}
	ls := strings.ToLower(s)
	if strings.HasPrefix(ls, "assignedto('") && strings.HasSuffix(s, "')") {
		return Filter{PrincipalID: s[len("assignedTo('") : len(s)-2]}, nil
	}
	return Filter{}, invalid("the $filter '%s' is not supported", s)
}

// ParseEq reads "{name} eq '{value}'" (name case-insensitive, ” escapes a quote).
func ParseEq(s, name string) (string, bool) {
	s = strings.TrimSpace(s)
	if len(s) < len(name) || !strings.EqualFold(s[:len(name)], name) {
		return "", false
	}
	rest := strings.TrimLeft(s[len(name):], " ")
	if len(rest) < 2 || !strings.EqualFold(rest[:2], "eq") {
		return "", false
	}
	rest = strings.TrimSpace(rest[2:])
	if len(rest) < 2 || rest[0] != '\'' || rest[len(rest)-1] != '\'' {
		return "", false
	}
	inner := rest[1 : len(rest)-1]
	if strings.Contains(strings.ReplaceAll(inner, "''", ""), "'") {
		return "", false
	}
	return strings.ReplaceAll(inner, "''", "'"), true
}

// Bootstrap makes adminObjectID Owner of the subscription. It is
// idempotent: the assignment name is derived from its inputs.
func (s *Service) Bootstrap(ctx context.Context, tenantID, subscriptionID, adminObjectID string) error {
	name := derivedGUID("bootstrap-owner", tenantID, subscriptionID, adminObjectID)
	_, _, err := s.Assign(ctx, Assignment{
		Name: name, Scope: "/subscriptions/" + subscriptionID, RoleDefinitionID: RoleOwner,
		PrincipalID: adminObjectID, PrincipalType: "ServicePrincipal", TenantID: tenantID,
		Description: "cvault bootstrap administrator",
	})
	if err != nil && !errors.Is(err, ErrExists) {
		return fmt.Errorf("authz: bootstrap owner: %w", err)
	}
	return nil
}

// derivedGUID is a name-based (version 5 layout, SHA-256) GUID.
func derivedGUID(parts ...string) string {
	h := sha256.Sum256([]byte(strings.ToLower(strings.Join(parts, "\x00"))))
	b := h[:16]
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	x := hex.EncodeToString(b)
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]
}
