package identity

import (
	"context"
	"errors"
	"fmt"

	"github.com/cvault/cvault/internal/store"
)

type bootstrapRecord struct {
	TenantID string `json:"tenantId"`
	ClientID string `json:"clientId"`
	ObjectID string `json:"objectId"`
}

// BootstrapResult says what Bootstrap found or made. Admin (with the
// client secret) is set only by the call that created the tenant.
type BootstrapResult struct {
	TenantID string
	ClientID string
	ObjectID string
	Admin    *AdminCredentials
}

// Bootstrap creates, on the first start of an empty store, one tenant and
// its administrator (app + service principal marked directory
// administrator + client secret). It is idempotent: later calls, on this
// or another server sharing the store, return the existing tenant without
// a secret. The marker is written in the same transaction as the tenant,
// so two servers racing create exactly one.
func (s *Service) Bootstrap(ctx context.Context) (BootstrapResult, error) {
	var b bootstrapRecord
	_, err := getJSON(ctx, s.cfg.Store, kindMeta, "bootstrap", &b)
	if err == nil {
		return BootstrapResult{TenantID: b.TenantID, ClientID: b.ClientID, ObjectID: b.ObjectID}, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return BootstrapResult{}, err
	}
	var res BootstrapResult
	err = s.createTenant(ctx, "Default Directory", func(ctx context.Context, tx store.Tx, t Tenant, c *AdminCredentials) error {
		res = BootstrapResult{TenantID: t.ID, ClientID: c.ClientID, ObjectID: c.ObjectID, Admin: c}
		return putJSON(ctx, tx, kindMeta, "bootstrap", bootstrapRecord{TenantID: t.ID, ClientID: c.ClientID, ObjectID: c.ObjectID}, store.Absent)
	})
	if errors.Is(err, ErrConflict) {
		// Another server bootstrapped first.
		return s.Bootstrap(ctx)
	}
	if err != nil {
		return BootstrapResult{}, fmt.Errorf("identity: bootstrap: %w", err)
	}
	return res, nil
}
