// Package arm holds the Azure Resource Manager basics every ARM resource
// type stands on: subscriptions (each in one tenant), resource groups,
// region validation and long-running-operation status records. Resource
// types (vaults, identities, disks, …) live in their own packages and
// register how to delete their resources when a resource group goes.
package arm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cvault/cvault/internal/store"
)

// Store kinds owned by this package.
const (
	KindSubscription  = "arm.subscription"
	KindResourceGroup = "arm.resourcegroup"
	KindOperation     = "arm.operation"
)

// Sentinel errors.
var (
	ErrNotFound      = errors.New("arm: not found")
	ErrBadLocation   = errors.New("arm: location not available")
	ErrInvalidName   = errors.New("arm: invalid name")
	ErrLocationFixed = errors.New("arm: location cannot change")
)

// Subscription is an Azure subscription; it belongs to one tenant.
type Subscription struct {
	ID          string `json:"subscriptionId"`
	TenantID    string `json:"tenantId"`
	DisplayName string `json:"displayName"`
	State       string `json:"state"`
}

// ResourceGroup is an Azure resource group.
type ResourceGroup struct {
	Subscription string            `json:"subscription"`
	Name         string            `json:"name"` // as created (ARM keeps the first casing)
	Location     string            `json:"location"`
	Tags         map[string]string `json:"tags,omitempty"`
	ManagedBy    string            `json:"managedBy,omitempty"`
}

// ID is the resource group's ARM ID.
func (g ResourceGroup) ID() string {
	return "/subscriptions/" + g.Subscription + "/resourceGroups/" + g.Name
}

// GroupDeleter deletes the resources of one type in a resource group; the
// resource group's delete calls every registered deleter, in order.
type GroupDeleter interface {
	DeleteResourceGroupContents(ctx context.Context, subscription, resourceGroup string) error
}

// Config configures the Service.
type Config struct {
	Store store.Store
	// Regions are the accepted locations (default: DefaultRegions).
	Regions []string
	Now     func() time.Time
}

// Service manages subscriptions, resource groups and operations.
type Service struct {
	store    store.Store
	regions  map[string]string // normalised → display
	now      func() time.Time
	deleters []GroupDeleter
}

// New builds the service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("arm: Store is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.Regions) == 0 {
		cfg.Regions = DefaultRegions
	}
	s := &Service{store: cfg.Store, now: cfg.Now, regions: map[string]string{}}
	for _, r := range cfg.Regions {
		s.regions[NormalizeLocation(r)] = NormalizeLocation(r)
	}
	return s, nil
}

// RegisterGroupDeleter adds a deleter run when a resource group is deleted.
// Register dependents first (VMs before disks before encryption sets).
func (s *Service) RegisterGroupDeleter(d GroupDeleter) { s.deleters = append(s.deleters, d) }

// DefaultRegions are Azure's public regions (the seeds name WestCentralUS,
// eastus, westeurope); compared case-insensitively with spaces ignored.
var DefaultRegions = []string{
	"eastus", "eastus2", "westus", "westus2", "westus3", "centralus", "northcentralus", "southcentralus",
	"westcentralus", "canadacentral", "canadaeast", "brazilsouth", "mexicocentral",
	"northeurope", "westeurope", "uksouth", "ukwest", "francecentral", "francesouth", "germanywestcentral",
	"germanynorth", "switzerlandnorth", "switzerlandwest", "norwayeast", "norwaywest", "swedencentral",
	"italynorth", "polandcentral", "spaincentral",
	"eastasia", "southeastasia", "japaneast", "japanwest", "koreacentral", "koreasouth", "australiaeast",
	"australiasoutheast", "australiacentral", "centralindia", "southindia", "westindia",
	"uaenorth", "qatarcentral", "israelcentral", "southafricanorth",
}

// NormalizeLocation folds a location for comparison: lower case, no spaces.
func NormalizeLocation(l string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(l), " ", ""))
}

