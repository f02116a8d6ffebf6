package app

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cvault/cvault/internal/arm"
	"github.com/cvault/cvault/internal/identity"
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
func (a *App) bootstrap(ctx context.Context, armSvc *arm.Service, idSvc *identity.Service) (Bootstrap, error) {
	var b Bootstrap
	rec, err := a.Store.Get(ctx, configKind, bootstrapKey)
	switch {
	case err == nil:
		if err := json.Unmarshal(rec.Value, &b); err != nil {
			return b, fmt.Errorf("bootstrap record: %w", err)
		}
	case errors.Is(err, store.ErrNotFound):
		// The identity service creates the tenant and its administrator
		// (idempotently: a server that crashed here finds them again).
		res, err := idSvc.Bootstrap(ctx)
		if err != nil {
			return b, err
		}
		if res.Admin != nil {
			if err := writeAdminFile(a.Config.DataDir, res.Admin); err != nil {
				return b, err
			}
			a.Admin = res.Admin
		}
		b = Bootstrap{TenantID: res.TenantID, SubscriptionID: newGUID(), AdminObjectID: res.ObjectID}
		v, err := json.Marshal(b)
		if err != nil {
			return b, err
		}
		if _, err := store.Put(ctx, a.Store, configKind, bootstrapKey, v, store.Absent); errors.Is(err, store.ErrConflict) {
			return a.bootstrap(ctx, armSvc, idSvc)
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

// AdminFile is the name of the bootstrap administrator's credentials in the data dir.
const AdminFile = "admin.json"

// writeAdminFile stores the admin credentials (0600), like a dev root token.
func writeAdminFile(dir string, c *identity.AdminCredentials) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, AdminFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("bootstrap: write admin credentials: %w", err)
	}
	return nil
}

// ReadAdminFile reads the bootstrap administrator's credentials from a data dir.
func ReadAdminFile(dir string) (*identity.AdminCredentials, error) {
	b, err := os.ReadFile(filepath.Join(dir, AdminFile))
	if err != nil {
		return nil, err
	}
	var c identity.AdminCredentials
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", AdminFile, err)
	}
	return &c, nil
}

func newGUID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// tenantCreated gives a new tenant one subscription whose Owner is the
// tenant's admin, as a new Azure tenant comes with a subscription; the
// subscription id is derived from the tenant id so a retry is idempotent.
func (a *App) tenantCreated(ctx context.Context, t identity.Tenant, admin identity.AdminCredentials) error {
	sub := derivedGUID("subscription", t.ID)
	if _, err := a.ARM.EnsureSubscription(ctx, arm.Subscription{ID: sub, TenantID: t.ID, DisplayName: t.DisplayName + " subscription"}); err != nil {
		return err
	}
	return a.Authz.Bootstrap(ctx, t.ID, sub, admin.ObjectID)
}

// derivedGUID is a name-based (SHA-256) GUID: the same inputs give the same id.
func derivedGUID(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}
