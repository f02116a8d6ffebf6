package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"

	"github.com/cvault/cvault/internal/guest/cvmdisk"
	"github.com/cvault/cvault/internal/guest/skr"
	"github.com/cvault/cvault/internal/identity"
	"github.com/cvault/cvault/internal/release/policy"
)

// cvm-disk step names, in order.
var cvmDiskSteps = []string{"server", "resource-group", "cvm-vault", "des-refused", "des", "cvm", "guest-disk-key",
	"refuse-not-the-vm", "refuse-debug", "guest-writes-disk", "ciphertext-only"}

func cvmDiskScenario() Scenario {
	return Scenario{Name: "cvm-disk", Title: "Confidential VM disk encrypted with the customer's key, unwrapped only in the guest (seed 002, issue 8)",
		Steps: cvmDiskSteps, Run: runCVMDisk}
}

const (
	cvmVault   = "cvm-disk-kv"
	cvmKey     = "cvm-disk-key"
	cvmDES     = "cvm-des"
	cvmVM      = "cvm-cmk"
	cvmUpload  = "cvm-data"
	diskMarker = "seed 002: a confidential disk sector only the guest can read"
)

type cvmDiskEnv struct {
	*skrEnv
	keyURL   string
	desID    string
	desPID   string
	vmSecret string
	vmID     string
	diskKey  *cvmdisk.DiskKey
}

func runCVMDisk(ctx context.Context, cfg Config, r *Runner) error {
	e := &cvmDiskEnv{skrEnv: &skrEnv{clock: &clock{}}}
	stop, err := e.start(ctx, cfg, r)
	if stop != nil {
		defer stop()
	}
	if err != nil {
		return err
	}
	return r.steps(ctx, []namedStep{
		{"resource-group", e.resourceGroup}, {"cvm-vault", e.cvmVault}, {"des-refused", e.desRefused}, {"des", e.des},
		{"cvm", e.cvm}, {"guest-disk-key", e.guestDiskKey}, {"refuse-not-the-vm", e.refuseNotTheVM},
		{"refuse-debug", e.refuseDebugDisk}, {"guest-writes-disk", e.guestWritesDisk}, {"ciphertext-only", e.ciphertextOnly},
	})
}

func (e *cvmDiskEnv) accessPolicy(ctx context.Context, oid string, keys ...armkeyvault.KeyPermissions) error {
	vc, err := armkeyvault.NewVaultsClient(e.sub, e.admin, e.armOpts)
	if err != nil {
		return err
	}
	ap := &armkeyvault.AccessPolicyEntry{TenantID: to.Ptr(e.app.Bootstrap.TenantID), ObjectID: to.Ptr(oid), Permissions: &armkeyvault.Permissions{}}
	for _, k := range keys {
		ap.Permissions.Keys = append(ap.Permissions.Keys, to.Ptr(k))
	}
	_, err = vc.UpdateAccessPolicy(ctx, demoRG, cvmVault, armkeyvault.AccessPolicyUpdateKindAdd, armkeyvault.VaultAccessPolicyParameters{
		Properties: &armkeyvault.VaultAccessPolicyProperties{AccessPolicies: []*armkeyvault.AccessPolicyEntry{ap}}}, nil)
	return err
}

