package keyvault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/cvault/cvault/internal/jwk"

	"github.com/cvault/cvault/internal/store"
)

// decoded caches records decoded from JSON, keyed by kind/key and valid
// only for the store version they were decoded from: every use still reads
// the record (so a change made by any server is seen at once — a disabled
// key stops at once), but skips the JSON decode when the record did not
// change. Values it returns are shared: read-only by contract.
type decoded struct {
	mu sync.Mutex
	m  map[string]decodedEntry
}

type decodedEntry struct {
	version int64
	value   any
}

const decodedMax = 4096

func (d *decoded) get(rec store.Record, into func([]byte) (any, error)) (any, error) {
	k := rec.Kind + "\x00" + rec.Key
	d.mu.Lock()
	e, ok := d.m[k]
	d.mu.Unlock()
	if ok && e.version == rec.Version {
		return e.value, nil
	}
	v, err := into(rec.Value)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	if d.m == nil || len(d.m) >= decodedMax {
		d.m = make(map[string]decodedEntry, 64) // crude but bounded; the hot set refills at once
	}
	d.m[k] = decodedEntry{version: rec.Version, value: v}
	d.mu.Unlock()
	return v, nil
}

// sharedVault returns an active vault by name for read-only use on the
// data plane's hot path.
func (s *Service) sharedVault(ctx context.Context, r store.Reader, name string) (*Vault, error) {
	rec, err := r.Get(ctx, KindVault, strings.ToLower(name))
	if errors.Is(err, store.ErrNotFound) {
		return nil, errf(ErrVaultNotFound, "The vault '%s' was not found.", name)
	}
	if err != nil {
		return nil, fmt.Errorf("vault %s: %w", name, err)
	}
	v, err := s.dec.get(rec, func(b []byte) (any, error) {
		v := new(Vault)
		return v, json.Unmarshal(b, v)
	})
	if err != nil {
		return nil, fmt.Errorf("vault %s: %w", name, err)
	}
	vault := v.(*Vault)
	if vault.Deleted != nil {
		return nil, errf(ErrVaultNotFound, "The vault '%s' was not found.", name)
	}
	return vault, nil
}

// DataVault is VaultByName for the data plane: the vault it returns is
// shared with other requests and must not be modified.
func (s *Service) DataVault(ctx context.Context, name string) (*Vault, error) {
	return s.sharedVault(ctx, s.st, name)
}

// KeyRead is a vault and one of its key versions read together, in one
// store read transaction, for a cryptographic operation on the data plane.
// The key's state is as fresh as that read (every request reads again; a
// disabled key stops at once). Both are shared: read-only.
type KeyRead struct {
	Vault   *Vault
	version *Version
	err     error // why the version could not be read, kept until the caller has authorized
}

// ReadKey reads vault vaultName and the version ("" = current) of its key
// name in one read transaction, so that a data-plane request costs one
// store read. It fails only when the vault cannot be read: a missing key
// is reported by UseRead, after the caller's tenant and authorization
// checks (which must run outside any store transaction), so that a caller
// without permission does not learn whether the key exists.
func (s *Service) ReadKey(ctx context.Context, vaultName, name, version string) (*KeyRead, error) {
	var kr KeyRead
	err := s.st.View(ctx, func(r store.Reader) error {
		v, err := s.sharedVault(ctx, r, vaultName)
		if err != nil {
			return err
		}
		kr.Vault = v
		kr.version, kr.err = s.sharedVersionIn(ctx, r, v, name, version)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &kr, nil
}

// UseRead is Use on a version read by ReadKey.
func (s *Service) UseRead(kr *KeyRead, op string) (*Version, *jwk.PrivateKey, error) {
	if kr.err != nil {
		return nil, nil, kr.err
	}
	return s.usable(kr.version, op)
}

// sharedVersion resolves a live key's version ("" = current) read-only,
// for Use: the key and version records are read every time and decoded
// only when they changed.
func (s *Service) sharedVersion(ctx context.Context, vault *Vault, name, version string) (*Version, error) {
	var out *Version
	err := s.st.View(ctx, func(r store.Reader) error {
		var err error
		out, err = s.sharedVersionIn(ctx, r, vault, name, version)
		return err
	})
	return out, err
}

// sharedVersionIn is sharedVersion inside read transaction r.
func (s *Service) sharedVersionIn(ctx context.Context, r store.Reader, vault *Vault, name, version string) (*Version, error) {
	if checkKeyName(name) != nil {
		return nil, notFound(name, version)
	}
	kk := keyKey(vault, name)
	rec, err := r.Get(ctx, KindKey, kk)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound(name, version)
	}
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", kk, err)
	}
	k, err := s.dec.get(rec, func(b []byte) (any, error) {
		kr := new(keyRecord)
		return kr, json.Unmarshal(b, kr)
	})
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", kk, err)
	}
	kr := k.(*keyRecord)
	if kr.Deleted != nil {
		return nil, notFound(name, version)
	}
	ver := strings.ToLower(version)
	if ver == "" {
		ver = kr.Current
	}
	vrec, err := r.Get(ctx, KindKeyVersion, kk+"/"+ver)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound(name, version)
	}
	if err != nil {
		return nil, fmt.Errorf("key version %s: %w", ver, err)
	}
	v, err := s.dec.get(vrec, func(b []byte) (any, error) {
		v := new(Version)
		return v, json.Unmarshal(b, v)
	})
	if err != nil {
		return nil, fmt.Errorf("key version %s: %w", ver, err)
	}
	return v.(*Version), nil
}