// CheckLocation returns the normalised location or ErrBadLocation.
func (s *Service) CheckLocation(l string) (string, error) {
	n := NormalizeLocation(l)
	if _, ok := s.regions[n]; !ok || n == "" {
		return "", fmt.Errorf("%w: %q (supported: %s)", ErrBadLocation, l, strings.Join(s.Regions(), ", "))
	}
	return n, nil
}

// Regions lists the accepted locations.
func (s *Service) Regions() []string {
	out := make([]string, 0, len(s.regions))
	for r := range s.regions {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

func subKey(id string) string { return strings.ToLower(id) }

func groupKey(sub, rg string) string { return strings.ToLower(sub) + "/" + strings.ToLower(rg) }

// EnsureSubscription creates a subscription if it does not exist (bootstrap
// and `cvault tenant create`).
func (s *Service) EnsureSubscription(ctx context.Context, sub Subscription) (Subscription, error) {
	if sub.State == "" {
		sub.State = "Enabled"
	}
	var out Subscription
	err := s.store.Update(ctx, func(tx store.Tx) error {
		rec, err := tx.Get(ctx, KindSubscription, subKey(sub.ID))
		if err == nil {
			return json.Unmarshal(rec.Value, &out)
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		b, err := json.Marshal(sub)
		if err != nil {
			return err
		}
		out = sub
		_, err = tx.Put(ctx, KindSubscription, subKey(sub.ID), b, store.Absent)
		return err
	})
	if err != nil {
		return Subscription{}, fmt.Errorf("arm: ensure subscription %s: %w", sub.ID, err)
	}
	return out, nil
}

// Subscription returns one subscription.
func (s *Service) Subscription(ctx context.Context, id string) (Subscription, error) {
	rec, err := s.store.Get(ctx, KindSubscription, subKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return Subscription{}, fmt.Errorf("%w: subscription %s", ErrNotFound, id)
	}
	if err != nil {
		return Subscription{}, fmt.Errorf("arm: subscription %s: %w", id, err)
	}
	var sub Subscription
	if err := json.Unmarshal(rec.Value, &sub); err != nil {
		return Subscription{}, fmt.Errorf("arm: subscription %s: %w", id, err)
	}
	return sub, nil
}

// TenantOfSubscription returns the tenant a subscription belongs to.
func (s *Service) TenantOfSubscription(ctx context.Context, id string) (string, error) {
	sub, err := s.Subscription(ctx, id)
	return sub.TenantID, err
}

// Subscriptions lists the subscriptions of a tenant.
func (s *Service) Subscriptions(ctx context.Context, tenant string) ([]Subscription, error) {
	recs, err := s.store.List(ctx, KindSubscription, "", "", 0)
	if err != nil {
		return nil, fmt.Errorf("arm: list subscriptions: %w", err)
	}
	var out []Subscription
	for _, r := range recs {
		var sub Subscription
		if err := json.Unmarshal(r.Value, &sub); err != nil {
			return nil, fmt.Errorf("arm: subscription %s: %w", r.Key, err)
		}
		if strings.EqualFold(sub.TenantID, tenant) {
			out = append(out, sub)
		}
	}
	return out, nil
}

// ValidGroupName reports whether name is a valid resource group name
// (1-90 chars: letters, digits, '_', '-', '.', '(', ')'; not ending in '.').
func ValidGroupName(name string) bool {
	if len(name) < 1 || len(name) > 90 || strings.HasSuffix(name, ".") {
		return false
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '_' || r == '-' || r == '.' || r == '(' || r == ')':
		case r > 127: // ARM allows Unicode letters and digits
		default:
			return false
		}
	}
	return true
}

// PutResourceGroup creates or updates a resource group; created reports a create.
func (s *Service) PutResourceGroup(ctx context.Context, g ResourceGroup) (ResourceGroup, bool, error) {
	if !ValidGroupName(g.Name) {
		return ResourceGroup{}, false, fmt.Errorf("%w: resource group name %q", ErrInvalidName, g.Name)
	}
	loc, err := s.CheckLocation(g.Location)
	if err != nil {
		return ResourceGroup{}, false, err
	}
	g.Location = loc
	if _, err := s.Subscription(ctx, g.Subscription); err != nil {
		return ResourceGroup{}, false, err
	}
	var out ResourceGroup
	created := false
	err = s.store.Update(ctx, func(tx store.Tx) error {
		key := groupKey(g.Subscription, g.Name)
		version := store.Absent
		if rec, err := tx.Get(ctx, KindResourceGroup, key); err == nil {
			var old ResourceGroup
			if err := json.Unmarshal(rec.Value, &old); err != nil {
				return err
			}
			if old.Location != g.Location {
				return fmt.Errorf("%w: resource group %s is in %s", ErrLocationFixed, old.Name, old.Location)
			}
			g.Name, g.Subscription = old.Name, old.Subscription // ARM keeps the first casing
			version = rec.Version
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		created = version == store.Absent
		b, err := json.Marshal(g)
		if err != nil {
			return err
		}
		out = g
		_, err = tx.Put(ctx, KindResourceGroup, key, b, version)
		return err
	})
	if err != nil {
		return ResourceGroup{}, false, fmt.Errorf("arm: put resource group %s: %w", g.Name, err)
	}
	return out, created, nil
}

// ResourceGroup returns one resource group.
func (s *Service) ResourceGroup(ctx context.Context, sub, name string) (ResourceGroup, error) {
	rec, err := s.store.Get(ctx, KindResourceGroup, groupKey(sub, name))
	if errors.Is(err, store.ErrNotFound) {
		return ResourceGroup{}, fmt.Errorf("%w: resource group %s", ErrNotFound, name)
	}
	if err != nil {
		return ResourceGroup{}, fmt.Errorf("arm: resource group %s: %w", name, err)
	}
	var g ResourceGroup
	if err := json.Unmarshal(rec.Value, &g); err != nil {
		return ResourceGroup{}, fmt.Errorf("arm: resource group %s: %w", name, err)
	}
	return g, nil
}

// ResourceGroupExists returns nil if the group exists, else an ErrNotFound error.
func (s *Service) ResourceGroupExists(ctx context.Context, sub, name string) error {
	_, err := s.ResourceGroup(ctx, sub, name)
	return err
}

// ResourceGroups lists a subscription's groups after key `after`, up to limit.
func (s *Service) ResourceGroups(ctx context.Context, sub, after string, limit int) ([]ResourceGroup, string, error) {
	recs, err := s.store.List(ctx, KindResourceGroup, strings.ToLower(sub)+"/", after, limit)
	if err != nil {
		return nil, "", fmt.Errorf("arm: list resource groups: %w", err)
	}
	out := make([]ResourceGroup, 0, len(recs))
	for _, r := range recs {
		var g ResourceGroup
		if err := json.Unmarshal(r.Value, &g); err != nil {
			return nil, "", fmt.Errorf("arm: resource group %s: %w", r.Key, err)
		}
		out = append(out, g)
	}
	next := ""
	if limit > 0 && len(recs) == limit {
		next = recs[len(recs)-1].Key
	}
	return out, next, nil
}

// DeleteResourceGroup deletes everything the group holds (every registered
// deleter, in order), then the group. A failure part-way leaves the group
// in place, so a retried delete continues.
func (s *Service) DeleteResourceGroup(ctx context.Context, sub, name string) error {
	if _, err := s.ResourceGroup(ctx, sub, name); err != nil {
		return err
	}
	for _, d := range s.deleters {
		if err := d.DeleteResourceGroupContents(ctx, sub, name); err != nil {
			return fmt.Errorf("arm: delete resource group %s contents: %w", name, err)
		}
	}
	if err := store.Delete(ctx, s.store, KindResourceGroup, groupKey(sub, name), store.Any); err != nil {
		return fmt.Errorf("arm: delete resource group %s: %w", name, err)
	}
	return nil
}
