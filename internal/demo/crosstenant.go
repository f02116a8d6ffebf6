package demo

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/authorization/armauthorization/v2"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/msi/armmsi"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"

	"github.com/cvault/cvault/internal/authz"
)

// CrossTenantSetup is seed 003's cast: the provider (tenant 1) with its
// multi-tenant app, user-assigned identity and federated credential; the
// customer (tenant 2) with the app's service principal, a premium vault with
// purge protection, a key, and the role for the app.
type CrossTenantSetup struct {
	Env                *Env
	Location           string
	Provider, Customer Tenant
	ProviderRG         string
	CustomerRG         string
	AppObjectID, AppID string
	UAMIID             string
	UAMIPrincipalID    string
	SPObjectID         string
	VaultName, VaultID string
	KeyName, KeyURL    string
}

// NewCrossTenantSetup starts an empty cast in location.
func NewCrossTenantSetup(env *Env, location string) *CrossTenantSetup {
	return &CrossTenantSetup{Env: env, Location: location, Provider: env.Admin, ProviderRG: "XTCMKDemo", CustomerRG: "CustomerKeys",
		VaultName: "custkv" + randHex(4), KeyName: "cmk"}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

func newGUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Phase1 is the provider's identity setup.
func (x *CrossTenantSetup) Phase1(ctx context.Context, r *Runner) error {
	e := x.Env
	if err := step(r, "provider-app", "provider registers a multi-tenant app (AzureADMultipleOrgs)", func() (string, error) {
		var app struct{ ID, AppID string }
		err := e.Graph(ctx, x.Provider.Cred, "POST", "/applications",
			map[string]string{"displayName": "ContosoCMKDemo", "signInAudience": "AzureADMultipleOrgs"}, &app)
		x.AppObjectID, x.AppID = app.ID, app.AppID
		return "appId " + app.AppID, err
	}); err != nil {
		return err
	}
	if err := step(r, "provider-uami", "provider creates a user-assigned managed identity", func() (string, error) {
		if err := e.ResourceGroup(ctx, x.Provider, x.ProviderRG, x.Location); err != nil {
			return "", err
		}
		c, err := armmsi.NewUserAssignedIdentitiesClient(x.Provider.Subscription, x.Provider.Cred, e.ARMOptions())
		if err != nil {
			return "", err
		}
		res, err := c.CreateOrUpdate(ctx, x.ProviderRG, "ContosoCMKDemoUA", armmsi.Identity{Location: to.Ptr(x.Location)}, nil)
		if err != nil {
			return "", err
		}
		x.UAMIID, x.UAMIPrincipalID = *res.ID, *res.Properties.PrincipalID
		return "principalId " + x.UAMIPrincipalID, nil
	}); err != nil {
		return err
	}
	return step(r, "provider-fic", "provider adds the identity as the app's federated credential", func() (string, error) {
		fic := map[string]any{"name": "cmk-uami", "issuer": e.URL + "/" + x.Provider.ID + "/v2.0", "subject": x.UAMIPrincipalID,
			"audiences": []string{"api://AzureADTokenExchange"}, "description": "UAMI as credential for CMK"}
		return "audience api://AzureADTokenExchange", e.Graph(ctx, x.Provider.Cred, "POST", "/applications/"+x.AppObjectID+"/federatedIdentityCredentials", fic, nil)
	})
}

// Phase2 is the customer's: install the app, vault, key, role.
func (x *CrossTenantSetup) Phase2(ctx context.Context, r *Runner) error {
	e := x.Env
	if err := step(r, "customer", "a customer tenant with its own subscription", func() (string, error) {
		t, err := e.NewTenant(ctx, "Customer")
		x.Customer = t
		return "tenant " + t.ID, err
	}); err != nil {
		return err
	}
	if err := step(r, "customer-sp", "customer installs the provider's app (service principal)", func() (string, error) {
		var sp struct{ ID string }
		err := e.Graph(ctx, x.Customer.Cred, "POST", "/servicePrincipals", map[string]string{"appId": x.AppID}, &sp)
		x.SPObjectID = sp.ID
		return "objectId " + sp.ID, err
	}); err != nil {
		return err
	}
	if err := step(r, "customer-vault", "customer creates a premium vault with purge protection (RBAC)", func() (string, error) {
		if err := e.ResourceGroup(ctx, x.Customer, x.CustomerRG, x.Location); err != nil {
			return "", err
		}
		c, err := armkeyvault.NewVaultsClient(x.Customer.Subscription, x.Customer.Cred, e.ARMOptions())
		if err != nil {
			return "", err
		}
		p, err := c.BeginCreateOrUpdate(ctx, x.CustomerRG, x.VaultName, armkeyvault.VaultCreateOrUpdateParameters{
			Location: to.Ptr(x.Location),
			Properties: &armkeyvault.VaultProperties{TenantID: to.Ptr(x.Customer.ID),
				SKU:                     &armkeyvault.SKU{Family: to.Ptr(armkeyvault.SKUFamilyA), Name: to.Ptr(armkeyvault.SKUNamePremium)},
				EnableRbacAuthorization: to.Ptr(true), EnableSoftDelete: to.Ptr(true), EnablePurgeProtection: to.Ptr(true)},
		}, nil)
		if err != nil {
			return "", err
		}
		res, err := p.PollUntilDone(ctx, nil)
		if err != nil {
			return "", err
		}
		x.VaultID = *res.ID
		return x.VaultName, nil
	}); err != nil {
		return err
	}
	if err := step(r, "customer-key", "customer (Key Vault Crypto Officer) creates an RSA key", func() (string, error) {
		if err := x.Assign(ctx, x.Customer, x.VaultID, authz.RoleKeyVaultCryptoOfficer, x.Customer.ObjectID); err != nil {
			return "", err
		}
		kc, err := x.KeyClient()
		if err != nil {
			return "", err
		}
		res, err := kc.CreateKey(ctx, x.KeyName, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr(int32(3072))}, nil)
		if err != nil {
			return "", err
		}
		x.KeyURL = string(*res.Key.KID)
		return x.KeyURL, nil
	}); err != nil {
		return err
	}
	return step(r, "customer-grant", "customer grants the app Key Vault Crypto Service Encryption User", func() (string, error) {
		return "on " + x.VaultName, x.Assign(ctx, x.Customer, x.VaultID, authz.RoleKeyVaultCryptoServiceEncryption, x.SPObjectID)
	})
}