// cvmVault: a premium vault with purge protection and the DES key, an
// exportable RSA-HSM key with Azure's default confidential-VM release policy.
func (e *cvmDiskEnv) cvmVault(ctx context.Context) (string, error) {
	vc, err := armkeyvault.NewVaultsClient(e.sub, e.admin, e.armOpts)
	if err != nil {
		return "", err
	}
	tenant := e.app.Bootstrap.TenantID
	p, err := vc.BeginCreateOrUpdate(ctx, demoRG, cvmVault, armkeyvault.VaultCreateOrUpdateParameters{
		Location: to.Ptr(demoLoc),
		Properties: &armkeyvault.VaultProperties{
			TenantID: to.Ptr(tenant), EnableSoftDelete: to.Ptr(true), EnablePurgeProtection: to.Ptr(true),
			SKU: &armkeyvault.SKU{Family: to.Ptr(armkeyvault.SKUFamilyA), Name: to.Ptr(armkeyvault.SKUNamePremium)},
			AccessPolicies: []*armkeyvault.AccessPolicyEntry{{TenantID: to.Ptr(tenant), ObjectID: to.Ptr(e.app.Bootstrap.AdminObjectID),
				Permissions: &armkeyvault.Permissions{Keys: []*armkeyvault.KeyPermissions{to.Ptr(armkeyvault.KeyPermissionsCreate), to.Ptr(armkeyvault.KeyPermissionsGet)}}}},
		},
	}, nil)
	if err != nil {
		return "", err
	}
	v, err := p.PollUntilDone(ctx, nil)
	if err != nil {
		return "", err
	}
	e.vaultURI = *v.Properties.VaultURI
	kc, err := azkeys.NewClient(e.vaultURI, e.admin, &azkeys.ClientOptions{ClientOptions: e.armOpts.ClientOptions})
	if err != nil {
		return "", err
	}
	res, err := kc.CreateKey(ctx, cvmKey, azkeys.CreateKeyParameters{
		Kty: to.Ptr(azkeys.KeyTypeRSAHSM), KeySize: to.Ptr[int32](3072),
		KeyAttributes: &azkeys.KeyAttributes{Exportable: to.Ptr(true)},
		ReleasePolicy: &azkeys.KeyReleasePolicy{EncodedPolicy: policy.CVMDefault(e.app.Attestation.Issuer("default")), Immutable: to.Ptr(true)},
	}, nil)
	if err != nil {
		return "", err
	}
	e.keyURL = string(*res.Key.KID)
	return "premium vault " + cvmVault + " (purge protection) with exportable RSA-HSM key " + cvmKey + " and the default CVM release policy", nil
}

func (e *cvmDiskEnv) putDES(ctx context.Context) (armcompute.DiskEncryptionSet, error) {
	dc, err := armcompute.NewDiskEncryptionSetsClient(e.sub, e.admin, e.armOpts)
	if err != nil {
		return armcompute.DiskEncryptionSet{}, err
	}
	p, err := dc.BeginCreateOrUpdate(ctx, demoRG, cvmDES, armcompute.DiskEncryptionSet{
		Location: to.Ptr(demoLoc),
		Identity: &armcompute.EncryptionSetIdentity{Type: to.Ptr(armcompute.DiskEncryptionSetIdentityTypeSystemAssigned)},
		Properties: &armcompute.EncryptionSetProperties{
			EncryptionType: to.Ptr(armcompute.DiskEncryptionSetTypeConfidentialVMEncryptedWithCustomerKey),
			ActiveKey:      &armcompute.KeyForDiskEncryptionSet{KeyURL: to.Ptr(e.keyURL)},
		},
	}, nil)
	if err != nil {
		return armcompute.DiskEncryptionSet{}, err
	}
	res, err := p.PollUntilDone(ctx, nil)
	return res.DiskEncryptionSet, err
}

// desRefused: without the Orchestrator's get + release, Azure refuses the set.
func (e *cvmDiskEnv) desRefused(ctx context.Context) (string, error) {
	_, err := e.putDES(ctx)
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.ErrorCode != "KeyVaultAccessForbidden" || !strings.Contains(err.Error(), identity.ConfidentialVMOrchestratorAppID) {
		return "", fmt.Errorf("want KeyVaultAccessForbidden naming the Confidential VM Orchestrator, got %v", err)
	}
	return "DES refused: KeyVaultAccessForbidden — the Confidential VM Orchestrator (" + identity.ConfidentialVMOrchestratorAppID + ") lacks get", nil
}

// des: the customer grants the Orchestrator get + release; the set is made
// and its own identity gets get/wrapKey/unwrapKey (to wrap disk keys).
func (e *cvmDiskEnv) des(ctx context.Context) (string, error) {
	var sp struct {
		ID string `json:"id"`
	}
	if err := e.cli.Graph(ctx, http.MethodGet, "/servicePrincipals/"+identity.ConfidentialVMOrchestratorAppID, nil, &sp); err != nil {
		return "", err
	}
	if err := e.accessPolicy(ctx, sp.ID, armkeyvault.KeyPermissionsGet, armkeyvault.KeyPermissionsRelease); err != nil {
		return "", err
	}
	des, err := e.putDES(ctx)
	if err != nil {
		return "", err
	}
	e.desID, e.desPID = *des.ID, *des.Identity.PrincipalID
	if err := e.accessPolicy(ctx, e.desPID, armkeyvault.KeyPermissionsGet, armkeyvault.KeyPermissionsWrapKey, armkeyvault.KeyPermissionsUnwrapKey); err != nil {
		return "", err
	}
	return "Orchestrator (object " + sp.ID + ") granted get+release; DES " + cvmDES + " (ConfidentialVmEncryptedWithCustomerKey) created; its identity may wrap", nil
}

