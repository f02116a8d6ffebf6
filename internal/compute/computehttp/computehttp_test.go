package computehttp_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/cvault/cvault/internal/authz"
	"github.com/cvault/cvault/internal/demo"
)

// setup runs seed 003's phases 1 and 2 over HTTPS (the demo's steps) and
// returns the cast with the provider's armcompute clients.
func setup(t testing.TB) (*demo.CrossTenantSetup, *demo.Compute) {
	t.Helper()
	return setupWith(t, demo.EnvOptions{DEKCacheTTL: -1})
}

func createDES(ctx context.Context, c *demo.Compute, rg, name string, body armcompute.DiskEncryptionSet) (armcompute.DiskEncryptionSet, error) {
	p, err := c.DES.BeginCreateOrUpdate(ctx, rg, name, body, nil)
	if err != nil {
		return armcompute.DiskEncryptionSet{}, err
	}
	res, err := p.PollUntilDone(ctx, nil)
	return res.DiskEncryptionSet, err
}

func wantCode(t *testing.T, err error, code, detail string) {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want ResponseError %s", err, code)
	}
	if re.ErrorCode != code || !strings.Contains(err.Error(), detail) {
		t.Fatalf("err = %s / %v, want %s containing %q", re.ErrorCode, err, code, detail)
	}
}

func wantAbsent(t *testing.T, c *demo.Compute, rg, name string) {
	t.Helper()
	_, err := c.DES.Get(context.Background(), rg, name, nil)
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusNotFound {
		t.Fatalf("DES %s after a failed create: %v, want 404", name, err)
	}
}

