package app

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/google/go-sev-guest/verify/trust"

	"github.com/cvault/cvault/internal/attest/instance"
	"github.com/cvault/cvault/internal/attest/kdscache"
	"github.com/cvault/cvault/internal/attest/snp"
)

// attestation builds the attestation service and makes sure the permissive `default`
// instance exists.
func (a *App) attestation(ctx context.Context, reg prometheus.Registerer) (*instance.Service, error) {
	var roots []snp.Root
	if len(a.Config.SimulatedRootsPEM) > 0 {
		var err error
		if roots, err = snp.ParseRoots(a.Config.SimulatedRootsPEM, true); err != nil {
			return nil, fmt.Errorf("--trust-sim-root: %w", err)
		}
	}
	var kds trust.HTTPSGetter
	if a.Config.AMDKDS {
		cfg := kdscache.Config{Store: a.Store, Now: a.Config.Now}
		if a.Config.KDSClient != nil {
			cfg.Client = a.Config.KDSClient
		}
		g, err := kdscache.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("--amd-kds: %w", err)
		}
		kds = g
	}
	svc, err := instance.New(instance.Config{
		Store:          a.Store,
		Sealer:         a.Sealer,
		BaseURL:        a.BaseURL.String(),
		SimulatedRoots: roots,
		KDS:            kds,
		Registerer:     reg,
		Now:            a.Config.Now,
	})
	if err != nil {
		return nil, err
	}
	permissive := instance.Permissive()
	if _, err := svc.Ensure(ctx, instance.DefaultName, instance.Settings{Policy: &permissive}); err != nil {
		return nil, err
	}
	return svc, nil
}
