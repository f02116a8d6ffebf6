package identity

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/store"
)

// Sign-in audiences of an app registration.
const (
	AzureADMyOrg        = "AzureADMyOrg"
	AzureADMultipleOrgs = "AzureADMultipleOrgs"
)

// Service principal types.
const (
	SPTypeApplication     = "Application"
	SPTypeManagedIdentity = "ManagedIdentity"
)

// Tenant is a directory.
type Tenant struct {
	ID          string    `json:"id"`
	DisplayName string    `json:"displayName"`
	Created     time.Time `json:"created"`
}

// Application is an app registration in its home tenant.
type Application struct {
	ObjectID             string                `json:"id"`
	AppID                string                `json:"appId"`
	TenantID             string                `json:"tenantId"`
	DisplayName          string                `json:"displayName"`
	SignInAudience       string                `json:"signInAudience"`
	Owners               []string              `json:"owners,omitempty"`
	PasswordCredentials  []PasswordCredential  `json:"passwordCredentials"`
	FederatedCredentials []FederatedCredential `json:"federatedCredentials,omitempty"`
	Created              time.Time             `json:"created"`
}

// PasswordCredential describes a client secret; the secret itself is
// shown once by AddPassword and kept only as a salted hash.
type PasswordCredential struct {
	KeyID       string    `json:"keyId"`
	DisplayName string    `json:"displayName,omitempty"`
	Hint        string    `json:"hint"`
	Start       time.Time `json:"startDateTime"`
	End         time.Time `json:"endDateTime"`
}

// FederatedCredential trusts tokens of an external (or cvault) issuer
// whose iss and sub equal Issuer and Subject exactly and whose aud is one
// of Audiences.
type FederatedCredential struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Issuer      string   `json:"issuer"`
	Subject     string   `json:"subject"`
	Audiences   []string `json:"audiences"`
	Description string   `json:"description,omitempty"`
}

// ServicePrincipal is an app's (or managed identity's) instance in a tenant.
type ServicePrincipal struct {
	ObjectID         string `json:"id"`
	AppID            string `json:"appId"`
	TenantID         string `json:"tenantId"`
	AppOwnerTenantID string `json:"appOwnerOrganizationId"`
	DisplayName      string `json:"displayName"`
	Type             string `json:"servicePrincipalType"`
	// AlternativeNames holds a managed identity's resource ID.
	AlternativeNames []string `json:"alternativeNames,omitempty"`
	// DirectoryAdmin principals may write the tenant's directory (the
	// bootstrap admin and each created tenant's admin).
	DirectoryAdmin bool      `json:"directoryAdmin,omitempty"`
	Created        time.Time `json:"created"`
}

type appRecord struct {
	Application
	Secrets map[string]secretHash `json:"secrets,omitempty"` // by KeyID
}

type appIndex struct {
	TenantID string `json:"tenantId"`
	ObjectID string `json:"objectId"`
}

func appKey(tenant, objectID string) string { return strings.ToLower(tenant + "/" + objectID) }

// GetTenant returns a tenant.
func (s *Service) GetTenant(ctx context.Context, id string) (Tenant, error) {
	var t Tenant
	if !isGUID(id) {
		return t, fmt.Errorf("tenant %q: %w", id, ErrNotFound)
	}
	_, err := getJSON(ctx, s.cfg.Store, kindTenant, strings.ToLower(id), &t)
	return t, err
}

// ListTenants returns every tenant.
func (s *Service) ListTenants(ctx context.Context) ([]Tenant, error) {
	return listJSON[Tenant](ctx, s.cfg.Store, kindTenant, "")
}

// AdminCredentials are a tenant administrator's client credentials, shown once.
type AdminCredentials struct {
	TenantID     string `json:"tenantId"`
	ClientID     string `json:"clientId"`
	ClientSecret string `json:"clientSecret"`
	ObjectID     string `json:"objectId"`
	Authority    string `json:"authority"`
}

// String hides the secret from logs.
func (a AdminCredentials) String() string {
	return "AdminCredentials{" + a.TenantID + " " + a.ClientID + " REDACTED}"
}