func (e *cvmDiskEnv) cvm(ctx context.Context) (string, error) {
	_, secret, err := e.confidentialVM(ctx, cvmVM, &e.desID)
	if err != nil {
		return "", err
	}
	e.vmSecret, e.vmID = secret, "/subscriptions/"+e.sub+"/resourceGroups/"+demoRG+"/providers/Microsoft.Compute/virtualMachines/"+cvmVM
	return "confidential VM " + cvmVM + " running; OS disk ConfidentialVM_DiskEncryptedWithCustomerKey, its data key wrapped by " + cvmKey + " (the platform cannot unwrap it)", nil
}

func (e *cvmDiskEnv) releaser(cred azcore.TokenCredential) *cvmdisk.Releaser {
	return &cvmdisk.Releaser{Client: e.hc, Roots: e.app.CA.Pool(), Credential: cred, ARM: e.base}
}

func (e *cvmDiskEnv) guestCredential() azcore.TokenCredential {
	return &skr.ManagedIdentity{Endpoint: e.miURL, Secret: e.vmSecret, Client: e.hc}
}

// guestDiskKey: the guest attests, the Orchestrator releases the DES key
// to the guest's transfer key, the guest unwraps it and its OS disk's key.
func (e *cvmDiskEnv) guestDiskKey(ctx context.Context) (string, error) {
	if err := e.newTransferKey(ctx); err != nil {
		return "", err
	}
	k, err := e.releaser(e.guestCredential()).Release(ctx, e.vmID, e.tk, e.token)
	if err != nil {
		return "", err
	}
	dek, err := k.UnwrapDataKey(k.OSDisk.WrappedKey)
	if err != nil {
		return "", err
	}
	clear(dek)
	e.diskKey = k
	return fmt.Sprintf("guest attested; the Orchestrator released %s to its TEE key (JWS by %s); the guest unwrapped its OS disk's data key", cvmKey, k.Signer), nil
}

func (e *cvmDiskEnv) refuseNotTheVM(ctx context.Context) (string, error) {
	_, err := e.releaser(e.admin).Release(ctx, e.vmID, e.tk, e.token)
	var rf *cvmdisk.Refusal
	if !errors.As(err, &rf) || rf.Status != http.StatusForbidden || rf.Code != "AuthorizationFailed" {
		return "", fmt.Errorf("want 403 AuthorizationFailed, got %v", err)
	}
	return "403 AuthorizationFailed: even the subscription's Owner cannot ask for the VM's disk key, only the VM's own identity", nil
}

func (e *cvmDiskEnv) refuseDebugDisk(ctx context.Context) (string, error) {
	tok, err := e.tk.Attest(ctx, e.hc, e.app.Attestation.Issuer("default"), e.evidence(true), "")
	if err != nil {
		return "", err
	}
	_, err = e.releaser(e.guestCredential()).Release(ctx, e.vmID, e.tk, tok)
	var rf *cvmdisk.Refusal
	if !errors.As(err, &rf) || rf.Status != http.StatusForbidden || rf.InnerCode != "ReleasePolicyNotSatisfied" {
		return "", fmt.Errorf("want 403 ReleasePolicyNotSatisfied, got %v", err)
	}
	return fmt.Sprintf("%d %s (%s): the vault's release policy refused the debug-enabled VM", rf.Status, rf.Code, rf.InnerCode), nil
}

func (e *cvmDiskEnv) disks() (*armcompute.DisksClient, error) {
	return armcompute.NewDisksClient(e.sub, e.admin, e.armOpts)
}

func (e *cvmDiskEnv) access(ctx context.Context, access armcompute.AccessLevel) (*pageblob.Client, error) {
	dc, err := e.disks()
	if err != nil {
		return nil, err
	}
	p, err := dc.BeginGrantAccess(ctx, demoRG, cvmUpload, armcompute.GrantAccessData{Access: to.Ptr(access), DurationInSeconds: to.Ptr[int32](600)}, nil)
	if err != nil {
		return nil, err
	}
	res, err := p.PollUntilDone(ctx, nil)
	if err != nil {
		return nil, err
	}
	return pageblob.NewClientWithNoCredential(*res.AccessSAS, &pageblob.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: e.hc}})
}

