package app

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/cvault/cvault/internal/compute"
	"github.com/cvault/cvault/internal/compute/blockstore"
	"github.com/cvault/cvault/internal/compute/diskcrypt"
	"github.com/cvault/cvault/internal/compute/diskdata"
	"github.com/cvault/cvault/internal/localdial"
)

// lateKeyring is the disk data service's Keyring: the compute service,
// which is built after (and on top of) the disk data service.
type lateKeyring struct{ svc *compute.Service }

func (k *lateKeyring) Wrapper(ctx context.Context, diskID, keyID string) (diskcrypt.Wrapper, error) {
	if k.svc == nil {
		return nil, fmt.Errorf("disk %s: %w", diskID, diskcrypt.ErrUnknownKey)
	}
	return k.svc.Wrapper(ctx, diskID, keyID)
}

// newCompute builds the compute resource provider (DES, disks, VMs): it
// reaches customers' vaults and the token endpoint over HTTPS, trusting
// cvault's CA, exactly as an outside client would.
func (a *App) newCompute() (*compute.Service, error) {
	svc, err := compute.New(compute.Config{Store: a.Store, ARM: a.ARM, Identity: a.Identity, DiskData: a.DiskData,
		Authority: a.BaseURL.String(), HTTPClient: localdial.Client(a.CA.Pool()), Now: a.Config.Now})
	if err != nil {
		return nil, err
	}
	a.keyring.svc = svc
	for _, d := range svc.GroupDeleters() {
		a.ARM.RegisterGroupDeleter(d)
	}
	return svc, nil
}

// newDiskData builds the managed-disk data service: blocks in
// {data}/disks, the platform key sealed in the store.
func (a *App) newDiskData(ctx context.Context) error {
	blocks, err := blockstore.NewDir(filepath.Join(a.Config.DataDir, "disks"), diskcrypt.RecordSize)
	if err != nil {
		return err
	}
	a.diskBlocks = blocks
	platform, err := diskcrypt.LoadOrCreatePlatform(ctx, a.Store, a.Sealer, nil)
	if err != nil {
		return err
	}
	a.DiskData, err = diskdata.New(diskdata.Config{
		Store: a.Store, Sealer: a.Sealer, Blocks: blocks, Platform: platform,
		BaseURL: a.BaseURL, DEKCacheTTL: a.Config.DEKCacheTTL, Now: a.Config.Now,
		Keyring: &a.keyring,
	})
	if err != nil {
		return fmt.Errorf("disk data: %w", err)
	}
	return nil
}