// CreateTenant creates a tenant with its signing key and an administrator
// (app registration + service principal marked directory administrator +
// a client secret). Only a directory administrator may call it; caller nil
// is the server itself (bootstrap).
func (s *Service) CreateTenant(ctx context.Context, caller *authn.Principal, displayName string) (Tenant, *AdminCredentials, error) {
	if caller != nil {
		if err := s.requireAdmin(ctx, caller); err != nil {
			return Tenant{}, nil, err
		}
	}
	var t Tenant
	var creds *AdminCredentials
	err := s.createTenant(ctx, displayName, func(ctx context.Context, tx store.Tx, tt Tenant, c *AdminCredentials) error {
		t, creds = tt, c
		return nil
	})
	if err == nil && s.cfg.TenantCreated != nil {
		if err := s.cfg.TenantCreated(ctx, t, *creds); err != nil {
			return t, creds, fmt.Errorf("identity: tenant %s created, but its subscription: %w", t.ID, err)
		}
	}
	return t, creds, err
}

// createTenant prepares everything that needs randomness or key generation
// outside the transaction, then writes it in one Update; also runs extra
// (the bootstrap marker) in the same transaction.
func (s *Service) createTenant(ctx context.Context, displayName string, extra func(context.Context, store.Tx, Tenant, *AdminCredentials) error) error {
	displayName = strings.TrimSpace(displayName)
	if displayName == "" || len(displayName) > 256 {
		return fmt.Errorf("%w: displayName is required (at most 256 characters)", ErrInvalid)
	}
	tid, err := s.newGUID()
	if err != nil {
		return err
	}
	now := s.now()
	t := Tenant{ID: tid, DisplayName: displayName, Created: now}
	key, err := s.newSigningKeyRecord(tid, now)
	if err != nil {
		return err
	}
	app, rec, secret, err := s.newApp(tid, displayName+" administrator", AzureADMyOrg, now)
	if err != nil {
		return err
	}
	keyID, err := s.newGUID()
	if err != nil {
		return err
	}
	h, err := s.hashSecret(secret)
	if err != nil {
		return err
	}
	pc := PasswordCredential{KeyID: keyID, DisplayName: "bootstrap", Hint: secret[:3], Start: now, End: now.AddDate(10, 0, 0)}
	rec.PasswordCredentials = []PasswordCredential{pc}
	rec.Secrets = map[string]secretHash{keyID: h}
	spID, err := s.newGUID()
	if err != nil {
		return err
	}
	sp := ServicePrincipal{ObjectID: spID, AppID: app.AppID, TenantID: tid, AppOwnerTenantID: tid,
		DisplayName: app.DisplayName, Type: SPTypeApplication, DirectoryAdmin: true, Created: now}
	rec.Owners = []string{spID}
	creds := &AdminCredentials{TenantID: tid, ClientID: app.AppID, ClientSecret: secret, ObjectID: spID, Authority: s.Authority(tid)}
	firstParty, err := s.newFirstPartySPs(tid, now)
	if err != nil {
		return err
	}
	err = s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		if err := putJSON(ctx, tx, kindTenant, tid, t, store.Absent); err != nil {
			return err
		}
		if err := putJSON(ctx, tx, kindSigningKey, tid+"/"+key.Kid, key, store.Absent); err != nil {
			return err
		}
		if err := s.putApp(ctx, tx, rec, store.Absent); err != nil {
			return err
		}
		if err := s.putSP(ctx, tx, sp); err != nil {
			return err
		}
		for _, fp := range firstParty {
			if err := s.putSP(ctx, tx, fp); err != nil {
				return err
			}
		}
		return extra(ctx, tx, t, creds)
	})
	if err != nil {
		return fmt.Errorf("identity: create tenant: %w", err)
	}
	return nil
}

// newApp builds an app record with fresh ids; secret is a fresh client secret
// the caller may attach.
func (s *Service) newApp(tenant, displayName, audience string, now time.Time) (Application, *appRecord, string, error) {
	objID, err := s.newGUID()
	if err != nil {
		return Application{}, nil, "", err
	}
	appID, err := s.newGUID()
	if err != nil {
		return Application{}, nil, "", err
	}
	raw, err := s.random(30)
	if err != nil {
		return Application{}, nil, "", err
	}
	app := Application{ObjectID: objID, AppID: appID, TenantID: tenant, DisplayName: displayName,
		SignInAudience: audience, PasswordCredentials: []PasswordCredential{}, Created: now}
	return app, &appRecord{Application: app}, secretText(raw), nil
}

