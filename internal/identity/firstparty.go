package identity

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/cvault/cvault/internal/store"
)

// First-party applications: Microsoft's service principals that exist in
// every Entra tenant and that customers grant access to by their appId.
const (
	// ConfidentialVMOrchestratorAppID is the "Confidential VM Orchestrator"
	// (seed 002): a customer grants it get + release on the key of a
	// ConfidentialVmEncryptedWithCustomerKey disk encryption set, and the
	// platform releases that key to the attested VM as it.
	ConfidentialVMOrchestratorAppID = "bf7b6499-ff71-4aa2-97a4-f372087be7f0"
	// MicrosoftServicesTenantID owns Microsoft's first-party applications.
	MicrosoftServicesTenantID = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
)

// firstPartyApps are the first-party apps cvault instantiates in every
// tenant, with their display names.
var firstPartyApps = map[string]string{
	ConfidentialVMOrchestratorAppID: "Confidential VM Orchestrator",
}

// newFirstPartySPs builds the first-party service principals of a new
// tenant (ids drawn outside the tenant's transaction).
func (s *Service) newFirstPartySPs(tenant string, now time.Time) ([]ServicePrincipal, error) {
	var out []ServicePrincipal
	for appID, name := range firstPartyApps {
		id, err := s.newGUID()
		if err != nil {
			return nil, err
		}
		out = append(out, ServicePrincipal{ObjectID: id, AppID: appID, TenantID: strings.ToLower(tenant),
			AppOwnerTenantID: MicrosoftServicesTenantID, DisplayName: name, Type: SPTypeApplication, Created: now})
	}
	return out, nil
}

// EnsureFirstPartyServicePrincipal returns the service principal of
// first-party app appID in tenant, creating it if the tenant predates it
// (first-party principals are made with every tenant).
func (s *Service) EnsureFirstPartyServicePrincipal(ctx context.Context, tenant, appID string) (ServicePrincipal, error) {
	name, ok := firstPartyApps[strings.ToLower(appID)]
	if !ok {
		return ServicePrincipal{}, fmt.Errorf("%w: %s is not a first-party application", ErrInvalid, appID)
	}
	if _, err := s.GetTenant(ctx, tenant); err != nil {
		return ServicePrincipal{}, err
	}
	sp, err := s.GetServicePrincipal(ctx, tenant, appID)
	if err == nil || !errors.Is(err, ErrNotFound) {
		return sp, err
	}
	id, err := s.newGUID()
	if err != nil {
		return ServicePrincipal{}, err
	}
	sp = ServicePrincipal{ObjectID: id, AppID: strings.ToLower(appID), TenantID: strings.ToLower(tenant),
		AppOwnerTenantID: MicrosoftServicesTenantID, DisplayName: name, Type: SPTypeApplication, Created: s.now()}
	err = s.cfg.Store.Update(ctx, func(tx store.Tx) error { return s.putSP(ctx, tx, sp) })
	if err != nil {
		if errors.Is(err, store.ErrConflict) { // made concurrently
			return s.GetServicePrincipal(ctx, tenant, appID)
		}
		return ServicePrincipal{}, fmt.Errorf("identity: first-party service principal: %w", err)
	}
	return sp, nil
}

// FirstPartyToken issues a token for resource to first-party app appID as
// its service principal in tenant: the platform acting as Microsoft's own
// application (the Confidential VM Orchestrator releasing a disk key).
// Callers are cvault's services, never a request's client.
func (s *Service) FirstPartyToken(ctx context.Context, tenant, appID, resource string) (*Token, error) {
	resource = strings.TrimSuffix(resource, "/.default")
	if resource == "" {
		return nil, fmt.Errorf("%w: resource is required", ErrInvalid)
	}
	sp, err := s.EnsureFirstPartyServicePrincipal(ctx, tenant, appID)
	if err != nil {
		return nil, err
	}
	return s.issue(ctx, sp.TenantID, Claims{Audience: jwt.Audience{resource}, ObjectID: sp.ObjectID, Subject: sp.ObjectID,
		AzP: sp.AppID, AppID: sp.AppID, AzPACR: "2", AppIDACR: "2"})
}
