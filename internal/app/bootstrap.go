package app

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cvault/cvault/internal/arm"
	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/store"
)

// Bootstrap is what the first start of an empty store creates: one
// tenant, one subscription in it, and the object id of the admin principal.
type Bootstrap struct {
	TenantID       string `json:"tenantId"`
	SubscriptionID string `json:"subscriptionId"`
	AdminObjectID  string `json:"adminObjectId"`
}

const bootstrapKey = "bootstrap"

// bootstrap returns the store's bootstrap record, creating it (and the
// subscription) on the first start. Servers racing on one empty database
// converge on the record the first one wrote.
func (a *App) bootstrap(ctx context.Context, armSvc *arm.Service) (Bootstrap, error) {
	var b Bootstrap
	rec, err := a.Store.Get(ctx, configKind, bootstrapKey)
	switch {
	case err == nil:
		if err := json.Unmarshal(rec.Value, &b); err != nil {
			return b, fmt.Errorf("bootstrap record: %w", err)
		}
	case errors.Is(err, store.ErrNotFound):
		b = Bootstrap{TenantID: newGUID(), SubscriptionID: newGUID(), AdminObjectID: newGUID()}
		v, err := json.Marshal(b)
		if err != nil {
			return b, err
		}
		if _, err := store.Put(ctx, a.Store, configKind, bootstrapKey, v, store.Absent); errors.Is(err, store.ErrConflict) {
			return a.bootstrap(ctx, armSvc)
		} else if err != nil {
			return b, fmt.Errorf("bootstrap: %w", err)
		}
	default:
		return b, fmt.Errorf("bootstrap: %w", err)
	}
	if _, err := armSvc.EnsureSubscription(ctx, arm.Subscription{ID: b.SubscriptionID, TenantID: b.TenantID, DisplayName: "cvault bootstrap subscription"}); err != nil {
		return b, err
	}
	return b, nil
}

func newGUID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// adminOnly is the authorizer in force until RBAC is wired: only the
// bootstrap admin may do anything (deny by default).
type adminOnly struct{ adminObjectID string }

var errNotAdmin = errors.New("only the bootstrap administrator may do this until role assignments are enabled")

func (a adminOnly) Check(_ context.Context, p *authn.Principal, _, _ string) error {
	if p == nil || p.ObjectID == "" || p.ObjectID != a.adminObjectID {
		return errNotAdmin
	}
	return nil
}