func (s *Service) putApp(ctx context.Context, tx store.Tx, rec *appRecord, ifVersion int64) error {
	if err := putJSON(ctx, tx, kindApp, appKey(rec.TenantID, rec.ObjectID), rec, ifVersion); err != nil {
		return err
	}
	if ifVersion == store.Absent {
		return putJSON(ctx, tx, kindAppID, strings.ToLower(rec.AppID),
			appIndex{TenantID: rec.TenantID, ObjectID: rec.ObjectID}, store.Absent)
	}
	return nil
}

func (s *Service) putSP(ctx context.Context, tx store.Tx, sp ServicePrincipal) error {
	if err := putJSON(ctx, tx, kindSPApp, appKey(sp.TenantID, sp.AppID), sp.ObjectID, store.Absent); err != nil {
		return fmt.Errorf("service principal for app %s in tenant %s: %w", sp.AppID, sp.TenantID, err)
	}
	return putJSON(ctx, tx, kindSP, appKey(sp.TenantID, sp.ObjectID), sp, store.Absent)
}

// requireAdmin checks that caller is a directory administrator of its tenant.
func (s *Service) requireAdmin(ctx context.Context, caller *authn.Principal) error {
	ok, err := s.IsDirectoryAdmin(ctx, caller)
	if err != nil {
		return err
	}
	if !ok {
		return ErrForbidden
	}
	return nil
}

// IsDirectoryAdmin reports whether p is a directory administrator of its tenant.
func (s *Service) IsDirectoryAdmin(ctx context.Context, p *authn.Principal) (bool, error) {
	if p == nil {
		return false, nil
	}
	var sp ServicePrincipal
	_, err := getJSON(ctx, s.cfg.Store, kindSP, appKey(p.TenantID, p.ObjectID), &sp)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return sp.DirectoryAdmin, nil
}

// CreateApplication registers an app in the caller's tenant; the caller
// becomes its owner. Only directory administrators may register apps.
func (s *Service) CreateApplication(ctx context.Context, caller *authn.Principal, displayName, signInAudience string) (Application, error) {
	if err := s.requireAdmin(ctx, caller); err != nil {
		return Application{}, err
	}
	displayName = strings.TrimSpace(displayName)
	if displayName == "" || len(displayName) > 256 {
		return Application{}, fmt.Errorf("%w: displayName is required (at most 256 characters)", ErrInvalid)
	}
	switch signInAudience {
	case "":
		signInAudience = AzureADMyOrg
	case AzureADMyOrg, AzureADMultipleOrgs:
	default:
		return Application{}, fmt.Errorf("%w: signInAudience must be %s or %s", ErrInvalid, AzureADMyOrg, AzureADMultipleOrgs)
	}
	app, rec, _, err := s.newApp(caller.TenantID, displayName, signInAudience, s.now())
	if err != nil {
		return Application{}, err
	}
	rec.Owners = []string{caller.ObjectID}
	err = s.cfg.Store.Update(ctx, func(tx store.Tx) error { return s.putApp(ctx, tx, rec, store.Absent) })
	if err != nil {
		return Application{}, fmt.Errorf("identity: create application: %w", err)
	}
	app.Owners = rec.Owners
	return app, nil
}

// GetApplication returns an app of the caller's tenant by object id or appId.
func (s *Service) GetApplication(ctx context.Context, tenant, id string) (Application, error) {
	rec, _, err := s.getApp(ctx, s.cfg.Store, tenant, id)
	if err != nil {
		return Application{}, err
	}
	return rec.Application, nil
}

func (s *Service) getApp(ctx context.Context, r store.Reader, tenant, id string) (*appRecord, int64, error) {
	var rec appRecord
	v, err := getJSON(ctx, r, kindApp, appKey(tenant, id), &rec)
	if errors.Is(err, ErrNotFound) {
		// Graph also addresses applications(appId='…'); accept a bare appId.
		var idx appIndex
		if _, ierr := getJSON(ctx, r, kindAppID, strings.ToLower(id), &idx); ierr == nil && strings.EqualFold(idx.TenantID, tenant) {
			v, err = getJSON(ctx, r, kindApp, appKey(tenant, idx.ObjectID), &rec)
		}
	}
	if err != nil {
		return nil, 0, fmt.Errorf("application %s: %w", id, err)
	}
	return &rec, v, nil
}