// Assign creates a role assignment at scope as t.
func (x *CrossTenantSetup) Assign(ctx context.Context, t Tenant, scope, role, principal string) error {
	c, err := armauthorization.NewRoleAssignmentsClient(t.Subscription, t.Cred, x.Env.ARMOptions())
	if err != nil {
		return err
	}
	_, err = c.Create(ctx, scope, newGUID(), armauthorization.RoleAssignmentCreateParameters{Properties: &armauthorization.RoleAssignmentProperties{
		PrincipalID: to.Ptr(principal), RoleDefinitionID: to.Ptr("/providers/Microsoft.Authorization/roleDefinitions/" + role)}}, nil)
	return err
}

// KeyClient is the customer's azkeys client on the vault.
func (x *CrossTenantSetup) KeyClient() (*azkeys.Client, error) {
	return azkeys.NewClient(x.Env.VaultURL(x.VaultName), x.Customer.Cred, &azkeys.ClientOptions{ClientOptions: x.Env.ClientOptions()})
}

// SetKeyEnabled is the customer's kill switch.
func (x *CrossTenantSetup) SetKeyEnabled(ctx context.Context, on bool) error {
	kc, err := x.KeyClient()
	if err != nil {
		return err
	}
	_, err = kc.UpdateKey(ctx, x.KeyName, "", azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Enabled: to.Ptr(on)}}, nil)
	return err
}

// DESBody is seed 003's DES: the user-assigned identity, the customer's key
// URL and the provider's app as federatedClientId.
func (x *CrossTenantSetup) DESBody() armcompute.DiskEncryptionSet {
	return armcompute.DiskEncryptionSet{
		Location: to.Ptr(x.Location),
		Identity: &armcompute.EncryptionSetIdentity{Type: to.Ptr(armcompute.DiskEncryptionSetIdentityTypeUserAssigned),
			UserAssignedIdentities: map[string]*armcompute.UserAssignedIdentitiesValue{x.UAMIID: {}}},
		Properties: &armcompute.EncryptionSetProperties{
			ActiveKey:         &armcompute.KeyForDiskEncryptionSet{KeyURL: to.Ptr(x.KeyURL)},
			EncryptionType:    to.Ptr(armcompute.DiskEncryptionSetTypeEncryptionAtRestWithCustomerKey),
			FederatedClientID: to.Ptr(x.AppID),
		},
	}
}

