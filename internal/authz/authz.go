// Package authz decides what an authenticated principal may do: Azure's
// built-in role definitions, role assignments as ARM resources
// (Microsoft.Authorization/roleAssignments) with scope inheritance, and
// Key Vault's legacy access policies. Every bearer handler asks it one
// question, Check(principal, action or dataAction, scope), and gets nil or
// an error matching ErrDenied.
//
// It serves seed 000 (a confidential VM's identity granted "release" by an
// access policy or the Managed HSM release-user role), seed 003 (an ISV's
// app granted Key Vault Crypto Service Encryption User on a customer's
// vault) and the bootstrap admin, Owner of its subscription but holding no
// key-vault data role.
package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/store"
)

// Store kinds owned by authz.
const (
	// KindAssignment holds role assignments keyed by their folded ARM ID.
	KindAssignment = "authz.assignment"
	// KindAssignmentUnique holds principal|role|scope → assignment ID, so a
	// duplicate grant is refused inside the same transaction.
	KindAssignmentUnique = "authz.assignment.unique"
)

var (
	// ErrDenied: the principal holds no role (or access policy) that grants
	// the action at the scope. Errors are *DeniedError.
	ErrDenied = errors.New("authz: denied")
	// ErrNotFound: no such role assignment or role definition.
	ErrNotFound = errors.New("authz: not found")
	// ErrExists: the same principal already holds the role at the scope
	// (Azure's RoleAssignmentExists).
	ErrExists = errors.New("authz: role assignment exists")
	// ErrUpdateNotPermitted: a PUT names an existing assignment with other
	// principal, role or scope (Azure's RoleAssignmentUpdateNotPermitted).
	ErrUpdateNotPermitted = errors.New("authz: role assignment update not permitted")
	// ErrInvalid: malformed input (scope, principal id, role definition id,
	// assignment name); the wrapped message says which.
	ErrInvalid = errors.New("authz: invalid request")
	// ErrRoleNotFound: the roleDefinitionId names no known role.
	ErrRoleNotFound = errors.New("authz: role definition does not exist")
)

// DeniedError names what was refused. It matches ErrDenied.
type DeniedError struct {
	ObjectID string // the caller's object id
	Action   string
	Scope    string
	// ByPolicy is set when a vault's access policies (not RBAC) refused.
	ByPolicy bool
}

func (e *DeniedError) Error() string {
	if e.ByPolicy {
		return fmt.Sprintf("authz: the access policies do not grant '%s' permission to '%s'", e.Action, e.ObjectID)
	}
	return fmt.Sprintf("authz: '%s' may not perform '%s' over scope '%s'", e.ObjectID, e.Action, e.Scope)
}

// Is makes errors.Is(err, ErrDenied) hold.
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }

// Config wires the service.
type Config struct {
	Store  store.Store
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// RefreshInterval bounds how often Check asks the store whether
	// assignments changed on another server (default 250 ms; negative:
	// every call). Writes through this Service are seen at once.
	RefreshInterval time.Duration
}

// Service evaluates and manages role assignments.
type Service struct {
	cfg   Config
	roles *roleTable

	idx     atomic.Pointer[index]
	dirty   atomic.Bool  // set by local writes: reload on the next call
	checked atomic.Int64 // unix nanos of the last Changes look
	mu      sync.Mutex   // serializes reloads
}

// New builds the service; the index is loaded on first use.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Logger == nil {
		return nil, errors.New("authz: Store and Logger are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = 250 * time.Millisecond
	}
	s := &Service{cfg: cfg, roles: newRoleTable(builtins())}
	s.dirty.Store(true)
	return s, nil
}

// grant is one assignment prepared for Check.
type grant struct {
	scope  string // folded (azure.Scope)
	tenant string
	role   *compiledRole
}

// index is an immutable snapshot of all assignments.
type index struct {
	version int64 // store.Changes at load
	byPrinc map[string][]grant
	all     []Assignment // sorted by key, for List
}

