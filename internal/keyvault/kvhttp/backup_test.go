package kvhttp_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	kvarm "github.com/cvault/cvault/internal/arm"
	"github.com/cvault/cvault/internal/authz"
	"github.com/cvault/cvault/internal/keyvault"
)

// testBackupRestore drives BackupKey/RestoreKey through azkeys: a backup
// holds every version, reveals no private bytes, opens only untampered,
// only into a vault of the same subscription and geography, never over
// an existing name, and the restored key works with its old versions.
func testBackupRestore(t *testing.T, e *env, c *azkeys.Client) {
	ctx := t.Context()
	ec, err := c.CreateKey(ctx, "bk-ec", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM), Curve: to.Ptr(azkeys.CurveNameP256)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v1 := ec.Key.KID.Version()
	digest := sha256.Sum256([]byte("backup"))
	sig1, err := c.Sign(ctx, "bk-ec", v1, azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest[:]}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rot, err := c.RotateKey(ctx, "bk-ec", nil)
	if err != nil {
		t.Fatal(err)
	}
	oct, err := c.CreateKey(ctx, "bk-oct", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeOctHSM), KeySize: to.Ptr[int32](256)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dek := bytes.Repeat([]byte{7}, 32)
	wrapped, err := c.WrapKey(ctx, "bk-oct", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmA256KW), Value: dek}, nil)
	if err != nil {
		t.Fatal(err)
	}

	ecBackup, err := c.BackupKey(ctx, "bk-ec", nil)
	if err != nil {
		t.Fatal(err)
	}
	octBackup, err := c.BackupKey(ctx, "bk-oct", nil)
	if err != nil {
		t.Fatal(err)
	}
	// No private material, raw or encoded, appears in a blob.
	kvs := e.srv.App.KeyVault
	vault, err := kvs.VaultByName(ctx, "seed-kv")
	if err != nil {
		t.Fatal(err)
	}
	for name, blob := range map[string][]byte{"bk-ec": ecBackup.Value, "bk-oct": octBackup.Value} {
		vs, _, err := kvs.Versions(ctx, vault, name, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if name == "bk-ec" && len(vs) != 2 {
			t.Fatalf("bk-ec has %d versions", len(vs))
		}
		for _, v := range vs {
			priv, err := kvs.PrivateKey(v)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := priv.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			secrets := [][]byte{raw, priv.Oct}
			if priv.EC != nil {
				d, err := priv.EC.Bytes()
				if err != nil {
					t.Fatal(err)
				}
				secrets = append(secrets, d)
			}
			for _, s := range secrets {
				if len(s) == 0 {
					continue
				}
				for _, enc := range [][]byte{s, []byte(base64.StdEncoding.EncodeToString(s)), []byte(base64.RawURLEncoding.EncodeToString(s))} {
					if bytes.Contains(blob, enc) {
						t.Errorf("%s/%s: backup blob holds private material", name, v.Version)
					}
				}
			}
		}
	}

	restore := func(c *azkeys.Client, blob []byte) (azkeys.RestoreKeyResponse, error) {
		return c.RestoreKey(ctx, azkeys.RestoreKeyParameters{KeyBackup: blob}, nil)
	}
	if _, err := restore(c, ecBackup.Value); respCode(err) != "Conflict" {
		t.Errorf("restore over a live key: %v", err)
	}
	for i, tampered := range [][]byte{flip(ecBackup.Value, len(ecBackup.Value)/2), flip(ecBackup.Value, len(ecBackup.Value)-1), ecBackup.Value[:len(ecBackup.Value)-1]} {
		if _, err := restore(c, tampered); respCode(err) != "BadParameter" {
			t.Errorf("tampered blob %d: %v", i, err)
		}
	}

	// Another geography of the same subscription, another subscription
	// of the same tenant: refused. Another vault in the same geography
	// (north Europe, backed up in west Europe): restored.
	sub2 := "a0000000-0000-4000-8000-0000000000b2"
	if _, err := e.srv.App.ARM.EnsureSubscription(ctx, kvarm.Subscription{ID: sub2, TenantID: e.tenant, DisplayName: "second"}); err != nil {
		t.Fatal(err)
	}
	other := func(sub, rg, loc, name string) *azkeys.Client {
		if _, _, err := e.srv.App.ARM.PutResourceGroup(ctx, kvarm.ResourceGroup{Subscription: sub, Name: rg, Location: loc}); err != nil {
			t.Fatal(err)
		}
		v, _, err := kvs.PutVault(ctx, keyvault.Vault{Subscription: sub, ResourceGroup: rg, Name: name, Location: loc,
			Properties: keyvault.VaultProperties{TenantID: e.tenant, SKU: keyvault.SKUPremium, EnableRBACAuthorization: true}}, e.tenant)
		if err != nil {
			t.Fatal(err)
		}
		e.grant(t, v.ID(), e.srv.App.Bootstrap.AdminObjectID, authz.RoleKeyVaultCryptoOfficer)
		kc, err := azkeys.NewClient(e.srv.VaultURL(name), e.cred, &azkeys.ClientOptions{ClientOptions: e.srv.ClientOptions()})
		if err != nil {
			t.Fatal(err)
		}
		return kc
	}
	if _, err := restore(other(e.sub, "rg-us", "eastus", "bk-us"), ecBackup.Value); respCode(err) != "BadParameter" {
		t.Errorf("restore into another geography: %v", err)
	}
	if _, err := restore(other(sub2, "rg", "westeurope", "bk-sub2"), ecBackup.Value); respCode(err) != "BadParameter" {
		t.Errorf("restore into another subscription: %v", err)
	}
	ne := other(e.sub, "rg-ne", "northeurope", "bk-ne")
	if res, err := restore(ne, ecBackup.Value); err != nil || res.Key.KID.Version() != rot.Key.KID.Version() {
		t.Fatalf("restore into another vault of the geography: %+v %v", res, err)
	}
	if ok, err := ne.Verify(ctx, "bk-ec", v1, azkeys.VerifyParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Digest: digest[:], Signature: sig1.Result}, nil); err != nil || !*ok.Value {
		t.Errorf("old version's signature after restore elsewhere: %v %v", ok.Value, err)
	}

	// The round trip: backup → delete → (restore refused while deleted)
	// → purge → restore → the key works with all its versions.
	for _, name := range []string{"bk-ec", "bk-oct"} {
		if _, err := c.DeleteKey(ctx, name, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := restore(c, ecBackup.Value); respCode(err) != "Conflict" {
		t.Errorf("restore over a deleted key: %v", err)
	}
	for _, name := range []string{"bk-ec", "bk-oct"} {
		if _, err := c.PurgeDeletedKey(ctx, name, nil); err != nil {
			t.Fatal(err)
		}
	}
	res, err := restore(c, ecBackup.Value)
	if err != nil {
		t.Fatal(err)
	}
	if *res.Key.KID != *rot.Key.KID || !bytes.Equal(res.Key.X, rot.Key.X) || res.Key.D != nil {
		t.Errorf("restored key = %+v, want %s", res.Key, *rot.Key.KID)
	}
	n := 0
	for p := c.NewListKeyPropertiesVersionsPager("bk-ec", nil); p.More(); {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range page.Value {
			if v := k.KID.Version(); v != v1 && v != rot.Key.KID.Version() {
				t.Errorf("unexpected restored version %s", v)
			}
			n++
		}
	}
	if n != 2 {
		t.Errorf("restored %d versions, want 2", n)
	}
	sig, err := c.Sign(ctx, "bk-ec", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest[:]}, nil)
	if err != nil || !goVerify(t, res.Key, azkeys.SignatureAlgorithmES256, digest[:], sig.Result) {
		t.Errorf("sign with the restored key: %v", err)
	}
	if ok, err := c.Verify(ctx, "bk-ec", v1, azkeys.VerifyParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Digest: digest[:], Signature: sig1.Result}, nil); err != nil || !*ok.Value {
		t.Errorf("old signature after the round trip: %v", err)
	}
	if _, err := restore(c, octBackup.Value); err != nil {
		t.Fatal(err)
	}
	un, err := c.UnwrapKey(ctx, "bk-oct", oct.Key.KID.Version(), azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmA256KW), Value: wrapped.Result}, nil)
	if err != nil || !bytes.Equal(un.Result, dek) {
		t.Errorf("unwrap a pre-backup wrapping after restore: %x %v", un.Result, err)
	}
	mark("BackupKey", "RestoreKey")
}

func flip(b []byte, i int) []byte {
	out := bytes.Clone(b)
	out[i] ^= 0x01
	return out
}