// Compute are the provider's armcompute clients.
type Compute struct {
	DES   *armcompute.DiskEncryptionSetsClient
	Disks *armcompute.DisksClient
	VMs   *armcompute.VirtualMachinesClient
}

// ComputeClients builds armcompute clients for t.
func (e *Env) ComputeClients(t Tenant) (*Compute, error) {
	f, err := armcompute.NewClientFactory(t.Subscription, t.Cred, e.ARMOptions())
	if err != nil {
		return nil, err
	}
	return &Compute{DES: f.NewDiskEncryptionSetsClient(), Disks: f.NewDisksClient(), VMs: f.NewVirtualMachinesClient()}, nil
}

// PageClient opens a disk's signed URL with azblob.
func (e *Env) PageClient(sas string) (*pageblob.Client, error) {
	return pageblob.NewClientWithNoCredential(sas, &pageblob.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: e.HTTP}})
}

type nopCloser struct{ io.ReadSeeker }

func (nopCloser) Close() error { return nil }

// WriteDisk uploads data to an Upload disk through its signed URL.
func (e *Env) WriteDisk(ctx context.Context, c *Compute, rg, disk string, data []byte) error {
	p, err := c.Disks.BeginGrantAccess(ctx, rg, disk, armcompute.GrantAccessData{Access: to.Ptr(armcompute.AccessLevelWrite), DurationInSeconds: to.Ptr(int32(600))}, nil)
	if err != nil {
		return err
	}
	res, err := p.PollUntilDone(ctx, nil)
	if err != nil {
		return err
	}
	pc, err := e.PageClient(*res.AccessSAS)
	if err != nil {
		return err
	}
	for off := 0; off < len(data); off += 4 << 20 {
		n := min(4<<20, len(data)-off)
		if _, err := pc.UploadPages(ctx, nopCloser{bytes.NewReader(data[off : off+n])}, blob.HTTPRange{Offset: int64(off), Count: int64(n)}, nil); err != nil {
			return err
		}
	}
	ep, err := c.Disks.BeginRevokeAccess(ctx, rg, disk, nil)
	if err != nil {
		return err
	}
	_, err = ep.PollUntilDone(ctx, nil)
	return err
}

// ReadDisk reads n bytes of a disk through a read-only signed URL.
func (e *Env) ReadDisk(ctx context.Context, c *Compute, rg, disk string, n int) ([]byte, error) {
	p, err := c.Disks.BeginGrantAccess(ctx, rg, disk, armcompute.GrantAccessData{Access: to.Ptr(armcompute.AccessLevelRead), DurationInSeconds: to.Ptr(int32(600))}, nil)
	if err != nil {
		return nil, err
	}
	res, err := p.PollUntilDone(ctx, nil)
	if err != nil {
		return nil, err
	}
	pc, err := e.PageClient(*res.AccessSAS)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	_, derr := pc.DownloadBuffer(ctx, buf, &blob.DownloadBufferOptions{Range: blob.HTTPRange{Offset: 0, Count: int64(n)}, BlockSize: 4 << 20})
	ep, err := c.Disks.BeginRevokeAccess(ctx, rg, disk, nil)
	if err == nil {
		_, err = ep.PollUntilDone(ctx, nil)
	}
	return buf, errors.Join(derr, err)
}

// Cross-tenant step names, in order.
var crossTenantSteps = []string{"provider-app", "provider-uami", "provider-fic", "customer", "customer-sp", "customer-vault",
	"customer-key", "customer-grant", "provider-des", "provider-disk", "read-back", "provider-vm", "deallocate", "key-off",
	"start-refused", "read-refused", "key-on", "start", "read-again"}

func crossTenantScenario() Scenario {
	return Scenario{Name: "cross-tenant", Title: "Managed disks encrypted with a customer's key in another tenant (seed 003)",
		Steps: crossTenantSteps, Run: func(ctx context.Context, cfg Config, r *Runner) error {
			env, stop, err := StartEnv(ctx, EnvOptions{Logs: cfg.Logs})
			if err != nil {
				return err
			}
			defer stop()
			return CrossTenant(ctx, env, r)
		}}
}

