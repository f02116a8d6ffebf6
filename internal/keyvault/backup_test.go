package keyvault_test

import (
	"errors"
	"testing"
	"time"

	"github.com/cvault/cvault/internal/keyvault"
)

// TestRestoreOtherDeployment: a backup opens only under the root key that
// sealed it; another deployment (another root key) refuses it as a bad
// parameter and writes nothing.
func TestRestoreOtherDeployment(t *testing.T) {
	svc, _, v := newService(t)
	other, _, ov := newService(t) // same vault name, subscription and tenant; another root key
	ctx := t.Context()
	if _, err := svc.CreateKey(ctx, v, "k", keyvault.CreateParams{KeyType: "EC"}); err != nil {
		t.Fatal(err)
	}
	blob, err := svc.BackupKey(ctx, v, "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.RestoreKey(ctx, ov, blob); !errors.Is(err, keyvault.ErrBadParameter) {
		t.Fatalf("restore into another deployment: %v", err)
	}
	if _, err := other.Key(ctx, ov, "k", ""); !errors.Is(err, keyvault.ErrKeyNotFound) {
		t.Errorf("a refused restore left a key: %v", err)
	}
}

func TestGeography(t *testing.T) {
	for _, c := range []struct {
		a, b string
		same bool
	}{
		{"westeurope", "North Europe", true}, {"eastus", "westus2", true}, {"eastus", "canadacentral", false},
		{"westeurope", "uksouth", false}, {"japaneast", "japanwest", true}, {"my-dc-1", "my-dc-1", true}, {"my-dc-1", "my-dc-2", false},
	} {
		if got := keyvault.Geography(c.a) == keyvault.Geography(c.b); got != c.same {
			t.Errorf("%s, %s: same geography = %v, want %v", c.a, c.b, got, c.same)
		}
	}
}

// TestPurgeDue moves the clock past the scheduled purge dates: a deleted
// vault goes with its keys (purge protection or not, as Azure purges after
// the retention period), a deleted key of a live vault goes, nothing else.
func TestPurgeDue(t *testing.T) {
	svc, clk, v := newService(t)
	ctx := t.Context()
	const tenant = "11111111-1111-4111-8111-111111111111"
	mk := func(name string, days int, protect bool) *keyvault.Vault {
		out, _, err := svc.PutVault(ctx, keyvault.Vault{Subscription: "s", ResourceGroup: "rg", Name: name, Location: "eastus",
			Properties: keyvault.VaultProperties{TenantID: tenant, SKU: keyvault.SKUStandard, SoftDeleteRetentionInDays: days, EnablePurgeProtection: protect}}, tenant)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.CreateKey(ctx, &out, "k", keyvault.CreateParams{KeyType: "EC"}); err != nil {
			t.Fatal(err)
		}
		return &out
	}
	short, protected := mk("kv-short", 7, false), mk("kv-protected", 10, true)
	for _, name := range []string{short.Name, protected.Name} {
		if err := svc.DeleteVault(ctx, "s", "rg", name); err != nil {
			t.Fatal(err)
		}
	}
	// A deleted key of the live vault (90 days) and a live key.
	for _, k := range []string{"gone", "kept"} {
		if _, err := svc.CreateKey(ctx, v, k, keyvault.CreateParams{KeyType: "EC"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.DeleteKey(ctx, v, "gone"); err != nil {
		t.Fatal(err)
	}
	deletedVaults := func() int {
		vs, err := svc.DeletedVaults(ctx, "s")
		if err != nil {
			t.Fatal(err)
		}
		return len(vs)
	}
	for _, step := range []struct {
		advance      time.Duration
		vaults, keys int
		left         int
	}{
		{0, 0, 0, 2},
		{7*24*time.Hour - time.Second, 0, 0, 2},
		{time.Second, 1, 0, 1},         // kv-short's date
		{3 * 24 * time.Hour, 1, 0, 0},  // kv-protected's date: protection ends with retention
		{80 * 24 * time.Hour, 0, 1, 0}, // the deleted key's 90 days
		{365 * 24 * time.Hour, 0, 0, 0},
	} {
		clk.Add(step.advance)
		nv, nk, err := svc.PurgeDue(ctx)
		if err != nil || nv != step.vaults || nk != step.keys || deletedVaults() != step.left {
			t.Fatalf("after +%v: purged %d vaults, %d keys (%v), %d deleted vaults left; want %d, %d, %d",
				step.advance, nv, nk, err, deletedVaults(), step.vaults, step.keys, step.left)
		}
	}
	// The purged names are free, their keys gone; the live key stays.
	if err := svc.CheckVaultName(ctx, "kv-short"); err != nil {
		t.Errorf("name after purge: %v", err)
	}
	again := mk("kv-short", 7, false)
	if vs, _, err := svc.Versions(ctx, again, "k", "", 0); err != nil || len(vs) != 1 {
		t.Errorf("a re-created vault sees %d versions of k (%v), want only its own", len(vs), err)
	}
	if _, err := svc.Key(ctx, v, "kept", ""); err != nil {
		t.Errorf("live key: %v", err)
	}
	if _, err := svc.DeletedKey(ctx, v, "gone"); !errors.Is(err, keyvault.ErrKeyNotFound) {
		t.Errorf("deleted key after its purge date: %v", err)
	}
}

func TestCheckVaultName(t *testing.T) {
	svc, _, v := newService(t)
	ctx := t.Context()
	for name, want := range map[string]error{
		"fresh-name": nil, v.Name: keyvault.ErrVaultNameTaken, "KV-ROT": keyvault.ErrVaultNameTaken,
		"ab": keyvault.ErrInvalidName, "a--b": keyvault.ErrInvalidName, "1abc": keyvault.ErrInvalidName,
	} {
		if err := svc.CheckVaultName(ctx, name); !errors.Is(err, want) || (want == nil && err != nil) {
			t.Errorf("%q: %v, want %v", name, err, want)
		}
	}
	if err := svc.DeleteVault(ctx, "s", "rg", v.Name); err != nil {
		t.Fatal(err)
	}
	if err := svc.CheckVaultName(ctx, v.Name); !errors.Is(err, keyvault.ErrVaultNameTaken) {
		t.Errorf("a soft-deleted vault's name: %v", err)
	}
}