// appByAppID finds an app registration anywhere by its appId.
func (s *Service) appByAppID(ctx context.Context, appID string) (*appRecord, error) {
	var idx appIndex
	if _, err := getJSON(ctx, s.cfg.Store, kindAppID, strings.ToLower(appID), &idx); err != nil {
		return nil, err
	}
	var rec appRecord
	if _, err := getJSON(ctx, s.cfg.Store, kindApp, appKey(idx.TenantID, idx.ObjectID), &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// ListApplications lists a tenant's app registrations.
func (s *Service) ListApplications(ctx context.Context, tenant string) ([]Application, error) {
	recs, err := listJSON[appRecord](ctx, s.cfg.Store, kindApp, strings.ToLower(tenant)+"/")
	if err != nil {
		return nil, err
	}
	out := make([]Application, len(recs))
	for i, r := range recs {
		out[i] = r.Application
	}
	return out, nil
}

// DeleteApplication removes an app registration and its service
// principal in the home tenant (instances in other tenants stay, as in
// Entra, but can no longer obtain tokens).
func (s *Service) DeleteApplication(ctx context.Context, caller *authn.Principal, id string) error {
	if err := s.requireAdmin(ctx, caller); err != nil {
		return err
	}
	return s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		rec, v, err := s.getApp(ctx, tx, caller.TenantID, id)
		if err != nil {
			return err
		}
		if err := tx.Delete(ctx, kindApp, appKey(rec.TenantID, rec.ObjectID), v); err != nil {
			return fmt.Errorf("identity: delete application: %w", err)
		}
		if err := deleteKey(ctx, tx, kindAppID, strings.ToLower(rec.AppID)); err != nil {
			return err
		}
		var spID string
		if _, err := getJSON(ctx, tx, kindSPApp, appKey(rec.TenantID, rec.AppID), &spID); err == nil {
			if err := deleteKey(ctx, tx, kindSPApp, appKey(rec.TenantID, rec.AppID)); err != nil {
				return err
			}
			return deleteKey(ctx, tx, kindSP, appKey(rec.TenantID, spID))
		}
		return nil
	})
}

// updateApp applies fn to the caller's app (admins or the app's owners only).
func (s *Service) updateApp(ctx context.Context, caller *authn.Principal, id string, fn func(*appRecord) error) (*appRecord, error) {
	admin, err := s.IsDirectoryAdmin(ctx, caller)
	if err != nil {
		return nil, err
	}
	var out *appRecord
	err = s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		rec, v, err := s.getApp(ctx, tx, caller.TenantID, id)
		if err != nil {
			return err
		}
		if !admin && !slices.Contains(rec.Owners, caller.ObjectID) {
			return ErrForbidden
		}
		if err := fn(rec); err != nil {
			return err
		}
		out = rec
		return s.putApp(ctx, tx, rec, v)
	})
	return out, err
}

// AddPassword adds a client secret to an app, returning its description and
// the secret (shown only now). A zero end means two years, Graph's default.
func (s *Service) AddPassword(ctx context.Context, caller *authn.Principal, appID, displayName string, end time.Time) (PasswordCredential, string, error) {
	now := s.now()
	if end.IsZero() {
		end = now.AddDate(2, 0, 0)
	}
	if !end.After(now) {
		return PasswordCredential{}, "", fmt.Errorf("%w: endDateTime must be in the future", ErrInvalid)
	}
	keyID, err := s.newGUID()
	if err != nil {
		return PasswordCredential{}, "", err
	}
	secret, h, err := s.newSecret()
	if err != nil {
		return PasswordCredential{}, "", err
	}
	pc := PasswordCredential{KeyID: keyID, DisplayName: displayName, Hint: secret[:3], Start: now, End: end.UTC()}
	_, err = s.updateApp(ctx, caller, appID, func(rec *appRecord) error {
		if len(rec.PasswordCredentials) >= 20 {
			return fmt.Errorf("%w: an application has at most 20 client secrets", ErrInvalid)
		}
		rec.PasswordCredentials = append(rec.PasswordCredentials, pc)
		if rec.Secrets == nil {
			rec.Secrets = map[string]secretHash{}
		}
		rec.Secrets[keyID] = h
		return nil
	})
	if err != nil {
		return PasswordCredential{}, "", err
	}
	return pc, secret, nil
}