// step runs one step, its message saying what it showed.
func step(r *Runner, name, what string, fn func() (string, error)) error {
	return r.Step(name, func() (string, error) {
		detail, err := fn()
		if detail != "" {
			what += " (" + detail + ")"
		}
		return what, err
	})
}

// setUpCrossTenant runs seed 003's identity and key setup (Phase1, Phase2)
// in location and returns the cast with the provider's compute clients.
func setUpCrossTenant(ctx context.Context, env *Env, r *Runner, location string) (*CrossTenantSetup, *Compute, error) {
	x := NewCrossTenantSetup(env, location)
	if err := x.Phase1(ctx, r); err != nil {
		return nil, nil, err
	}
	if err := x.Phase2(ctx, r); err != nil {
		return nil, nil, err
	}
	c, err := env.ComputeClients(x.Provider)
	if err != nil {
		return nil, nil, err
	}
	return x, c, nil
}

// CrossTenant is seed 003 end to end, then the customer's kill switch.
func CrossTenant(ctx context.Context, env *Env, r *Runner) error {
	x, c, err := setUpCrossTenant(ctx, env, r, "westcentralus")
	if err != nil {
		return err
	}
	rg := x.ProviderRG
	var desID string
	if err := step(r, "provider-des", "provider creates the DES (keyUrl + federatedClientId); it proves the key over HTTPS", func() (string, error) {
		start := time.Now()
		p, err := c.DES.BeginCreateOrUpdate(ctx, rg, "ContosoDES", x.DESBody(), nil)
		if err != nil {
			return "", err
		}
		res, err := p.PollUntilDone(ctx, nil)
		if err != nil {
			return "", err
		}
		desID = *res.ID
		return fmt.Sprintf("%s in %s", *res.Properties.ProvisioningState, time.Since(start).Round(time.Millisecond)), nil
	}); err != nil {
		return err
	}
	data := make([]byte, 1<<20)
	_, _ = rand.Read(data)
	want := sha256.Sum256(data)
	if err := step(r, "provider-disk", "provider creates a customer-key disk and uploads 1 MiB through its signed URL", func() (string, error) {
		p, err := c.Disks.BeginCreateOrUpdate(ctx, rg, "datadisk", armcompute.Disk{Location: to.Ptr(x.Location),
			SKU: &armcompute.DiskSKU{Name: to.Ptr(armcompute.DiskStorageAccountTypesPremiumLRS)},
			Properties: &armcompute.DiskProperties{
				CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionUpload), UploadSizeBytes: to.Ptr(int64(len(data)))},
				Encryption:   &armcompute.Encryption{Type: to.Ptr(armcompute.EncryptionTypeEncryptionAtRestWithCustomerKey), DiskEncryptionSetID: to.Ptr(desID)},
			}}, nil)
		if err != nil {
			return "", err
		}
		if _, err := p.PollUntilDone(ctx, nil); err != nil {
			return "", err
		}
		return "sha256 " + fmt.Sprintf("%x", want[:8]), env.WriteDisk(ctx, c, rg, "datadisk", data)
	}); err != nil {
		return err
	}
	readBack := func() (string, error) {
		got, err := env.ReadDisk(ctx, c, rg, "datadisk", len(data))
		if err != nil {
			return "", err
		}
		if sha256.Sum256(got) != want {
			return "", errors.New("the data read back differs from what was written")
		}
		return "sha256 matches", nil
	}
	if err := step(r, "read-back", "provider reads the disk back through a read-only signed URL", readBack); err != nil {
		return err
	}
	vmName := "ContosoVM"
	if err := step(r, "provider-vm", "provider creates a VM with a customer-key OS disk and the data disk (starts it)", func() (string, error) {
		p, err := c.VMs.BeginCreateOrUpdate(ctx, rg, vmName, armcompute.VirtualMachine{Location: to.Ptr(x.Location),
			Properties: &armcompute.VirtualMachineProperties{
				HardwareProfile: &armcompute.HardwareProfile{VMSize: to.Ptr(armcompute.VirtualMachineSizeTypes("Standard_D2s_v5"))},
				StorageProfile: &armcompute.StorageProfile{
					OSDisk: &armcompute.OSDisk{CreateOption: to.Ptr(armcompute.DiskCreateOptionTypesFromImage), OSType: to.Ptr(armcompute.OperatingSystemTypesLinux),
						ManagedDisk: &armcompute.ManagedDiskParameters{DiskEncryptionSet: &armcompute.DiskEncryptionSetParameters{ID: to.Ptr(desID)}}},
					DataDisks: []*armcompute.DataDisk{{Lun: to.Ptr(int32(0)), CreateOption: to.Ptr(armcompute.DiskCreateOptionTypesAttach),
						ManagedDisk: &armcompute.ManagedDiskParameters{ID: to.Ptr(desDiskID(desID, "datadisk"))}}},
				},
			}}, nil)
		if err != nil {
			return "", err
		}
		res, err := p.PollUntilDone(ctx, nil)
		if err != nil {
			return "", err
		}
		return "power state " + x.powerState(ctx, c, rg, vmName) + ", " + *res.Properties.ProvisioningState, nil
	}); err != nil {
		return err
	}
	deallocate := func() error {
		p, err := c.VMs.BeginDeallocate(ctx, rg, vmName, nil)
		if err != nil {
			return err
		}
		_, err = p.PollUntilDone(ctx, nil)
		return err
	}
	start := func() error {
		p, err := c.VMs.BeginStart(ctx, rg, vmName, nil)
		if err != nil {
			return err
		}
		_, err = p.PollUntilDone(ctx, nil)
		return err
	}
	if err := step(r, "deallocate", "provider deallocates the VM", func() (string, error) {
		return "", deallocate()
	}); err != nil {
		return err
	}
	if err := step(r, "key-off", "customer disables the key (the kill switch)", func() (string, error) {
		return "", x.SetKeyEnabled(ctx, false)
	}); err != nil {
		return err
	}
	if err := step(r, "start-refused", "provider can no longer start the VM", func() (string, error) {
		err := start()
		if err == nil {
			return "", errors.New("the VM started with the customer's key disabled")
		}
		var re *azcore.ResponseError
		if errors.As(err, &re) {
			return "refused: " + re.ErrorCode, nil
		}
		return "", err
	}); err != nil {
		return err
	}
	if err := step(r, "read-refused", fmt.Sprintf("provider can no longer read the disk (DEK cache TTL %s)", env.DEKTTL), func() (string, error) {
		time.Sleep(env.DEKTTL + 100*time.Millisecond)
		if _, err := env.ReadDisk(ctx, c, rg, "datadisk", 4096); err == nil {
			return "", errors.New("the disk was read with the customer's key disabled")
		}
		return "refused", nil
	}); err != nil {
		return err
	}
	if err := step(r, "key-on", "customer re-enables the key", func() (string, error) {
		return "", x.SetKeyEnabled(ctx, true)
	}); err != nil {
		return err
	}
	if err := step(r, "start", "provider starts the VM again", func() (string, error) {
		if err := start(); err != nil {
			return "", err
		}
		return "power state " + x.powerState(ctx, c, rg, vmName), deallocate()
	}); err != nil {
		return err
	}
	return step(r, "read-again", "provider reads the disk again", readBack)
}

func desDiskID(desID, disk string) string {
	// Same subscription and group as the DES.
	i := len(desID) - len("/providers/Microsoft.Compute/diskEncryptionSets/") - len(lastSeg(desID))
	return desID[:i] + "/providers/Microsoft.Compute/disks/" + disk
}

func lastSeg(id string) string {
	for i := len(id) - 1; i >= 0; i-- {
		if id[i] == '/' {
			return id[i+1:]
		}
	}
	return id
}

func (x *CrossTenantSetup) powerState(ctx context.Context, c *Compute, rg, vm string) string {
	iv, err := c.VMs.InstanceView(ctx, rg, vm, nil)
	if err != nil {
		return "unknown"
	}
	for _, s := range iv.Statuses {
		if s.Code != nil && len(*s.Code) > 11 && (*s.Code)[:11] == "PowerState/" {
			return (*s.Code)[11:]
		}
	}
	return "unknown"
}

// NewRunner returns a Runner printing to out, for tests that replay
// scenario phases (e.g. CrossTenantSetup.Phase1) outside Run.
func NewRunner(out io.Writer) *Runner { return &Runner{out: out, scenario: "test"} }