// Check reports whether p may perform action (a control-plane action or a
// data action, see IsDataAction) on the resource or scope. It denies by
// default and returns a *DeniedError naming the action and scope.
func (s *Service) Check(ctx context.Context, p *authn.Principal, action, scope string) error {
	if p == nil {
		return &DeniedError{Action: action, Scope: scope}
	}
	idx, err := s.index(ctx)
	if err != nil {
		return fmt.Errorf("authz: check %s: %w", action, err)
	}
	if idx.allows(p, strings.ToLower(action), scope) {
		return nil
	}
	return &DeniedError{ObjectID: p.ObjectID, Action: action, Scope: scope}
}

func (idx *index) allows(p *authn.Principal, a, scope string) bool {
	gs := idx.byPrinc[strings.ToLower(p.ObjectID)]
	if len(gs) == 0 {
		return false
	}
	data := isDataLower(a)
	target := azure.Scope(scope)
	for i := range gs {
		g := &gs[i]
		if g.tenant != "" && !strings.EqualFold(g.tenant, p.TenantID) {
			continue
		}
		if inScopeFolded(target, g.scope) && g.role.allows(a, data) {
			return true
		}
	}
	return false
}

// inScopeFolded is azure.InScope on already folded strings.
func inScopeFolded(s, scope string) bool {
	if scope == "/" {
		return true
	}
	return s == scope || (len(s) > len(scope) && s[len(scope)] == '/' && s[:len(scope)] == scope)
}

// index returns a current snapshot, reloading when this server wrote or
// when another server's write moved store.Changes (looked at no more
// often than RefreshInterval).
func (s *Service) index(ctx context.Context) (*index, error) {
	cur := s.idx.Load()
	if cur != nil && !s.dirty.Load() {
		iv := s.cfg.RefreshInterval
		now := s.cfg.Now().UnixNano()
		if iv > 0 && now-s.checked.Load() < int64(iv) {
			return cur, nil
		}
		if !s.mu.TryLock() {
			return cur, nil // another caller is looking; this snapshot is recent enough
		}
		defer s.mu.Unlock()
		v, err := s.cfg.Store.Changes(ctx, KindAssignment)
		if err != nil {
			return nil, err
		}
		s.checked.Store(now)
		if v == cur.version {
			return cur, nil
		}
		return s.reloadLocked(ctx)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.idx.Load(); cur != nil && !s.dirty.Load() {
		return cur, nil
	}
	return s.reloadLocked(ctx)
}

func (s *Service) reloadLocked(ctx context.Context) (*index, error) {
	s.dirty.Store(false)
	// Changes is read before the snapshot: a write landing between the
	// two reads only causes one extra reload later.
	v, err := s.cfg.Store.Changes(ctx, KindAssignment)
	if err != nil {
		s.dirty.Store(true)
		return nil, fmt.Errorf("load role assignments: %w", err)
	}
	var idx *index
	err = s.cfg.Store.View(ctx, func(r store.Reader) error {
		recs, err := r.List(ctx, KindAssignment, "", "", 0)
		if err != nil {
			return err
		}
		idx = &index{version: v, byPrinc: make(map[string][]grant, len(recs)), all: make([]Assignment, 0, len(recs))}
		for _, rec := range recs {
			a, err := decodeAssignment(rec.Value)
			if err != nil {
				return fmt.Errorf("assignment %s: %w", rec.Key, err)
			}
			idx.all = append(idx.all, a)
			role := s.roles.byID[strings.ToLower(a.RoleDefinitionID)]
			if role == nil {
				continue // a role unknown to this build grants nothing
			}
			k := strings.ToLower(a.PrincipalID)
			idx.byPrinc[k] = append(idx.byPrinc[k], grant{scope: azure.Scope(a.Scope), tenant: a.TenantID, role: role})
		}
		return nil
	})
	if err != nil {
		s.dirty.Store(true)
		return nil, fmt.Errorf("load role assignments: %w", err)
	}
	s.idx.Store(idx)
	s.checked.Store(s.cfg.Now().UnixNano())
	return idx, nil
}
