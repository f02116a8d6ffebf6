package computehttp_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"golang.org/x/sync/errgroup"

	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/compute"
)

// BenchmarkRotation rotates a DES of 1,000 disks (CVAULT_BENCH_ROTATE_DISKS
// overrides, e.g. 10000 by hand) to a new key version per iteration and
// reports disks/s; beside it, the raw RSA-OAEP-256 unwrap + wrap of one
// data key (3072-bit, as the customer's key) and the same pair through the
// vault over HTTPS at the rotation's parallelism (16), both as disks/s.
func BenchmarkRotation(b *testing.B) {
	ctx := context.Background()
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("CVAULT_BENCH_ROTATE_DISKS")); err == nil && v > 0 {
		n = v
	}
	x, c := setup(b)
	des, err := createDES(ctx, c, x.ProviderRG, "benchrot", x.DESBody())
	if err != nil {
		b.Fatal(err)
	}
	svc := x.Env.App.Compute
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := range n {
		g.Go(func() error {
			id, err := azure.ParseResourceID(fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/disks/bd%05d", x.Provider.Subscription, x.ProviderRG, i))
			if err != nil {
				return err
			}
			_, _, err = svc.PutDisk(gctx, id, compute.Disk{Location: x.Location, Properties: compute.DiskProperties{
				CreationData: compute.CreationData{CreateOption: "Empty"}, DiskSizeGB: to.Ptr(int32(1)),
				Encryption: &compute.Encryption{Type: compute.EncryptionAtRestWithCustomerKey, DiskEncryptionSetID: *des.ID}}})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	kc, err := x.KeyClient()
	if err != nil {
		b.Fatal(err)
	}
	rid, _ := azure.ParseResourceID(*des.ID)

	b.Run(fmt.Sprintf("rotate-%d-disks", n), func(b *testing.B) {
		b.ReportAllocs()
		var elapsed time.Duration
		var peakHeap uint64 // live heap above the pre-rotation baseline, sampled while rotating
		for b.Loop() {
			b.StopTimer()
			nk, err := kc.CreateKey(ctx, x.KeyName, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr(int32(3072))}, nil)
			if err != nil {
				b.Fatal(err)
			}
			kid := string(*nk.Key.KID)
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			base := ms.HeapAlloc
			b.StartTimer()
			start := time.Now()
			lastSample := start
			if _, err := svc.PatchDES(ctx, rid, compute.DESUpdate{Properties: &struct {
				EncryptionType                    *string            `json:"encryptionType,omitempty"`
				ActiveKey                         *compute.KeyForDES `json:"activeKey,omitempty"`
				RotationToLatestKeyVersionEnabled *bool              `json:"rotationToLatestKeyVersionEnabled,omitempty"`
				FederatedClientID                 *string            `json:"federatedClientId,omitempty"`
			}{ActiveKey: &compute.KeyForDES{KeyURL: kid}}}); err != nil {
				b.Fatal(err)
			}
			for {
				d, err := svc.GetDES(ctx, *des.ID)
				if err != nil {
					b.Fatal(err)
				}
				if kr := d.Properties.KeyRotation; kr != nil && kr.State != compute.RotationInProgress {
					if kr.State != compute.RotationSucceeded || kr.DisksRotated != n {
						b.Fatalf("rotation %+v", kr)
					}
					break
				}
				if time.Since(lastSample) > 200*time.Millisecond {
					lastSample = time.Now()
					runtime.ReadMemStats(&ms)
					if ms.HeapAlloc > base {
						peakHeap = max(peakHeap, ms.HeapAlloc-base)
					}
				}
				time.Sleep(5 * time.Millisecond)
			}
			elapsed += time.Since(start)
		}
		b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "disks/s")
		b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MB")
	})

	b.Run("raw-rsa3072-unwrap+wrap", func(b *testing.B) {
		k, err := rsa.GenerateKey(rand.Reader, 3072)
		if err != nil {
			b.Fatal(err)
		}
		dek := make([]byte, 32)
		wrapped, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, &k.PublicKey, dek, nil)
		b.ReportAllocs()
		for b.Loop() {
			d, err := k.Decrypt(rand.Reader, wrapped, &rsa.OAEPOptions{Hash: crypto.SHA256})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &k.PublicKey, d, nil); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "disks/s")
	})

	b.Run("vault-https-unwrap+wrap-x16", func(b *testing.B) {
		alg := azkeys.EncryptionAlgorithmRSAOAEP256
		dek := make([]byte, 32)
		w, err := kc.WrapKey(ctx, x.KeyName, "", azkeys.KeyOperationParameters{Algorithm: &alg, Value: dek}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		var mu sync.Mutex
		for b.Loop() {
			g, gctx := errgroup.WithContext(ctx)
			g.SetLimit(16)
			for range 64 {
				g.Go(func() error {
					u, err := kc.UnwrapKey(gctx, x.KeyName, "", azkeys.KeyOperationParameters{Algorithm: &alg, Value: w.Result}, nil)
					if err != nil {
						return err
					}
					_, err = kc.WrapKey(gctx, x.KeyName, "", azkeys.KeyOperationParameters{Algorithm: &alg, Value: u.Result}, nil)
					return err
				})
			}
			mu.Lock()
			err := g.Wait()
			mu.Unlock()
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(64*b.N)/b.Elapsed().Seconds(), "disks/s")
	})
}
