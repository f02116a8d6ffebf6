package app_test

import (
	"testing"

	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/cvaulttest"
)

// A new tenant comes with a subscription its admin owns, as in Azure, so
// the customer of seed 003 can create its vault right away.
func TestNewTenantGetsAnOwnedSubscription(t *testing.T) {
	srv := cvaulttest.Start(t)
	a := srv.App
	tenant, admin, err := a.Identity.CreateTenant(t.Context(), nil, "Customer")
	if err != nil {
		t.Fatal(err)
	}
	subs, err := a.ARM.Subscriptions(t.Context(), tenant.ID)
	if err != nil || len(subs) != 1 {
		t.Fatalf("subscriptions of the new tenant = %v, %v", subs, err)
	}
	p := &authn.Principal{TenantID: tenant.ID, ObjectID: admin.ObjectID}
	if err := a.Authz.Check(t.Context(), p, "Microsoft.KeyVault/vaults/write", "/subscriptions/"+subs[0].ID+"/resourceGroups/rg"); err != nil {
		t.Errorf("the new tenant's admin does not own its subscription: %v", err)
	}
	// The bootstrap tenant's subscription stays out of the new tenant's reach.
	if err := a.Authz.Check(t.Context(), p, "Microsoft.Resources/subscriptions/read", "/subscriptions/"+a.Bootstrap.SubscriptionID); err == nil {
		t.Error("the new tenant's admin can read the bootstrap subscription")
	}
}
