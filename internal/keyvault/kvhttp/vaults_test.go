package kvhttp_test

import (
	"slices"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	kvarm "github.com/cvault/cvault/internal/arm"
)

// TestArmkeyvaultLifecycle drives Microsoft.KeyVault/vaults through the
// official armkeyvault client with the seeds' vault properties.
func TestArmkeyvaultLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	vc := e.vaults
	create := func(rg, name string, p armkeyvault.VaultCreateOrUpdateParameters) (armkeyvault.VaultsClientCreateOrUpdateResponse, error) {
		poller, err := vc.BeginCreateOrUpdate(ctx, rg, name, p, nil)
		if err != nil {
			return armkeyvault.VaultsClientCreateOrUpdateResponse{}, err
		}
		return poller.PollUntilDone(ctx, nil)
	}
	// Seed 003: purge protection and the RBAC permission model; seed 000:
	// premium sku and tenantId.
	res, err := create("rg", "cmk-vault", e.seedVault(true, true))
	if err != nil {
		t.Fatal(err)
	}
	p := res.Properties
	if *p.SKU.Name != armkeyvault.SKUNamePremium || *p.TenantID != e.tenant || !*p.EnablePurgeProtection || !*p.EnableRbacAuthorization ||
		!*p.EnableSoftDelete || *p.SoftDeleteRetentionInDays != 90 || *p.ProvisioningState != armkeyvault.VaultProvisioningStateSucceeded ||
		*p.VaultURI != e.srv.VaultURL("cmk-vault") {
		t.Errorf("created vault properties = %+v", p)
	}
	got, err := vc.Get(ctx, "rg", "CMK-Vault", nil) // names compare case-insensitively
	if err != nil || *got.Name != "cmk-vault" || *got.ID != "/subscriptions/"+e.sub+"/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/cmk-vault" {
		t.Fatalf("get = %+v, %v", got, err)
	}

	// Seed 000: an access-policy vault.
	ap := e.seedVault(false, false)
	ap.Properties.AccessPolicies = []*armkeyvault.AccessPolicyEntry{{TenantID: to.Ptr(e.tenant), ObjectID: to.Ptr(e.srv.App.Bootstrap.AdminObjectID),
		Permissions: &armkeyvault.Permissions{Keys: []*armkeyvault.KeyPermissions{to.Ptr(armkeyvault.KeyPermissionsGet), to.Ptr(armkeyvault.KeyPermissionsCreate)}}}}
	if _, err := create("rg", "skr-vault", ap); err != nil {
		t.Fatal(err)
	}
	upd, err := vc.Update(ctx, "rg", "skr-vault", armkeyvault.VaultPatchParameters{Tags: map[string]*string{"seed": to.Ptr("000")},
		Properties: &armkeyvault.VaultPatchProperties{EnabledForDiskEncryption: to.Ptr(true)}}, nil)
	if err != nil || *upd.Tags["seed"] != "000" || !*upd.Properties.EnabledForDiskEncryption || len(upd.Properties.AccessPolicies) != 1 {
		t.Fatalf("patch = %+v, %v", upd, err)
	}
	if _, err := vc.UpdateAccessPolicy(ctx, "rg", "skr-vault", armkeyvault.AccessPolicyUpdateKindAdd, armkeyvault.VaultAccessPolicyParameters{
		Properties: &armkeyvault.VaultAccessPolicyProperties{AccessPolicies: []*armkeyvault.AccessPolicyEntry{{TenantID: to.Ptr(e.tenant),
			ObjectID: to.Ptr(e.srv.App.Bootstrap.AdminObjectID), Permissions: &armkeyvault.Permissions{Keys: []*armkeyvault.KeyPermissions{to.Ptr(armkeyvault.KeyPermissionsWrapKey)}}}}}}, nil); err != nil {
		t.Fatal(err)
	}
	// The access policy works on the data plane: create and wrap are
	// granted, sign is not.
	kc, err := azkeys.NewClient(e.srv.VaultURL("skr-vault"), e.cred, &azkeys.ClientOptions{ClientOptions: e.srv.ClientOptions()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kc.CreateKey(ctx, "dek-kek", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeOctHSM)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.WrapKey(ctx, "dek-kek", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmA256KW), Value: make([]byte, 32)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.UnwrapKey(ctx, "dek-kek", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmA256KW), Value: make([]byte, 40)}, nil); respCode(err) != "Forbidden" {
		t.Errorf("unwrap without the permission: %v", err)
	}

	// Purge protection cannot be turned off.
	if _, err := vc.Update(ctx, "rg", "cmk-vault", armkeyvault.VaultPatchParameters{Properties: &armkeyvault.VaultPatchProperties{
		EnablePurgeProtection: to.Ptr(false)}}, nil); respCode(err) != "BadRequest" {
		t.Errorf("turning purge protection off: %v", err)
	}
	// Names are global.
	if _, _, err := e.srv.App.ARM.PutResourceGroup(ctx, kvarm.ResourceGroup{Subscription: e.sub, Name: "rg2", Location: "eastus"}); err != nil {
		t.Fatal(err)
	}
	if _, err := create("rg2", "cmk-vault", e.seedVault(true, false)); respCode(err) != "VaultAlreadyExists" {
		t.Errorf("same name in another group: %v", err)
	}

	count := func(pager interface {
		More() bool
	}, next func() (int, error)) int {
		n := 0
		for pager.More() {
			k, err := next()
			if err != nil {
				t.Fatal(err)
			}
			n += k
		}
		return n
	}
	byRG := vc.NewListByResourceGroupPager("rg", nil)
	if n := count(byRG, func() (int, error) { p, err := byRG.NextPage(ctx); return len(p.Value), err }); n != 2 {
		t.Errorf("list by group: %d vaults", n)
	}
	bySub := vc.NewListBySubscriptionPager(nil)
	if n := count(bySub, func() (int, error) { p, err := bySub.NextPage(ctx); return len(p.Value), err }); n != 2 {
		t.Errorf("list by subscription: %d vaults", n)
	}

	// Delete → soft-deleted; purge refused under purge protection.
	for _, name := range []string{"cmk-vault", "skr-vault"} {
		if _, err := vc.Delete(ctx, "rg", name, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := vc.Get(ctx, "rg", "cmk-vault", nil); respCode(err) != "ResourceNotFound" {
		t.Errorf("get deleted vault: %v", err)
	}
	dv, err := vc.GetDeleted(ctx, "cmk-vault", "westeurope", nil)
	if err != nil || !*dv.Properties.PurgeProtectionEnabled {
		t.Fatalf("get deleted: %+v %v", dv, err)
	}
	deleted := vc.NewListDeletedPager(nil)
	if n := count(deleted, func() (int, error) { p, err := deleted.NextPage(ctx); return len(p.Value), err }); n != 2 {
		t.Errorf("deleted vaults: %d", n)
	}
	if _, err := create("rg", "cmk-vault", e.seedVault(true, true)); respCode(err) != "ConflictError" {
		t.Errorf("re-create a deleted name: %v", err)
	}
	purge := func(name string) error {
		p, err := vc.BeginPurgeDeleted(ctx, name, "westeurope", nil)
		if err != nil {
			return err
		}
		_, err = p.PollUntilDone(ctx, nil)
		return err
	}
	if err := purge("cmk-vault"); respCode(err) != "VaultPurgeProtected" {
		t.Errorf("purge under purge protection: %v", err)
	}
	if err := purge("skr-vault"); err != nil {
		t.Fatal(err)
	}
	if _, err := create("rg2", "skr-vault", e.seedVault(true, false)); err != nil {
		t.Errorf("name free again after purge: %v", err)
	}
	// Recover (createMode recover) brings the protected vault back.
	rec := e.seedVault(true, true)
	rec.Properties.CreateMode = to.Ptr(armkeyvault.CreateModeRecover)
	if _, err := create("rg", "cmk-vault", rec); err != nil {
		t.Fatalf("recover: %v", err)
	}
	if _, err := vc.Get(ctx, "rg", "cmk-vault", nil); err != nil {
		t.Errorf("get recovered: %v", err)
	}
}

// TestArmkeyvaultPagingAndNames: vault lists page with $top and nextLink
// (armkeyvault's pagers follow them), and checkNameAvailability answers
// as Azure's does.
func TestArmkeyvaultPagingAndNames(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	vc := e.vaults
	if _, _, err := e.srv.App.ARM.PutResourceGroup(ctx, kvarm.ResourceGroup{Subscription: e.sub, Name: "rg2", Location: "westeurope"}); err != nil {
		t.Fatal(err)
	}
	create := func(rg, name string) {
		p, err := vc.BeginCreateOrUpdate(ctx, rg, name, e.seedVault(true, false), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.PollUntilDone(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"pg-a", "pg-b", "pg-c", "pg-d", "pg-e"} {
		create("rg", n)
	}
	create("rg2", "pg-other")
	create("rg", "pg-f")
	if _, err := vc.Delete(ctx, "rg", "pg-f", nil); err != nil { // deleted vaults are not listed
		t.Fatal(err)
	}

	byRG := vc.NewListByResourceGroupPager("rg", &armkeyvault.VaultsClientListByResourceGroupOptions{Top: to.Ptr[int32](2)})
	var names []string
	pages := 0
	for byRG.More() {
		p, err := byRG.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(p.Value) > 2 {
			t.Errorf("page of %d vaults with $top=2", len(p.Value))
		}
		for _, v := range p.Value {
			names = append(names, *v.Name)
		}
	}
	if want := []string{"pg-a", "pg-b", "pg-c", "pg-d", "pg-e"}; pages < 3 || !slices.Equal(names, want) {
		t.Errorf("by group: %d pages %v, want >= 3 pages %v", pages, names, want)
	}
	bySub := vc.NewListBySubscriptionPager(&armkeyvault.VaultsClientListBySubscriptionOptions{Top: to.Ptr[int32](4)})
	names, pages = nil, 0
	for bySub.More() {
		p, err := bySub.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, v := range p.Value {
			names = append(names, *v.Name)
		}
	}
	if pages != 2 || len(names) != 6 || !slices.Contains(names, "pg-other") {
		t.Errorf("by subscription: %d pages %v", pages, names)
	}

	check := func(name string) armkeyvault.CheckNameAvailabilityResult {
		res, err := vc.CheckNameAvailability(ctx, armkeyvault.VaultCheckNameAvailabilityParameters{Name: to.Ptr(name),
			Type: to.Ptr("Microsoft.KeyVault/vaults")}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res.CheckNameAvailabilityResult
	}
	if r := check("pg-free"); !*r.NameAvailable || r.Reason != nil {
		t.Errorf("free name: %+v", r)
	}
	for name, reason := range map[string]armkeyvault.Reason{
		"PG-A": armkeyvault.ReasonAlreadyExists, "pg-f": armkeyvault.ReasonAlreadyExists, // taken; soft-deleted
		"x": armkeyvault.ReasonAccountNameInvalid, "pg--a": armkeyvault.ReasonAccountNameInvalid, "pg_a": armkeyvault.ReasonAccountNameInvalid,
	} {
		if r := check(name); *r.NameAvailable || r.Reason == nil || *r.Reason != reason || r.Message == nil || *r.Message == "" {
			t.Errorf("%s: %+v, want %s", name, r, reason)
		}
	}
}