func (e *cvmDiskEnv) endAccess(ctx context.Context) error {
	dc, err := e.disks()
	if err != nil {
		return err
	}
	p, err := dc.BeginRevokeAccess(ctx, demoRG, cvmUpload, nil)
	if err != nil {
		return err
	}
	_, err = p.PollUntilDone(ctx, nil)
	return err
}

func sectorData() []byte {
	b := bytes.Repeat([]byte{'.'}, 2*4096)
	copy(b, diskMarker)
	copy(b[4096:], diskMarker)
	return b
}

// guestWritesDisk: a confidential upload disk on the same set; the guest
// reads its wrapped key from the signed URL's metadata, unwraps it with the
// released key and uploads sectors it sealed itself.
func (e *cvmDiskEnv) guestWritesDisk(ctx context.Context) (string, error) {
	dc, err := e.disks()
	if err != nil {
		return "", err
	}
	p, err := dc.BeginCreateOrUpdate(ctx, demoRG, cvmUpload, armcompute.Disk{Location: to.Ptr(demoLoc), Properties: &armcompute.DiskProperties{
		OSType:       to.Ptr(armcompute.OperatingSystemTypesLinux),
		CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionUpload), UploadSizeBytes: to.Ptr[int64](1 << 20)},
		SecurityProfile: &armcompute.DiskSecurityProfile{SecurityType: to.Ptr(armcompute.DiskSecurityTypesConfidentialVMDiskEncryptedWithCustomerKey),
			SecureVMDiskEncryptionSetID: to.Ptr(e.desID)},
	}}, nil)
	if err != nil {
		return "", err
	}
	if _, err := p.PollUntilDone(ctx, nil); err != nil {
		return "", err
	}
	blob, err := e.access(ctx, armcompute.AccessLevelWrite)
	if err != nil {
		return "", err
	}
	sec, err := e.sectors(ctx, blob)
	if err != nil {
		return "", err
	}
	recs, err := sec.Seal(sectorData(), 0)
	if err != nil {
		return "", err
	}
	if err := cvmdisk.WriteRecords(ctx, blob, recs, 0); err != nil {
		return "", err
	}
	if err := e.endAccess(ctx); err != nil {
		return "", err
	}
	return fmt.Sprintf("guest unwrapped disk %s's data key from the URL's metadata and uploaded 2 sectors it sealed (AES-256-GCM records)", cvmUpload), nil
}

// sectors: the guest reads the disk's metadata behind the URL, unwraps its
// data key with the released DES key and opens the disk's sector cipher.
func (e *cvmDiskEnv) sectors(ctx context.Context, blob *pageblob.Client) (*cvmdisk.Sectors, error) {
	meta, err := cvmdisk.ReadMeta(ctx, blob)
	if err != nil {
		return nil, err
	}
	dek, err := e.diskKey.UnwrapDataKey(meta.WrappedKey)
	if err != nil {
		return nil, err
	}
	sec, err := cvmdisk.NewSectors(dek, meta.DiskID)
	clear(dek)
	return sec, err
}

// ciphertextOnly: beginGetAccess serves ciphertext; only the guest opens it.
func (e *cvmDiskEnv) ciphertextOnly(ctx context.Context) (string, error) {
	blob, err := e.access(ctx, armcompute.AccessLevelRead)
	if err != nil {
		return "", err
	}
	raw, err := cvmdisk.ReadRecords(ctx, blob, 0, 2)
	if err != nil {
		return "", err
	}
	if bytes.Contains(raw, []byte(diskMarker[:24])) {
		return "", errors.New("the signed URL served plaintext")
	}
	sec, err := e.sectors(ctx, blob)
	if err != nil {
		return "", err
	}
	plain, err := sec.Open(raw, 0)
	if err != nil {
		return "", err
	}
	if !bytes.Equal(plain, sectorData()) {
		return "", errors.New("the guest's decryption differs from what it wrote")
	}
	if err := e.endAccess(ctx); err != nil {
		return "", err
	}
	return fmt.Sprintf("beginGetAccess served %d bytes of ciphertext records (no plaintext sector); the guest decrypted them to what it wrote", len(raw)), nil
}
