package computehttp_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

// BenchmarkDESCreate measures a cross-tenant DES create through armcompute:
// the managed-identity token, the federated exchange at the customer's
// token endpoint, and get/wrapKey/unwrapKey on the customer's vault, all
// over HTTPS; beside it, the vault calls alone (the customer's own azkeys
// client, token cached).
func BenchmarkDESCreate(b *testing.B) {
	ctx := context.Background()
	x, c := setup(b)
	b.Run("des-create", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			if _, err := createDES(ctx, c, x.ProviderRG, fmt.Sprintf("bdes%d", i), x.DESBody()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("azkeys-get-wrap-unwrap", func(b *testing.B) {
		kc, err := x.KeyClient()
		if err != nil {
			b.Fatal(err)
		}
		alg := azkeys.EncryptionAlgorithmRSAOAEP256
		dek := make([]byte, 32)
		_, _ = rand.Read(dek)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := kc.GetKey(ctx, x.KeyName, "", nil); err != nil {
				b.Fatal(err)
			}
			w, err := kc.WrapKey(ctx, x.KeyName, "", azkeys.KeyOperationParameters{Algorithm: &alg, Value: dek}, nil)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := kc.UnwrapKey(ctx, x.KeyName, "", azkeys.KeyOperationParameters{Algorithm: &alg, Value: w.Result}, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkVMStart measures starting a deallocated VM whose 1 or 16
// customer-key disks each have their data key unwrapped through the
// customer's vault; beside it, as many raw azkeys unwraps.
func BenchmarkVMStart(b *testing.B) {
	ctx := context.Background()
	x, c := setup(b)
	des, err := createDES(ctx, c, x.ProviderRG, "bdes", x.DESBody())
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 16} {
		vmName := fmt.Sprintf("vm%d", n)
		var data []*armcompute.DataDisk
		for i := 1; i < n; i++ {
			data = append(data, &armcompute.DataDisk{Lun: to.Ptr(int32(i)), CreateOption: to.Ptr(armcompute.DiskCreateOptionTypesEmpty),
				DiskSizeGB: to.Ptr(int32(1)), ManagedDisk: &armcompute.ManagedDiskParameters{DiskEncryptionSet: &armcompute.DiskEncryptionSetParameters{ID: des.ID}}})
		}
		p, err := c.VMs.BeginCreateOrUpdate(ctx, x.ProviderRG, vmName, armcompute.VirtualMachine{Location: to.Ptr(x.Location),
			Properties: &armcompute.VirtualMachineProperties{
				HardwareProfile: &armcompute.HardwareProfile{VMSize: to.Ptr(armcompute.VirtualMachineSizeTypes("Standard_D2s_v5"))},
				StorageProfile: &armcompute.StorageProfile{OSDisk: &armcompute.OSDisk{CreateOption: to.Ptr(armcompute.DiskCreateOptionTypesFromImage),
					ManagedDisk: &armcompute.ManagedDiskParameters{DiskEncryptionSet: &armcompute.DiskEncryptionSetParameters{ID: des.ID}}}, DataDisks: data},
			}}, nil)
		if err := finish(p, err); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("disks=%d/vm-start", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				dp, err := c.VMs.BeginDeallocate(ctx, x.ProviderRG, vmName, nil)
				if err := finish(dp, err); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				sp, err := c.VMs.BeginStart(ctx, x.ProviderRG, vmName, nil)
				if err := finish(sp, err); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("disks=%d/azkeys-unwrap", n), func(b *testing.B) {
			kc, err := x.KeyClient()
			if err != nil {
				b.Fatal(err)
			}
			alg := azkeys.EncryptionAlgorithmRSAOAEP256
			w, err := kc.WrapKey(ctx, x.KeyName, "", azkeys.KeyOperationParameters{Algorithm: &alg, Value: make([]byte, 32)}, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				for range n {
					if _, err := kc.UnwrapKey(ctx, x.KeyName, "", azkeys.KeyOperationParameters{Algorithm: &alg, Value: w.Result}, nil); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
