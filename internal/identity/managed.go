package identity

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/cvault/cvault/internal/store"
)

// UserAssignedIdentityType is the ARM resource type of user-assigned identities.
const UserAssignedIdentityType = "Microsoft.ManagedIdentity/userAssignedIdentities"

// UserAssignedIdentity is an ARM-managed identity with its own principal.
type UserAssignedIdentity struct {
	ID                   string                `json:"id"` // ARM resource ID, as first created
	Name                 string                `json:"name"`
	Subscription         string                `json:"subscription"`
	ResourceGroup        string                `json:"resourceGroup"`
	Location             string                `json:"location"`
	Tags                 map[string]string     `json:"tags,omitempty"`
	TenantID             string                `json:"tenantId"`
	PrincipalID          string                `json:"principalId"`
	ClientID             string                `json:"clientId"`
	FederatedCredentials []FederatedCredential `json:"federatedCredentials,omitempty"`
	Created              time.Time             `json:"created"`
	// SystemAssigned marks a system-assigned identity: ID is then its
	// owner's resource ID (a VM, a disk encryption set), whose lifetime
	// it shares. Such identities cannot hold federated credentials.
	SystemAssigned bool `json:"systemAssigned,omitempty"`
}

// IdentityResourceID returns the ARM ID of a user-assigned identity.
func IdentityResourceID(sub, rg, name string) string {
	return "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/" + UserAssignedIdentityType + "/" + name
}

var identityNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{2,127}$`)

func miKey(id string) string { return strings.ToLower(id) }

// checkScope resolves the subscription's tenant and that the group exists.
func (s *Service) checkScope(ctx context.Context, sub, rg string) (string, error) {
	if s.cfg.ARM == nil {
		return "", fmt.Errorf("subscription %s: %w", sub, ErrSubscriptionNotFound)
	}
	tenant, err := s.cfg.ARM.TenantOfSubscription(ctx, sub)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, ErrNotFound) {
		return "", fmt.Errorf("subscription %s: %w", sub, ErrSubscriptionNotFound)
	}
	if err != nil {
		return "", err
	}
	if rg != "" {
		err := s.cfg.ARM.ResourceGroupExists(ctx, sub, rg)
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, ErrNotFound) {
			return "", fmt.Errorf("resource group %s: %w", rg, ErrResourceGroupNotFound)
		}
		if err != nil {
			return "", err
		}
	}
	return strings.ToLower(tenant), nil
}

// SubscriptionTenant returns the tenant a subscription belongs to (and
// checks the resource group when rg is not "").
func (s *Service) SubscriptionTenant(ctx context.Context, sub, rg string) (string, error) {
	return s.checkScope(ctx, sub, rg)
}

// PutUserAssignedIdentity creates the identity (new principal and client
// ids, a service principal of type ManagedIdentity in the subscription's
// tenant) or updates its location and tags. created tells which.
func (s *Service) PutUserAssignedIdentity(ctx context.Context, sub, rg, name, location string, tags map[string]string) (UserAssignedIdentity, bool, error) {
	if !identityNameRE.MatchString(name) {
		return UserAssignedIdentity{}, false, fmt.Errorf("%w: the identity name must be 3-128 letters, digits, '-' or '_', starting with a letter or digit", ErrInvalid)
	}
	location = strings.ToLower(strings.ReplaceAll(location, " ", ""))
	if location == "" {
		return UserAssignedIdentity{}, false, fmt.Errorf("%w: location is required", ErrInvalid)
	}
	tenant, err := s.checkScope(ctx, sub, rg)
	if err != nil {
		return UserAssignedIdentity{}, false, err
	}
	principalID, err := s.newGUID()
	if err != nil {
		return UserAssignedIdentity{}, false, err
	}
	clientID, err := s.newGUID()
	if err != nil {
		return UserAssignedIdentity{}, false, err
	}
	id := IdentityResourceID(sub, rg, name)
	var out UserAssignedIdentity
	created := false
	err = s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		var mi UserAssignedIdentity
		v, err := getJSON(ctx, tx, kindMI, miKey(id), &mi)
		switch {
		case err == nil:
			mi.Location, mi.Tags = location, tags
			out, created = mi, false
			return putJSON(ctx, tx, kindMI, miKey(id), mi, v)
		case !errors.Is(err, ErrNotFound):
			return err
		}
		now := s.now()
		mi = UserAssignedIdentity{ID: id, Name: name, Subscription: sub, ResourceGroup: rg, Location: location, Tags: tags,
			TenantID: tenant, PrincipalID: principalID, ClientID: clientID, Created: now}
		sp := ServicePrincipal{ObjectID: principalID, AppID: clientID, TenantID: tenant, AppOwnerTenantID: tenant,
			DisplayName: name, Type: SPTypeManagedIdentity, AlternativeNames: []string{id}, Created: now}
		if err := putJSON(ctx, tx, kindMI, miKey(id), mi, store.Absent); err != nil {
			return err
		}
		if err := putJSON(ctx, tx, kindMIClient, clientID, miKey(id), store.Absent); err != nil {
			return err
		}
		if err := s.putSP(ctx, tx, sp); err != nil {
			return err
		}
		out, created = mi, true
		return nil
	})
	if err != nil {
		return UserAssignedIdentity{}, false, fmt.Errorf("identity: put user-assigned identity: %w", err)
	}
	return out, created, nil
}

// GetUserAssignedIdentity returns an identity by subscription, group and name.
func (s *Service) GetUserAssignedIdentity(ctx context.Context, sub, rg, name string) (UserAssignedIdentity, error) {
	var mi UserAssignedIdentity
	_, err := getJSON(ctx, s.cfg.Store, kindMI, miKey(IdentityResourceID(sub, rg, name)), &mi)
	return mi, err
}

// ListUserAssignedIdentities lists a subscription's identities, or a
// group's when rg is not "".
func (s *Service) ListUserAssignedIdentities(ctx context.Context, sub, rg string) ([]UserAssignedIdentity, error) {
	if _, err := s.checkScope(ctx, sub, rg); err != nil {
		return nil, err
	}
	prefix := "/subscriptions/" + sub + "/"
	if rg != "" {
		prefix += "resourcegroups/" + rg + "/"
	}
	all, err := listJSON[UserAssignedIdentity](ctx, s.cfg.Store, kindMI, strings.ToLower(prefix))
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(mi UserAssignedIdentity) bool { return mi.SystemAssigned }), nil
}

// DeleteUserAssignedIdentity deletes the identity, its principal and its
// secret; false when it did not exist.
func (s *Service) DeleteUserAssignedIdentity(ctx context.Context, sub, rg, name string) (bool, error) {
	id := IdentityResourceID(sub, rg, name)
	existed := false
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		var mi UserAssignedIdentity
		_, err := getJSON(ctx, tx, kindMI, miKey(id), &mi)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		existed = true
		for _, k := range [][2]string{{kindMI, miKey(id)}, {kindMIClient, mi.ClientID},
			{kindSP, appKey(mi.TenantID, mi.PrincipalID)}, {kindSPApp, appKey(mi.TenantID, mi.ClientID)},
			{kindMIOwner, ownerKey(id)}} {
			if err := deleteKey(ctx, tx, k[0], k[1]); err != nil {
				return err
			}
		}
		return nil
	})
	return existed, err
}

func (s *Service) miByClientID(ctx context.Context, clientID string) (*UserAssignedIdentity, error) {
	var key string
	if _, err := getJSON(ctx, s.cfg.Store, kindMIClient, strings.ToLower(clientID), &key); err != nil {
		return nil, err
	}
	var mi UserAssignedIdentity
	if _, err := getJSON(ctx, s.cfg.Store, kindMI, key, &mi); err != nil {
		return nil, err
	}
	return &mi, nil
}

// PutIdentityFederatedCredential adds or replaces (by name) a federated
// credential on a user-assigned identity.
func (s *Service) PutIdentityFederatedCredential(ctx context.Context, sub, rg, name string, f FederatedCredential) (FederatedCredential, bool, error) {
	id, err := s.newGUID()
	if err != nil {
		return FederatedCredential{}, false, err
	}
	f.ID = id
	var out FederatedCredential
	created := false
	err = s.updateMI(ctx, sub, rg, name, func(mi *UserAssignedIdentity) error {
		list, c, err := addFIC(mi.FederatedCredentials, f)
		if err != nil {
			return err
		}
		mi.FederatedCredentials, created = list, c
		out = *findFIC(list, f.Name)
		return nil
	})
	return out, created, err
}

// DeleteIdentityFederatedCredential removes a credential by name; false
// when it did not exist.
func (s *Service) DeleteIdentityFederatedCredential(ctx context.Context, sub, rg, name, fic string) (bool, error) {
	existed := false
	err := s.updateMI(ctx, sub, rg, name, func(mi *UserAssignedIdentity) error {
		n := len(mi.FederatedCredentials)
		mi.FederatedCredentials = slices.DeleteFunc(mi.FederatedCredentials, func(f FederatedCredential) bool { return strings.EqualFold(f.Name, fic) })
		existed = len(mi.FederatedCredentials) < n
		return nil
	})
	return existed, err
}

func (s *Service) updateMI(ctx context.Context, sub, rg, name string, fn func(*UserAssignedIdentity) error) error {
	id := miKey(IdentityResourceID(sub, rg, name))
	return s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		var mi UserAssignedIdentity
		v, err := getJSON(ctx, tx, kindMI, id, &mi)
		if err != nil {
			return err
		}
		if err := fn(&mi); err != nil {
			return err
		}
		return putJSON(ctx, tx, kindMI, id, mi, v)
	})
}

// miOwner holds a managed-identity secret: the resource (a VM, or a
// user-assigned identity for itself) whose secret it is and the identities
// that secret may obtain tokens for.
type miOwner struct {
	Owner      string     `json:"owner"`
	Identities []string   `json:"identities"` // lower-case resource IDs
	Secret     secretHash `json:"secret"`
}

// ownerKey derives a stable record key from the owner's resource ID, so a
// new secret for the same owner replaces the old one.
func ownerKey(owner string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(owner)))
	return hex.EncodeToString(sum[:16])
}

// IssueOwnerSecret issues (or rotates) the managed-identity secret of
// owner, which may then obtain tokens for the given identities only. The
// secret is returned once; it is "{ownerKey}.{random}".
func (s *Service) IssueOwnerSecret(ctx context.Context, owner string, identities []string) (string, error) {
	key := ownerKey(owner)
	raw, h, err := s.newSecret()
	if err != nil {
		return "", err
	}
	ids := make([]string, len(identities))
	for i, id := range identities {
		ids[i] = miKey(id)
	}
	rec := miOwner{Owner: owner, Identities: ids, Secret: h}
	err = s.cfg.Store.Update(ctx, func(tx store.Tx) error { return putJSON(ctx, tx, kindMIOwner, key, rec, store.Any) })
	if err != nil {
		return "", fmt.Errorf("identity: issue managed identity secret: %w", err)
	}
	return key + "." + raw, nil
}

// IssueIdentitySecret issues or rotates the secret with which a
// workload obtains tokens for this user-assigned identity
// (`cvault identity secret`).
func (s *Service) IssueIdentitySecret(ctx context.Context, sub, rg, name string) (string, error) {
	mi, err := s.GetUserAssignedIdentity(ctx, sub, rg, name)
	if err != nil {
		return "", err
	}
	return s.IssueOwnerSecret(ctx, mi.ID, []string{mi.ID})
}

// IdentitySelector picks one of an owner's identities (all empty: the
// only one).
type IdentitySelector struct {
	ClientID   string
	ObjectID   string
	ResourceID string
}

// ManagedIdentityToken authenticates a managed-identity secret and issues a
// token for resource to the selected identity among those the secret's
// owner may use. A wrong secret is ErrUnauthorized; an identity not
// attached to the owner is ErrNotFound.
func (s *Service) ManagedIdentityToken(ctx context.Context, secret string, sel IdentitySelector, resource string) (*Token, error) {
	key, raw, ok := strings.Cut(secret, ".")
	if !ok || len(key) != 32 {
		return nil, ErrUnauthorized
	}
	var owner miOwner
	if _, err := getJSON(ctx, s.cfg.Store, kindMIOwner, key, &owner); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, ErrUnauthorized
		}
		return nil, err
	}
	if !owner.Secret.matches(raw) {
		return nil, ErrUnauthorized
	}
	resource = strings.TrimSuffix(resource, "/.default")
	if resource == "" {
		return nil, fmt.Errorf("%w: resource is required", ErrInvalid)
	}
	var chosen *UserAssignedIdentity
	for _, id := range owner.Identities {
		var mi UserAssignedIdentity
		if _, err := getJSON(ctx, s.cfg.Store, kindMI, id, &mi); err != nil {
			if errors.Is(err, ErrNotFound) {
				continue
			}
			return nil, err
		}
		if (sel.ClientID == "" || strings.EqualFold(sel.ClientID, mi.ClientID)) &&
			(sel.ObjectID == "" || strings.EqualFold(sel.ObjectID, mi.PrincipalID)) &&
			(sel.ResourceID == "" || strings.EqualFold(strings.TrimRight(sel.ResourceID, "/"), mi.ID)) {
			if chosen != nil {
				return nil, fmt.Errorf("%w: several identities are assigned; select one with client_id, object_id or mi_res_id", ErrInvalid)
			}
			chosen = &mi
		}
	}
	if chosen == nil {
		return nil, fmt.Errorf("identity not assigned to this resource: %w", ErrNotFound)
	}
	return s.issue(ctx, chosen.TenantID, Claims{Audience: jwt.Audience{resource}, ObjectID: chosen.PrincipalID,
		Subject: chosen.PrincipalID, AzP: chosen.ClientID, AppID: chosen.ClientID, AzPACR: "2", AppIDACR: "2",
		MIResourceID: chosen.ID})
}
