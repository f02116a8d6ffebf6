package identity

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/store"
)

// PutSystemAssignedIdentity returns the system-assigned identity of owner
// (an ARM resource ID: a VM, a disk encryption set), creating it — with its
// own principal and client ids and a ManagedIdentity service principal in
// the owner's subscription's tenant — when it does not exist yet. The
// identity's resource ID is the owner's ID, as Azure's xms_mirid of a
// system-assigned identity names its resource.
func (s *Service) PutSystemAssignedIdentity(ctx context.Context, owner string) (UserAssignedIdentity, error) {
	rid, err := azure.ParseResourceID(owner)
	if err != nil || rid.ResourceGroup == "" || len(rid.Names) == 0 {
		return UserAssignedIdentity{}, fmt.Errorf("%w: owner %q is not a resource ID", ErrInvalid, owner)
	}
	tenant, err := s.checkScope(ctx, rid.Subscription, rid.ResourceGroup)
	if err != nil {
		return UserAssignedIdentity{}, err
	}
	principalID, err := s.newGUID()
	if err != nil {
		return UserAssignedIdentity{}, err
	}
	clientID, err := s.newGUID()
	if err != nil {
		return UserAssignedIdentity{}, err
	}
	var out UserAssignedIdentity
	err = s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		var mi UserAssignedIdentity
		_, err := getJSON(ctx, tx, kindMI, miKey(owner), &mi)
		switch {
		case err == nil:
			if !mi.SystemAssigned {
				return fmt.Errorf("%w: %s is a user-assigned identity", ErrConflict, owner)
			}
			out = mi
			return nil
		case !errors.Is(err, ErrNotFound):
			return err
		}
		now := s.now()
		mi = UserAssignedIdentity{ID: owner, Name: rid.Name(), Subscription: rid.Subscription, ResourceGroup: rid.ResourceGroup,
			TenantID: tenant, PrincipalID: principalID, ClientID: clientID, Created: now, SystemAssigned: true}
		sp := ServicePrincipal{ObjectID: principalID, AppID: clientID, TenantID: tenant, AppOwnerTenantID: tenant,
			DisplayName: rid.Name(), Type: SPTypeManagedIdentity, AlternativeNames: []string{owner}, Created: now}
		if err := putJSON(ctx, tx, kindMI, miKey(owner), mi, store.Absent); err != nil {
			return err
		}
		if err := putJSON(ctx, tx, kindMIClient, clientID, miKey(owner), store.Absent); err != nil {
			return err
		}
		if err := s.putSP(ctx, tx, sp); err != nil {
			return err
		}
		out = mi
		return nil
	})
	if err != nil {
		return UserAssignedIdentity{}, fmt.Errorf("identity: put system-assigned identity: %w", err)
	}
	return out, nil
}

// SystemAssignedIdentity returns owner's system-assigned identity.
func (s *Service) SystemAssignedIdentity(ctx context.Context, owner string) (UserAssignedIdentity, error) {
	var mi UserAssignedIdentity
	if _, err := getJSON(ctx, s.cfg.Store, kindMI, miKey(owner), &mi); err != nil {
		return UserAssignedIdentity{}, err
	}
	if !mi.SystemAssigned {
		return UserAssignedIdentity{}, fmt.Errorf("system-assigned identity of %s: %w", owner, ErrNotFound)
	}
	return mi, nil
}

// DeleteSystemAssignedIdentity deletes owner's system-assigned identity,
// its principal and the owner's managed-identity secret; false when there
// was none.
func (s *Service) DeleteSystemAssignedIdentity(ctx context.Context, owner string) (bool, error) {
	existed := false
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		var mi UserAssignedIdentity
		_, err := getJSON(ctx, tx, kindMI, miKey(owner), &mi)
		if errors.Is(err, ErrNotFound) || (err == nil && !mi.SystemAssigned) {
			return nil
		}
		if err != nil {
			return err
		}
		existed = true
		for _, k := range [][2]string{{kindMI, miKey(owner)}, {kindMIClient, mi.ClientID},
			{kindSP, appKey(mi.TenantID, mi.PrincipalID)}, {kindSPApp, appKey(mi.TenantID, mi.ClientID)},
			{kindMIOwner, ownerKey(owner)}} {
			if err := deleteKey(ctx, tx, k[0], k[1]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("identity: delete system-assigned identity: %w", err)
	}
	return existed, nil
}

// PlatformIdentityToken issues a token for resource to a managed identity
// (a user-assigned identity's resource ID, or the owner ID of a
// system-assigned one) without a secret: the platform acting as the
// identity of its own resources, as Azure's resource providers do (a disk
// encryption set reaching its key). Callers are cvault's services, never a
// request's client.
func (s *Service) PlatformIdentityToken(ctx context.Context, identityID, resource string) (*Token, error) {
	resource = strings.TrimSuffix(resource, "/.default")
	if resource == "" {
		return nil, fmt.Errorf("%w: resource is required", ErrInvalid)
	}
	var mi UserAssignedIdentity
	if _, err := getJSON(ctx, s.cfg.Store, kindMI, miKey(strings.TrimRight(identityID, "/")), &mi); err != nil {
		return nil, fmt.Errorf("managed identity %s: %w", identityID, err)
	}
	return s.issue(ctx, mi.TenantID, Claims{Audience: jwt.Audience{resource}, ObjectID: mi.PrincipalID,
		Subject: mi.PrincipalID, AzP: mi.ClientID, AppID: mi.ClientID, AzPACR: "2", AppIDACR: "2",
		MIResourceID: mi.ID})
}