// RemovePassword deletes a client secret.
func (s *Service) RemovePassword(ctx context.Context, caller *authn.Principal, appID, keyID string) error {
	_, err := s.updateApp(ctx, caller, appID, func(rec *appRecord) error {
		i := slices.IndexFunc(rec.PasswordCredentials, func(p PasswordCredential) bool { return strings.EqualFold(p.KeyID, keyID) })
		if i < 0 {
			return fmt.Errorf("password %s: %w", keyID, ErrNotFound)
		}
		delete(rec.Secrets, rec.PasswordCredentials[i].KeyID)
		rec.PasswordCredentials = slices.Delete(rec.PasswordCredentials, i, i+1)
		return nil
	})
	return err
}

var ficNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{2,119}$`)

// ValidateFederatedCredential checks a credential's fields as Azure does,
// reporting every problem at once.
func ValidateFederatedCredential(f FederatedCredential) error {
	var errs []error
	if !ficNameRE.MatchString(f.Name) {
		errs = append(errs, errors.New("name must be 3-120 characters of letters, digits, '-' and '_', starting with a letter or digit"))
	}
	if f.Issuer == "" || len(f.Issuer) > 600 {
		errs = append(errs, errors.New("issuer is required (at most 600 characters)"))
	}
	if f.Subject == "" || len(f.Subject) > 600 {
		errs = append(errs, errors.New("subject is required (at most 600 characters)"))
	}
	if len(f.Audiences) != 1 || f.Audiences[0] == "" || len(f.Audiences[0]) > 600 {
		errs = append(errs, errors.New("audiences must hold exactly one value (at most 600 characters)"))
	}
	if len(f.Description) > 600 {
		errs = append(errs, errors.New("description is at most 600 characters"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// addFIC inserts or replaces (by name) f in list, enforcing uniqueness of
// issuer+subject and the 20-credential limit.
func addFIC(list []FederatedCredential, f FederatedCredential) ([]FederatedCredential, bool, error) {
	if err := ValidateFederatedCredential(f); err != nil {
		return nil, false, err
	}
	idx := -1
	for i, o := range list {
		if strings.EqualFold(o.Name, f.Name) {
			idx = i
			continue
		}
		if o.Issuer == f.Issuer && o.Subject == f.Subject {
			return nil, false, fmt.Errorf("%w: federated credential %q already has this issuer and subject", ErrConflict, o.Name)
		}
	}
	if idx >= 0 {
		f.ID, f.Name = list[idx].ID, list[idx].Name // name is immutable
		list[idx] = f
		return list, false, nil
	}
	if len(list) >= MaxFederatedCredentials {
		return nil, false, fmt.Errorf("%w: at most %d federated identity credentials are allowed", ErrInvalid, MaxFederatedCredentials)
	}
	return append(list, f), true, nil
}

// AddFederatedCredential adds (or, by name, replaces) a federated identity
// credential on an app; only admins and the app's owners may.
func (s *Service) AddFederatedCredential(ctx context.Context, caller *authn.Principal, appID string, f FederatedCredential) (FederatedCredential, error) {
	id, err := s.newGUID()
	if err != nil {
		return FederatedCredential{}, err
	}
	f.ID = id
	var out FederatedCredential
	_, err = s.updateApp(ctx, caller, appID, func(rec *appRecord) error {
		list, _, err := addFIC(rec.FederatedCredentials, f)
		if err != nil {
			return err
		}
		rec.FederatedCredentials = list
		out = *findFIC(list, f.Name)
		return nil
	})
	return out, err
}

// DeleteFederatedCredential removes a credential by id or name.
func (s *Service) DeleteFederatedCredential(ctx context.Context, caller *authn.Principal, appID, idOrName string) error {
	_, err := s.updateApp(ctx, caller, appID, func(rec *appRecord) error {
		f := findFIC(rec.FederatedCredentials, idOrName)
		if f == nil {
			return fmt.Errorf("federated credential %s: %w", idOrName, ErrNotFound)
		}
		rec.FederatedCredentials = slices.DeleteFunc(rec.FederatedCredentials, func(o FederatedCredential) bool { return o.ID == f.ID })
		return nil
	})
	return err
}

func findFIC(list []FederatedCredential, idOrName string) *FederatedCredential {
	for i := range list {
		if strings.EqualFold(list[i].ID, idOrName) || strings.EqualFold(list[i].Name, idOrName) {
			return &list[i]
		}
	}
	return nil
}

// CreateServicePrincipal instantiates app appID in the caller's tenant
// (consent by that tenant's directory administrator). A single-tenant app
// can be instantiated only in its home tenant.
func (s *Service) CreateServicePrincipal(ctx context.Context, caller *authn.Principal, appID string) (ServicePrincipal, error) {
	if err := s.requireAdmin(ctx, caller); err != nil {
		return ServicePrincipal{}, err
	}
	app, err := s.appByAppID(ctx, appID)
	if err != nil {
		return ServicePrincipal{}, fmt.Errorf("application %s: %w", appID, ErrNotFound)
	}
	if !strings.EqualFold(app.TenantID, caller.TenantID) && app.SignInAudience != AzureADMultipleOrgs {
		return ServicePrincipal{}, fmt.Errorf("%w: application %s is single-tenant (%s) and cannot be instantiated in another tenant",
			ErrInvalid, app.AppID, app.SignInAudience)
	}
	id, err := s.newGUID()
	if err != nil {
		return ServicePrincipal{}, err
	}
	sp := ServicePrincipal{ObjectID: id, AppID: app.AppID, TenantID: strings.ToLower(caller.TenantID), AppOwnerTenantID: app.TenantID,
		DisplayName: app.DisplayName, Type: SPTypeApplication, Created: s.now()}
	if err := s.cfg.Store.Update(ctx, func(tx store.Tx) error { return s.putSP(ctx, tx, sp) }); err != nil {
		return ServicePrincipal{}, err
	}
	return sp, nil
}

// GetServicePrincipal returns a principal of tenant by object id or appId.
func (s *Service) GetServicePrincipal(ctx context.Context, tenant, id string) (ServicePrincipal, error) {
	var sp ServicePrincipal
	_, err := getJSON(ctx, s.cfg.Store, kindSP, appKey(tenant, id), &sp)
	if errors.Is(err, ErrNotFound) {
		var oid string
		if _, ierr := getJSON(ctx, s.cfg.Store, kindSPApp, appKey(tenant, id), &oid); ierr == nil {
			_, err = getJSON(ctx, s.cfg.Store, kindSP, appKey(tenant, oid), &sp)
		}
	}
	if err != nil {
		return ServicePrincipal{}, fmt.Errorf("service principal %s: %w", id, err)
	}
	return sp, nil
}

// ListServicePrincipals lists a tenant's service principals.
func (s *Service) ListServicePrincipals(ctx context.Context, tenant string) ([]ServicePrincipal, error) {
	return listJSON[ServicePrincipal](ctx, s.cfg.Store, kindSP, strings.ToLower(tenant)+"/")
}

// DeleteServicePrincipal removes an application's instance from the caller's
// tenant. Managed identities' principals go with their identity.
func (s *Service) DeleteServicePrincipal(ctx context.Context, caller *authn.Principal, id string) error {
	if err := s.requireAdmin(ctx, caller); err != nil {
		return err
	}
	sp, err := s.GetServicePrincipal(ctx, caller.TenantID, id)
	if err != nil {
		return err
	}
	if sp.Type == SPTypeManagedIdentity {
		return fmt.Errorf("%w: a managed identity's service principal is deleted with the identity", ErrInvalid)
	}
	if sp.ObjectID == caller.ObjectID {
		return fmt.Errorf("%w: a principal cannot delete itself", ErrInvalid)
	}
	return s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		if err := deleteKey(ctx, tx, kindSPApp, appKey(sp.TenantID, sp.AppID)); err != nil {
			return err
		}
		return deleteKey(ctx, tx, kindSP, appKey(sp.TenantID, sp.ObjectID))
	})
}

func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}