func newVault(t testing.TB, x *demo.CrossTenantSetup, name, location string) (vaultID, keyURL string) {
	t.Helper()
	ctx := context.Background()
	y := *x
	y.VaultName, y.Location = name, location
	if err := y.Env.ResourceGroup(ctx, y.Customer, y.CustomerRG, location); err != nil && !strings.Contains(err.Error(), "409") {
		t.Fatal(err)
	}
	if err := y.Env.ARM(ctx, y.Customer.Cred, "PUT", "/subscriptions/"+y.Customer.Subscription+"/resourceGroups/"+y.CustomerRG+
		"/providers/Microsoft.KeyVault/vaults/"+name+"?api-version=2024-11-01", map[string]any{"location": location,
		"properties": map[string]any{"tenantId": y.Customer.ID, "sku": map[string]string{"family": "A", "name": "premium"},
			"enableRbacAuthorization": true, "enablePurgeProtection": true}}, nil); err != nil {
		t.Fatal(err)
	}
	vaultID = "/subscriptions/" + y.Customer.Subscription + "/resourceGroups/" + y.CustomerRG + "/providers/Microsoft.KeyVault/vaults/" + name
	if err := y.Assign(ctx, y.Customer, vaultID, authz.RoleKeyVaultCryptoOfficer, y.Customer.ObjectID); err != nil {
		t.Fatal(err)
	}
	kc, err := y.KeyClient()
	if err != nil {
		t.Fatal(err)
	}
	res, err := kc.CreateKey(ctx, "k", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr(int32(2048))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return vaultID, string(*res.Key.KID)
}

// The cross-tenant negative matrix: every misconfiguration of seed 003
// ends the DES operation Failed with a precise error, and nothing is stored.
func TestCrossTenantNegativeMatrix(t *testing.T) {
	ctx := context.Background()
	x, c := setup(t)
	e := x.Env
	rg := x.ProviderRG
	fic := func(issuer, subject, audience string) map[string]any {
		return map[string]any{"name": "cmk-uami", "issuer": issuer, "subject": subject, "audiences": []string{audience}}
	}
	issuer := e.URL + "/" + x.Provider.ID + "/v2.0"
	putFIC := func(t *testing.T, f map[string]any) {
		t.Helper()
		if err := e.Graph(ctx, x.Provider.Cred, "POST", "/applications/"+x.AppObjectID+"/federatedIdentityCredentials", f, nil); err != nil {
			t.Fatal(err)
		}
	}
	tryDES := func(t *testing.T, name, code, detail string, body armcompute.DiskEncryptionSet) {
		t.Helper()
		_, err := createDES(ctx, c, rg, name, body)
		wantCode(t, err, code, detail)
		wantAbsent(t, c, rg, name)
	}

	t.Run("no federated credential", func(t *testing.T) {
		if err := e.Graph(ctx, x.Provider.Cred, "DELETE", "/applications/"+x.AppObjectID+"/federatedIdentityCredentials/cmk-uami", nil, nil); err != nil {
			t.Fatal(err)
		}
		tryDES(t, "des-nofic", "KeyVaultAccessForbidden", "AADSTS70021", x.DESBody())
	})
	for name, f := range map[string]map[string]any{
		"FIC wrong subject":  fic(issuer, "00000000-0000-0000-0000-000000000001", "api://AzureADTokenExchange"),
		"FIC wrong issuer":   fic(e.URL+"/"+x.Customer.ID+"/v2.0", x.UAMIPrincipalID, "api://AzureADTokenExchange"),
		"FIC wrong audience": fic(issuer, x.UAMIPrincipalID, "api://SomethingElse"),
	} {
		t.Run(name, func(t *testing.T) {
			putFIC(t, f)
			tryDES(t, "des-badfic", "KeyVaultAccessForbidden", "AADSTS70021", x.DESBody())
		})
	}
	putFIC(t, fic(issuer, x.UAMIPrincipalID, "api://AzureADTokenExchange"))
	if _, err := createDES(ctx, c, rg, "des-good", x.DESBody()); err != nil {
		t.Fatalf("the restored federated credential does not work: %v", err)
	}

	t.Run("no service principal in the customer tenant", func(t *testing.T) {
		if err := e.Graph(ctx, x.Customer.Cred, "DELETE", "/servicePrincipals/"+x.SPObjectID, nil, nil); err != nil {
			t.Fatal(err)
		}
		tryDES(t, "des-nosp", "KeyVaultAccessForbidden", "AADSTS700016", x.DESBody())
		var sp struct{ ID string }
		if err := e.Graph(ctx, x.Customer.Cred, "POST", "/servicePrincipals", map[string]string{"appId": x.AppID}, &sp); err != nil {
			t.Fatal(err)
		}
		x.SPObjectID = sp.ID
		if err := x.Assign(ctx, x.Customer, x.VaultID, authz.RoleKeyVaultCryptoServiceEncryption, sp.ID); err != nil {
			t.Fatal(err)
		}
	})

	vault2, key2 := newVault(t, x, x.VaultName+"b", x.Location)
	t.Run("role missing", func(t *testing.T) {
		b := x.DESBody()
		b.Properties.ActiveKey.KeyURL = to.Ptr(key2)
		tryDES(t, "des-norole", "KeyVaultAccessForbidden", "ForbiddenByRbac", b)
	})
	t.Run("role at the wrong scope", func(t *testing.T) {
		if err := x.Assign(ctx, x.Customer, vault2+"/keys/otherkey", authz.RoleKeyVaultCryptoServiceEncryption, x.SPObjectID); err != nil {
			t.Fatal(err)
		}
		b := x.DESBody()
		b.Properties.ActiveKey.KeyURL = to.Ptr(key2)
		tryDES(t, "des-wrongscope", "KeyVaultAccessForbidden", "ForbiddenByRbac", b)
	})
	t.Run("key disabled", func(t *testing.T) {
		if err := x.SetKeyEnabled(ctx, false); err != nil {
			t.Fatal(err)
		}
		tryDES(t, "des-disabled", "KeyVaultKeyDisabled", "disabled", x.DESBody())
		// Nor can a disk be created on the existing set.
		desID := "/subscriptions/" + x.Provider.Subscription + "/resourceGroups/" + rg + "/providers/Microsoft.Compute/diskEncryptionSets/des-good"
		p, err := c.Disks.BeginCreateOrUpdate(ctx, rg, "disk-disabled", armcompute.Disk{Location: to.Ptr(x.Location),
			Properties: &armcompute.DiskProperties{DiskSizeGB: to.Ptr(int32(1)), CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionEmpty)},
				Encryption: &armcompute.Encryption{Type: to.Ptr(armcompute.EncryptionTypeEncryptionAtRestWithCustomerKey), DiskEncryptionSetID: to.Ptr(desID)}}}, nil)
		if err == nil {
			_, err = p.PollUntilDone(ctx, nil)
		}
		wantCode(t, err, "KeyVaultKeyDisabled", "disabled")
		if _, err := c.Disks.Get(ctx, rg, "disk-disabled", nil); err == nil {
			t.Error("a disk was stored although its key is disabled")
		}
		if err := x.SetKeyEnabled(ctx, true); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("key in another region", func(t *testing.T) {
		vault3, key3 := newVault(t, x, x.VaultName+"c", "eastus")
		if err := x.Assign(ctx, x.Customer, vault3, authz.RoleKeyVaultCryptoServiceEncryption, x.SPObjectID); err != nil {
			t.Fatal(err)
		}
		b := x.DESBody()
		b.Properties.ActiveKey.KeyURL = to.Ptr(key3)
		tryDES(t, "des-region", "KeyVaultRegionMismatch", "eastus", b)
		// An update of the good set to that key fails and changes nothing.
		p, err := c.DES.BeginUpdate(ctx, rg, "des-good", armcompute.DiskEncryptionSetUpdate{Properties: &armcompute.DiskEncryptionSetUpdateProperties{
			ActiveKey: &armcompute.KeyForDiskEncryptionSet{KeyURL: to.Ptr(key3)}}}, nil)
		if err == nil {
			_, err = p.PollUntilDone(ctx, nil)
		}
		wantCode(t, err, "KeyVaultRegionMismatch", "eastus")
		got, err := c.DES.Get(ctx, rg, "des-good", nil)
		if err != nil || *got.Properties.ActiveKey.KeyURL != x.KeyURL {
			t.Errorf("the failed update changed the set: %v %v", got.Properties.ActiveKey, err)
		}
	})
}
