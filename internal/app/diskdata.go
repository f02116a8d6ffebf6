package app

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/cvault/cvault/internal/compute/blockstore"
	"github.com/cvault/cvault/internal/compute/diskcrypt"
	"github.com/cvault/cvault/internal/compute/diskdata"
)

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
	})
	if err != nil {
		return fmt.Errorf("disk data: %w", err)
	}
	return nil
}
