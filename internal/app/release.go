package app

import (
	"context"
	"crypto/rsa"

	"github.com/cvault/cvault/internal/attest/instance"
	"github.com/cvault/cvault/internal/release"
)

// newRelease builds Secure Key Release over the key vault and the
// attestation instances (built before it).
func (a *App) newRelease() (*release.Service, error) {
	return release.New(release.Config{
		Store: a.Store, Sealer: a.Sealer, CA: a.CA, Keys: a.KeyVault,
		Instances:  instanceKeys{a.Attestation},
		Aliases:    a.Config.AuthorityAliases,
		Trusted:    a.Config.TrustedAuthorities,
		HTTPClient: a.Config.AuthorityClient,
		Now:        a.Config.Now,
	})
}

// instanceKeys adapts the attestation service to release.Instances.
type instanceKeys struct{ *instance.Service }

func (k instanceKeys) TokenKeys(ctx context.Context, name string) (map[string]*rsa.PublicKey, error) {
	keys, err := k.Keys(ctx, name)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*rsa.PublicKey, len(keys))
	for _, pk := range keys {
		out[pk.KeyID] = pk.Key
	}
	return out, nil
}
