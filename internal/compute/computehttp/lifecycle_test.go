package computehttp_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

func poll[T any](t *testing.T, p interface {
	PollUntilDone(context.Context, *runtimePollOpts) (T, error)
}, err error) T {
	t.Helper()
	var zero T
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.PollUntilDone(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = zero
	return res
}

func status(err error) int {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

func cvm(size, enc string) armcompute.VirtualMachine {
	return armcompute.VirtualMachine{Location: to.Ptr("westcentralus"), Properties: &armcompute.VirtualMachineProperties{
		HardwareProfile: &armcompute.HardwareProfile{VMSize: to.Ptr(armcompute.VirtualMachineSizeTypes(size))},
		SecurityProfile: &armcompute.SecurityProfile{SecurityType: to.Ptr(armcompute.SecurityTypesConfidentialVM),
			UefiSettings: &armcompute.UefiSettings{SecureBootEnabled: to.Ptr(true), VTpmEnabled: to.Ptr(true)}},
		StorageProfile: &armcompute.StorageProfile{OSDisk: &armcompute.OSDisk{CreateOption: to.Ptr(armcompute.DiskCreateOptionTypesFromImage),
			ManagedDisk: &armcompute.ManagedDiskParameters{SecurityProfile: &armcompute.VMDiskSecurityProfile{
				SecurityEncryptionType: to.Ptr(armcompute.SecurityEncryptionTypes(enc))}}}},
	}}
}

// armcompute v8, unchanged, creates, reads, updates and deletes disk
// encryption sets, disks and VMs with its pollers completing; seed 002's
// rules answer with Azure's errors; the block files hold no plaintext.
func TestLifecycleWithArmcompute(t *testing.T) {
	ctx := context.Background()
	x, c := setup(t)
	rg := x.ProviderRG

	des, err := createDES(ctx, c, rg, "des1", x.DESBody())
	if err != nil {
		t.Fatal(err)
	}
	if *des.Properties.ProvisioningState != "Succeeded" || *des.Properties.FederatedClientID != x.AppID ||
		des.Identity.UserAssignedIdentities[x.UAMIID] == nil || *des.Identity.UserAssignedIdentities[x.UAMIID].PrincipalID != x.UAMIPrincipalID {
		t.Fatalf("DES = %+v", des.Properties)
	}
	up, err := c.DES.BeginUpdate(ctx, rg, "des1", armcompute.DiskEncryptionSetUpdate{Tags: map[string]*string{"env": to.Ptr("demo")}}, nil)
	upd := poll[armcompute.DiskEncryptionSetsClientUpdateResponse](t, up, err)
	if upd.Tags["env"] == nil || *upd.Tags["env"] != "demo" {
		t.Errorf("tags after update: %v", upd.Tags)
	}
	pager := c.DES.NewListByResourceGroupPager(rg, nil)
	page, err := pager.NextPage(ctx)
	if err != nil || len(page.Value) != 1 {
		t.Fatalf("list DES: %v %v", page.Value, err)
	}

	// Upload disk, data through the signed URL, read back, no plaintext at rest.
	data := bytes.Repeat([]byte("cvault plaintext sector marker! "), 1<<15) // 1 MiB
	dp, err := c.Disks.BeginCreateOrUpdate(ctx, rg, "up1", armcompute.Disk{Location: to.Ptr(x.Location), Properties: &armcompute.DiskProperties{
		CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionUpload), UploadSizeBytes: to.Ptr(int64(len(data)))},
		Encryption:   &armcompute.Encryption{Type: to.Ptr(armcompute.EncryptionTypeEncryptionAtRestWithCustomerKey), DiskEncryptionSetID: des.ID}}}, nil)
	disk := poll[armcompute.DisksClientCreateOrUpdateResponse](t, dp, err)
	if *disk.Properties.DiskState != armcompute.DiskStateReadyToUpload {
		t.Errorf("upload disk state %s", *disk.Properties.DiskState)
	}
	if err := x.Env.WriteDisk(ctx, c, rg, "up1", data); err != nil {
		t.Fatal(err)
	}
	got, err := x.Env.ReadDisk(ctx, c, rg, "up1", len(data))
	if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("read back: %v (hash differs: %v)", err, sha256.Sum256(got) != sha256.Sum256(data))
	}
	files, _ := filepath.Glob(filepath.Join(x.Env.App.Config.DataDir, "disks", "*"))
	if len(files) == 0 {
		t.Fatal("no block files")
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, []byte("plaintext sector marker")) {
			t.Errorf("block file %s holds plaintext", f)
		}
	}
	_, err = c.DES.BeginDelete(ctx, rg, "des1", nil)
	if status(err) != http.StatusConflict {
		t.Errorf("deleting a DES in use: %v, want 409", err)
	}

	// Confidential VM rules (seed 002).
	for name, tc := range map[string]struct {
		vm   armcompute.VirtualMachine
		code string
	}{
		"non-confidential size":  {cvm("Standard_D2s_v5", "DiskWithVMGuestState"), "BadRequest"},
		"NonPersistedTPM on AMD": {cvm("Standard_DC2as_v5", "NonPersistedTPM"), "BadRequest"},
		"no encryption type":     {cvm("Standard_DC2as_v5", ""), "InvalidParameter"},
	} {
		t.Run(name, func(t *testing.T) {
			if tc.code == "InvalidParameter" {
				tc.vm.Properties.StorageProfile.OSDisk.ManagedDisk.SecurityProfile = nil
			}
			_, err := c.VMs.BeginCreateOrUpdate(ctx, rg, "bad", tc.vm, nil)
			wantCode(t, err, tc.code, "")
		})
	}
	vp, err := c.VMs.BeginCreateOrUpdate(ctx, rg, "cvm1", cvm("Standard_DC2as_v5", "DiskWithVMGuestState"), nil)
	vm := poll[armcompute.VirtualMachinesClientCreateOrUpdateResponse](t, vp, err)
	if *vm.Properties.ProvisioningState != "Succeeded" || vm.Properties.StorageProfile.OSDisk.ManagedDisk.ID == nil {
		t.Fatalf("VM = %+v", vm.Properties)
	}
	osDisk, err := c.Disks.Get(ctx, rg, *vm.Properties.StorageProfile.OSDisk.Name, nil)
	if err != nil || *osDisk.Properties.SecurityProfile.SecurityType != armcompute.DiskSecurityTypesConfidentialVMDiskEncryptedWithPlatformKey ||
		*osDisk.Properties.DiskState != armcompute.DiskStateAttached {
		t.Fatalf("OS disk: %+v %v", osDisk.Properties, err)
	}
	// Resizing between AMD and Intel confidential families is allowed.
	rp, err := c.VMs.BeginCreateOrUpdate(ctx, rg, "cvm1", armcompute.VirtualMachine{Location: to.Ptr("westcentralus"), Properties: &armcompute.VirtualMachineProperties{
		HardwareProfile: &armcompute.HardwareProfile{VMSize: to.Ptr(armcompute.VirtualMachineSizeTypes("Standard_DC4es_v5"))},
		SecurityProfile: vm.Properties.SecurityProfile}}, nil)
	poll[armcompute.VirtualMachinesClientCreateOrUpdateResponse](t, rp, err)
	// Turning it into a non-confidential VM is not.
	_, err = c.VMs.BeginCreateOrUpdate(ctx, rg, "cvm1", armcompute.VirtualMachine{Location: to.Ptr("westcentralus"), Properties: &armcompute.VirtualMachineProperties{
		SecurityProfile: &armcompute.SecurityProfile{SecurityType: to.Ptr(armcompute.SecurityTypesTrustedLaunch)}}}, nil)
	wantCode(t, err, "PropertyChangeNotAllowed", "securityType")

	for _, step := range []struct {
		name  string
		begin func() error
		state string
	}{
		{"powerOff", func() error { p, err := c.VMs.BeginPowerOff(ctx, rg, "cvm1", nil); return finish(p, err) }, "stopped"},
		{"start", func() error { p, err := c.VMs.BeginStart(ctx, rg, "cvm1", nil); return finish(p, err) }, "running"},
		{"restart", func() error { p, err := c.VMs.BeginRestart(ctx, rg, "cvm1", nil); return finish(p, err) }, "running"},
		{"deallocate", func() error { p, err := c.VMs.BeginDeallocate(ctx, rg, "cvm1", nil); return finish(p, err) }, "deallocated"},
	} {
		if err := step.begin(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		iv, err := c.VMs.InstanceView(ctx, rg, "cvm1", nil)
		if err != nil || *iv.Statuses[1].Code != "PowerState/"+step.state {
			t.Fatalf("after %s: %v %v", step.name, iv.Statuses, err)
		}
	}
	dv, err := c.VMs.BeginDelete(ctx, rg, "cvm1", nil)
	poll[armcompute.VirtualMachinesClientDeleteResponse](t, dv, err)
	if _, err := c.VMs.Get(ctx, rg, "cvm1", nil); status(err) != http.StatusNotFound {
		t.Errorf("VM after delete: %v", err)
	}
	if _, err := c.Disks.Get(ctx, rg, *vm.Properties.StorageProfile.OSDisk.Name, nil); err != nil {
		t.Errorf("a detached OS disk should stay: %v", err)
	}
	ddp, err := c.Disks.BeginDelete(ctx, rg, "up1", nil)
	poll[armcompute.DisksClientDeleteResponse](t, ddp, err)
	dd, err := c.DES.BeginDelete(ctx, rg, "des1", nil)
	poll[armcompute.DiskEncryptionSetsClientDeleteResponse](t, dd, err)
	if _, err := c.DES.Get(ctx, rg, "des1", nil); status(err) != http.StatusNotFound {
		t.Errorf("DES after delete: %v", err)
	}
}

type finisher[T any] interface {
	PollUntilDone(context.Context, *runtimePollOpts) (T, error)
}

func finish[T any](p finisher[T], err error) error {
	if err != nil {
		return err
	}
	_, err = p.PollUntilDone(context.Background(), nil)
	return err
}

type runtimePollOpts = runtime.PollUntilDoneOptions
