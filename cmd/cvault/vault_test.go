package main

import (
	"strings"
	"testing"

	"github.com/cvault/cvault/internal/arm"
	"github.com/cvault/cvault/internal/authz"
	"github.com/cvault/cvault/internal/cvaulttest"
)

// TestVaultAndKeyCommands: a new user creates a premium vault with the
// CLI, grants itself Key Vault Crypto Officer and manages keys.
func TestVaultAndKeyCommands(t *testing.T) {
	srv := cvaulttest.Start(t)
	b := srv.App.Bootstrap
	if _, _, err := srv.App.ARM.PutResourceGroup(t.Context(), arm.ResourceGroup{Subscription: b.SubscriptionID, Name: "rg", Location: "westeurope"}); err != nil {
		t.Fatal(err)
	}
	common := []string{"--server", srv.URL, "--ca", srv.App.TLSFiles.CAPath, "--data", srv.Config.DataDir, "--subscription", b.SubscriptionID}
	out, err := run(t, append([]string{"vault", "create", "cli-kv", "-g", "rg", "--enable-purge-protection"}, common...)...)
	if err != nil || !strings.Contains(out, `"vaultUri": "`+srv.VaultURL("cli-kv")) || !strings.Contains(out, `"enablePurgeProtection": true`) {
		t.Fatalf("vault create: %v\n%s", err, out)
	}
	if out, err := run(t, append([]string{"vault", "list"}, common...)...); err != nil || !strings.Contains(out, "cli-kv") {
		t.Fatalf("vault list: %v\n%s", err, out)
	}
	scope := "/subscriptions/" + b.SubscriptionID + "/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/cli-kv"
	if _, _, err := srv.App.Authz.Assign(t.Context(), authz.Assignment{Name: "6f0c1b6e-0000-4000-8000-000000000001", Scope: scope,
		RoleDefinitionID: authz.RoleKeyVaultCryptoOfficer, PrincipalID: b.AdminObjectID, TenantID: b.TenantID}); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, append([]string{"key", "create", "cli-kv", "k1", "--kty", "EC-HSM", "--crv", "P-256"}, common...)...); err != nil || !strings.Contains(out, `"kty": "EC-HSM"`) {
		t.Fatalf("key create: %v\n%s", err, out)
	}
	if out, err := run(t, append([]string{"key", "list", "cli-kv"}, common...)...); err != nil || !strings.Contains(out, "k1") {
		t.Fatalf("key list: %v\n%s", err, out)
	}
	// No disk encryption set uses k1: disabled without a warning, enabled again.
	if out, err := run(t, append([]string{"key", "disable", "cli-kv", "k1"}, common...)...); err != nil || !strings.Contains(out, `"enabled": false`) || strings.Contains(out, "warning") {
		t.Fatalf("key disable: %v\n%s", err, out)
	}
	if out, err := run(t, append([]string{"key", "enable", "cli-kv", "k1"}, common...)...); err != nil || !strings.Contains(out, `"enabled": true`) {
		t.Fatalf("key enable: %v\n%s", err, out)
	}
	if _, err := run(t, append([]string{"vault", "show", "cli-kv", "-g", "rg"}, common...)...); err != nil {
		t.Fatalf("vault show: %v", err)
	}
	if _, err := run(t, append([]string{"vault", "delete", "cli-kv", "-g", "rg"}, common...)...); err != nil {
		t.Fatalf("vault delete: %v", err)
	}
}
