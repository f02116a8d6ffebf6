package keyvault

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/cvault/cvault/internal/jwk"
	"github.com/cvault/cvault/internal/keyops"
	"github.com/cvault/cvault/internal/release/policy"
	"github.com/cvault/cvault/internal/store"
)

// Attributes are a key version's attributes. Times are Unix seconds, as
// Key Vault sends them.
type Attributes struct {
	Enabled    bool   `json:"enabled"`
	NotBefore  *int64 `json:"nbf,omitempty"`
	Expires    *int64 `json:"exp,omitempty"`
	Created    int64  `json:"created"`
	Updated    int64  `json:"updated"`
	Exportable bool   `json:"exportable,omitempty"`
}

// ReleasePolicy is a key's Secure Key Release policy as stored (Data is
// the policy document; the release operation evaluates it).
type ReleasePolicy struct {
	ContentType string `json:"contentType"`
	Data        []byte `json:"data"`
	Immutable   bool   `json:"immutable,omitempty"`
}

// Version is one version of a key. Sealed holds its private material,
// sealed with aad = SealAAD(); it never leaves the service except through
// PrivateKey (crypto operations, and release in the SKR issue).
type Version struct {
	Vault         string            `json:"vault"` // folded vault name
	Name          string            `json:"name"`  // key name as created
	Version       string            `json:"version"`
	KeyType       string            `json:"kty"`
	Size          int               `json:"size,omitempty"` // bits, RSA and oct
	Curve         string            `json:"crv,omitempty"`
	KeyOps        []string          `json:"keyOps"`
	Public        *jwk.Key          `json:"public"` // kty and public members only
	Sealed        []byte            `json:"sealed"`
	Attributes    Attributes        `json:"attributes"`
	Tags          map[string]string `json:"tags,omitempty"`
	ReleasePolicy *ReleasePolicy    `json:"releasePolicy,omitempty"`
	Managed       bool              `json:"managed,omitempty"`
}

// StoreKey is the version's record key.
func (v *Version) StoreKey() string {
	return v.Vault + "/" + strings.ToLower(v.Name) + "/" + v.Version
}

// SealAAD binds the sealed material to this record.
func (v *Version) SealAAD() string { return KindKeyVersion + "/" + v.StoreKey() }

// keyRecord is the versionless key: which version is current, its
// rotation policy and its deleted state.
type keyRecord struct {
	Name           string          `json:"name"`
	Current        string          `json:"current"`
	Versions       int             `json:"versions"`
	RotationPolicy *RotationPolicy `json:"rotationPolicy,omitempty"`
	Deleted        *Deletion       `json:"deleted,omitempty"`
}

// DeletedKey is a soft-deleted key: its latest version and the deletion.
type DeletedKey struct {
	*Version
	Deletion Deletion
}

// KeyItem is an entry of a key list (the latest version, or one version).
type KeyItem struct {
	*Version
	Deletion *Deletion
}

var keyNameRE = regexp.MustCompile(`^[0-9a-zA-Z-]{1,127}$`)

func checkKeyName(name string) error {
	if !keyNameRE.MatchString(name) {
		return errf(ErrBadParameter, "The key name '%s' is invalid: it must be 1-127 characters of letters, digits and '-'.", name)
	}
	return nil
}

func keyKey(vault *Vault, name string) string { return vault.Key() + "/" + strings.ToLower(name) }

// CreateParams are a create-key request.
type CreateParams struct {
	KeyType        string
	Size           int
	Curve          string
	PublicExponent int
	KeyOps         []string
	Enabled        *bool
	NotBefore      *int64
	Expires        *int64
	Exportable     *bool
	Tags           map[string]string
	ReleasePolicy  *ReleasePolicy
	// APIVersion is the request's api-version (exportable keys need
	// 7.3-preview or later).
	APIVersion string
}

// ImportParams are an import-key request.
type ImportParams struct {
	Key           *jwk.Key
	HSM           bool
	Enabled       *bool
	NotBefore     *int64
	Expires       *int64
	Exportable    *bool
	Tags          map[string]string
	ReleasePolicy *ReleasePolicy
	APIVersion    string
}

var validOps = []string{keyops.OpEncrypt, keyops.OpDecrypt, keyops.OpSign, keyops.OpVerify, keyops.OpWrapKey, keyops.OpUnwrapKey, keyops.OpImport, keyops.OpExport}

func normOps(ops []string) ([]string, error) {
	out := make([]string, 0, len(ops))
	for _, op := range ops {
		i := slices.IndexFunc(validOps, func(v string) bool { return strings.EqualFold(v, op) })
		if i < 0 {
			return nil, errf(ErrBadParameter, "Invalid key operation '%s'.", op)
		}
		if !slices.Contains(out, validOps[i]) {
			out = append(out, validOps[i])
		}
	}
	return out, nil
}

// exportableSupported reports whether api-version v allows exportable keys
// and release policies (7.3-preview and later, and every dated version).
func exportableSupported(v string) bool {
	if v == "" || strings.HasPrefix(v, "20") {
		return true
	}
	return v >= "7.3"
}

// checkRelease enforces the Secure Key Release rules shared by create and
// import (wire §1.2, AKV.SKR.*).
func checkRelease(vault *Vault, kty string, exportable bool, rp *ReleasePolicy, apiVersion string) error {
	if exportable || rp != nil {
		if !vault.Premium() || !exportableSupported(apiVersion) {
			return errf(ErrBadParameter, "AKV.SKR.1001: The exportable attribute is only supported with premium vaults and API version >= '7.3-preview'.")
		}
	}
	if exportable && rp == nil {
		return errf(ErrBadParameter, "AKV.SKR.1004: Exportable keys must have release policy.")
	}
	if !exportable && rp != nil {
		return errf(ErrBadParameter, "AKV.SKR.1005: Non-exportable keys must not have release policy.")
	}
	if exportable && !jwk.IsHSM(kty) {
		return errf(ErrBadParameter, "AKV.SKR.1006: Exportable keys must be HSM-protected (RSA-HSM, EC-HSM or oct-HSM).")
	}
	if rp != nil {
		return checkPolicy(rp)
	}
	return nil
}

// checkPolicy parses a release policy so a malformed one is a 400 now,
// naming the offending node, and not a failed release later.
func checkPolicy(rp *ReleasePolicy) error {
	if rp.ContentType == "" {
		rp.ContentType = "application/json; charset=utf-8"
	}
	if !strings.HasPrefix(strings.ToLower(rp.ContentType), "application/json") {
		return errf(ErrBadParameter, "The release policy content type '%s' is not supported; use application/json; charset=utf-8.", rp.ContentType)
	}
	if _, err := policy.Parse(rp.Data); err != nil {
		var pe *policy.ParseError
		if errors.As(err, &pe) && pe.Path != "" {
			return errf(ErrBadParameter, "The release policy is invalid at '%s': %s.", pe.Path, pe.Reason)
		}
		if errors.As(err, &pe) {
			return errf(ErrBadParameter, "The release policy is invalid: %s.", pe.Reason)
		}
		return errf(ErrBadParameter, "The release policy is invalid.")
	}
	return nil
}

func checkHSM(vault *Vault, kty string) error {
	if jwk.IsHSM(kty) && !vault.Premium() {
		return errf(ErrBadParameter, "Key type '%s' is only supported in premium vaults; vault '%s' is standard.", kty, vault.Name)
	}
	return nil
}

func newVersionID(r io.Reader) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("version id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// CreateKey creates a key, or a new version of an existing one.
func (s *Service) CreateKey(ctx context.Context, vault *Vault, name string, p CreateParams) (*Version, error) {
	if err := checkKeyName(name); err != nil {
		return nil, err
	}
	kty := p.KeyType
	if jwk.Family(kty) == "" {
		return nil, errf(ErrBadParameter, "The key type '%s' is not supported.", kty)
	}
	if err := checkHSM(vault, kty); err != nil {
		return nil, err
	}
	if err := jwk.CheckPublicExponent(p.PublicExponent); err != nil {
		return nil, errf(ErrBadParameter, "The public exponent %d is not supported; only 65537 is.", p.PublicExponent)
	}
	if jwk.Family(kty) == jwk.KeyTypeOct && !jwk.IsHSM(kty) {
		return nil, errf(ErrBadParameter, "Key type 'oct' cannot be created in a vault; use oct-HSM in a premium vault.")
	}
	ops := keyops.DefaultOps(kty)
	if p.KeyOps != nil {
		var err error
		if ops, err = normOps(p.KeyOps); err != nil {
			return nil, err
		}
	}
	exportable := p.Exportable != nil && *p.Exportable
	if err := checkRelease(vault, kty, exportable, p.ReleasePolicy, p.APIVersion); err != nil {
		return nil, err
	}
	if err := checkValidity(p.NotBefore, p.Expires); err != nil {
		return nil, err
	}
	priv, err := jwk.Generate(s.rand, kty, p.Size, p.Curve)
	if err != nil {
		return nil, errf(ErrBadParameter, "%s", keyParamMessage(err, kty, p.Size, p.Curve))
	}
	enabled := p.Enabled == nil || *p.Enabled
	v := &Version{KeyType: kty, KeyOps: ops, Tags: p.Tags, ReleasePolicy: p.ReleasePolicy,
		Attributes: Attributes{Enabled: enabled, NotBefore: p.NotBefore, Expires: p.Expires, Exportable: exportable}}
	return s.addVersion(ctx, vault, name, v, priv, "")
}

func keyParamMessage(err error, kty string, size int, crv string) string {
	switch {
	case errors.Is(err, jwk.ErrUnsupportedKeySize):
		return fmt.Sprintf("The key size %d is not supported for key type '%s'.", size, kty)
	case errors.Is(err, jwk.ErrUnsupportedCurve):
		return fmt.Sprintf("The curve '%s' is not supported.", crv)
	case errors.Is(err, jwk.ErrUnsupportedKeyType):
		return fmt.Sprintf("The key type '%s' is not supported.", kty)
	}
	return "The key parameters are invalid."
}

func checkValidity(nbf, exp *int64) error {
	if nbf != nil && exp != nil && *exp <= *nbf {
		return errf(ErrBadParameter, "The key expiry time (exp) must be later than its activation time (nbf).")
	}
	return nil
}

// ImportKey imports a private JWK as a key or a new version.
func (s *Service) ImportKey(ctx context.Context, vault *Vault, name string, p ImportParams) (*Version, error) {
	if err := checkKeyName(name); err != nil {
		return nil, err
	}
	if p.Key == nil {
		return nil, errf(ErrBadParameter, "The key to import is missing.")
	}
	if len(p.Key.KeyHSM) > 0 {
		return nil, errf(ErrBadParameter, "BYOK imports (key_hsm) are not supported yet.")
	}
	priv, err := jwk.FromJWK(p.Key)
	if err != nil {
		return nil, errf(ErrBadParameter, "The key to import is invalid: it must carry its complete private material (%s).", strings.TrimPrefix(err.Error(), "jwk: "))
	}
	kty := priv.Type
	if p.HSM && !jwk.IsHSM(kty) {
		kty += "-HSM"
	}
	priv.Type = kty
	if kty == jwk.KeyTypeOct {
		return nil, errf(ErrBadParameter, "Key type 'oct' is not supported in a vault; import it with Hsm set into a premium vault (oct-HSM).")
	}
	if err := checkHSM(vault, kty); err != nil {
		return nil, err
	}
	ops := keyops.DefaultOps(kty)
	if p.Key.KeyOps != nil {
		if ops, err = normOps(p.Key.KeyOps); err != nil {
			return nil, err
		}
	}
	exportable := p.Exportable != nil && *p.Exportable
	if err := checkRelease(vault, kty, exportable, p.ReleasePolicy, p.APIVersion); err != nil {
		return nil, err
	}
	if err := checkValidity(p.NotBefore, p.Expires); err != nil {
		return nil, err
	}
	enabled := p.Enabled == nil || *p.Enabled
	v := &Version{KeyType: kty, KeyOps: ops, Tags: p.Tags, ReleasePolicy: p.ReleasePolicy,
		Attributes: Attributes{Enabled: enabled, NotBefore: p.NotBefore, Expires: p.Expires, Exportable: exportable}}
	return s.addVersion(ctx, vault, name, v, priv, "")
}

// addVersion seals priv into v and makes it the key's current version,
// in one store update. expectCurrent, when set, makes the update a no-op
// error unless that version is still current (the rotation scheduler).
func (s *Service) addVersion(ctx context.Context, vault *Vault, name string, v *Version, priv *jwk.PrivateKey, expectCurrent string) (*Version, error) {
	pub, err := priv.PublicJWK()
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	pub.KeyOps = nil
	raw, err := priv.Marshal()
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	v.Public, v.Vault = pub, vault.Key()
	switch {
	case priv.RSA != nil:
		v.Size = priv.RSA.N.BitLen()
	case priv.EC != nil:
		v.Curve, _ = jwk.CurveName(priv.EC.Curve)
	default:
		v.Size = len(priv.Oct) * 8
	}
	if v.Version, err = newVersionID(s.rand); err != nil {
		return nil, err
	}
	kk := keyKey(vault, name)
	err = s.st.Update(ctx, func(tx store.Tx) error {
		kr, ver, err := getKeyRecord(ctx, tx, kk)
		switch {
		case errors.Is(err, ErrKeyNotFound):
			kr, ver = &keyRecord{Name: name}, store.Absent
		case err != nil:
			return err
		case kr.Deleted != nil:
			return errf(ErrKeyDeleted, "Key %s is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged.", kr.Name)
		}
		if expectCurrent != "" && kr.Current != expectCurrent {
			return errRotatedMeanwhile
		}
		if kr.Versions >= s.maxV {
			return errf(ErrTooManyVersions, "Key %s already has %d versions, the most a key may have.", kr.Name, s.maxV)
		}
		v.Name = kr.Name
		now := s.nowUTC().Unix()
		v.Attributes.Created, v.Attributes.Updated = now, now
		// Seal inside the transaction body: the aad names the record,
		// whose name casing comes from the key record.
		if v.Sealed, err = s.seal.Seal(v.SealAAD(), raw); err != nil {
			return fmt.Errorf("seal: %w", err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := tx.Put(ctx, KindKeyVersion, v.StoreKey(), b, store.Absent); err != nil {
			return err
		}
		kr.Current = v.Version
		kr.Versions++
		return putKeyRecord(ctx, tx, kk, kr, ver)
	})
	if err != nil {
		return nil, err
	}
	s.cache.put(v.StoreKey(), priv)
	return v, nil
}

var errRotatedMeanwhile = errors.New("keyvault: key rotated meanwhile")

func getKeyRecord(ctx context.Context, r store.Reader, kk string) (*keyRecord, int64, error) {
	return getRecord[keyRecord](ctx, r, KindKey, kk, "key")
}

func putKeyRecord(ctx context.Context, tx store.Tx, kk string, kr *keyRecord, ver int64) error {
	b, err := json.Marshal(kr)
	if err != nil {
		return err
	}
	_, err = tx.Put(ctx, KindKey, kk, b, ver)
	return err
}

func getVersion(ctx context.Context, r store.Reader, key string) (*Version, int64, error) {
	return getRecord[Version](ctx, r, KindKeyVersion, key, "key version")
}

// getRecord reads and decodes the record of kind at key (what names it in
// errors); a missing record is ErrKeyNotFound.
func getRecord[T any](ctx context.Context, r store.Reader, kind, key, what string) (*T, int64, error) {
	rec, err := r.Get(ctx, kind, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, ErrKeyNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%s %s: %w", what, key, err)
	}
	v := new(T)
	if err := json.Unmarshal(rec.Value, v); err != nil {
		return nil, 0, fmt.Errorf("%s %s: %w", what, key, err)
	}
	return v, rec.Version, nil
}

func notFound(name, version string) error {
	id := name
	if version != "" {
		id += "/" + version
	}
	return errf(ErrKeyNotFound, "A key with (name/id) %s was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182", id)
}

// resolve reads the live (not deleted) key and the requested version
// ("" = current) in r.
func resolve(ctx context.Context, r store.Reader, vault *Vault, name, version string) (*keyRecord, *Version, int64, error) {
	if checkKeyName(name) != nil {
		return nil, nil, 0, notFound(name, version)
	}
	kk := keyKey(vault, name)
	kr, _, err := getKeyRecord(ctx, r, kk)
	if errors.Is(err, ErrKeyNotFound) || (err == nil && kr.Deleted != nil) {
		return nil, nil, 0, notFound(name, version)
	}
	if err != nil {
		return nil, nil, 0, err
	}
	ver := strings.ToLower(version)
	if ver == "" {
		ver = kr.Current
	}
	v, rv, err := getVersion(ctx, r, kk+"/"+ver)
	if errors.Is(err, ErrKeyNotFound) {
		return nil, nil, 0, notFound(name, version)
	}
	return kr, v, rv, err
}

// Key returns a version of a live key ("" = the current version).
func (s *Service) Key(ctx context.Context, vault *Vault, name, version string) (*Version, error) {
	var out *Version
	err := s.st.View(ctx, func(r store.Reader) error {
		_, v, _, err := resolve(ctx, r, vault, name, version)
		out = v
		return err
	})
	return out, err
}

// Keys lists a vault's live keys (their current versions) after the store
// key `after`, up to limit records scanned; next is where the following
// page starts ("" at the end).
func (s *Service) Keys(ctx context.Context, vault *Vault, after string, limit int) ([]KeyItem, string, error) {
	return s.listKeys(ctx, vault, after, limit, false)
}

// DeletedKeys lists a vault's soft-deleted keys.
func (s *Service) DeletedKeys(ctx context.Context, vault *Vault, after string, limit int) ([]KeyItem, string, error) {
	return s.listKeys(ctx, vault, after, limit, true)
}

func (s *Service) listKeys(ctx context.Context, vault *Vault, after string, limit int, deleted bool) ([]KeyItem, string, error) {
	var out []KeyItem
	var next string
	err := s.st.View(ctx, func(r store.Reader) error {
		out, next = nil, ""
		prefix := vault.Key() + "/"
		if after != "" && !strings.HasPrefix(after, prefix) {
			return errf(ErrBadParameter, "The $skiptoken is not valid for this vault.")
		}
		recs, err := r.List(ctx, KindKey, prefix, after, limit)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			var kr keyRecord
			if err := json.Unmarshal(rec.Value, &kr); err != nil {
				return fmt.Errorf("key %s: %w", rec.Key, err)
			}
			if (kr.Deleted != nil) != deleted {
				continue
			}
			v, _, err := getVersion(ctx, r, rec.Key+"/"+kr.Current)
			if err != nil {
				return err
			}
			out = append(out, KeyItem{Version: v, Deletion: kr.Deleted})
		}
		if limit > 0 && len(recs) == limit {
			next = recs[len(recs)-1].Key
		}
		return nil
	})
	return out, next, err
}

// Versions lists the versions of a live key.
func (s *Service) Versions(ctx context.Context, vault *Vault, name, after string, limit int) ([]*Version, string, error) {
	var out []*Version
	var next string
	err := s.st.View(ctx, func(r store.Reader) error {
		out, next = nil, ""
		if _, _, _, err := resolve(ctx, r, vault, name, ""); err != nil {
			return err
		}
		prefix := keyKey(vault, name) + "/"
		if after != "" && !strings.HasPrefix(after, prefix) {
			return errf(ErrBadParameter, "The $skiptoken is not valid for this key.")
		}
		recs, err := r.List(ctx, KindKeyVersion, prefix, after, limit)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			v := new(Version)
			if err := json.Unmarshal(rec.Value, v); err != nil {
				return fmt.Errorf("key version %s: %w", rec.Key, err)
			}
			out = append(out, v)
		}
		if limit > 0 && len(recs) == limit {
			next = recs[len(recs)-1].Key
		}
		return nil
	})
	return out, next, err
}

// UpdateParams are an update-key request; nil fields stay as they are.
type UpdateParams struct {
	KeyOps        []string
	Enabled       *bool
	NotBefore     *int64
	Expires       *int64
	Exportable    *bool
	Tags          map[string]string
	ReleasePolicy *ReleasePolicy
}

// UpdateKey changes a version's attributes, operations, tags or release
// policy ("" = the current version).
func (s *Service) UpdateKey(ctx context.Context, vault *Vault, name, version string, p UpdateParams) (*Version, error) {
	var ops []string
	if p.KeyOps != nil {
		var err error
		if ops, err = normOps(p.KeyOps); err != nil {
			return nil, err
		}
	}
	if p.ReleasePolicy != nil {
		if err := checkPolicy(p.ReleasePolicy); err != nil {
			return nil, err
		}
	}
	var out *Version
	err := s.st.Update(ctx, func(tx store.Tx) error {
		_, v, rv, err := resolve(ctx, tx, vault, name, version)
		if err != nil {
			return err
		}
		if p.Exportable != nil && *p.Exportable != v.Attributes.Exportable {
			return errf(ErrBadParameter, "AKV.SKR.1014: Cannot modify the exportable state of a key.")
		}
		if p.ReleasePolicy != nil {
			if v.ReleasePolicy != nil && v.ReleasePolicy.Immutable {
				return errf(ErrBadParameter, "AKV.SKR.1020: Immutable Key Release Policy cannot be modified.")
			}
			if !v.Attributes.Exportable {
				return errf(ErrBadParameter, "AKV.SKR.1005: Non-exportable keys must not have release policy.")
			}
			v.ReleasePolicy = p.ReleasePolicy
		}
		if ops != nil {
			v.KeyOps = ops
		}
		if p.Enabled != nil {
			v.Attributes.Enabled = *p.Enabled
		}
		if p.NotBefore != nil {
			v.Attributes.NotBefore = p.NotBefore
		}
		if p.Expires != nil {
			v.Attributes.Expires = p.Expires
		}
		if err := checkValidity(v.Attributes.NotBefore, v.Attributes.Expires); err != nil {
			return err
		}
		if p.Tags != nil {
			v.Tags = p.Tags
		}
		v.Attributes.Updated = s.nowUTC().Unix()
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := tx.Put(ctx, KindKeyVersion, v.StoreKey(), b, rv); err != nil {
			return err
		}
		out = v
		return nil
	})
	return out, err
}

// DeleteKey soft-deletes a key with all its versions.
func (s *Service) DeleteKey(ctx context.Context, vault *Vault, name string) (*DeletedKey, error) {
	var out *DeletedKey
	err := s.st.Update(ctx, func(tx store.Tx) error {
		kr, v, _, err := resolve(ctx, tx, vault, name, "")
		if err != nil {
			return err
		}
		kk := keyKey(vault, name)
		_, ver, err := getKeyRecord(ctx, tx, kk)
		if err != nil {
			return err
		}
		now := s.nowUTC()
		kr.Deleted = &Deletion{Deleted: now, ScheduledPurgeDate: now.AddDate(0, 0, vault.Properties.SoftDeleteRetentionInDays)}
		if err := putKeyRecord(ctx, tx, kk, kr, ver); err != nil {
			return err
		}
		out = &DeletedKey{Version: v, Deletion: *kr.Deleted}
		return nil
	})
	return out, err
}

func deletedNotFound(name string) error {
	return errf(ErrKeyNotFound, "Deleted Key not found: %s", name)
}

func (s *Service) deleted(ctx context.Context, r store.Reader, vault *Vault, name string) (*keyRecord, int64, *Version, error) {
	if checkKeyName(name) != nil {
		return nil, 0, nil, deletedNotFound(name)
	}
	kk := keyKey(vault, name)
	kr, ver, err := getKeyRecord(ctx, r, kk)
	if errors.Is(err, ErrKeyNotFound) || (err == nil && kr.Deleted == nil) {
		return nil, 0, nil, deletedNotFound(name)
	}
	if err != nil {
		return nil, 0, nil, err
	}
	v, _, err := getVersion(ctx, r, kk+"/"+kr.Current)
	return kr, ver, v, err
}

// DeletedKey returns a soft-deleted key.
func (s *Service) DeletedKey(ctx context.Context, vault *Vault, name string) (*DeletedKey, error) {
	var out *DeletedKey
	err := s.st.View(ctx, func(r store.Reader) error {
		kr, _, v, err := s.deleted(ctx, r, vault, name)
		if err != nil {
			return err
		}
		out = &DeletedKey{Version: v, Deletion: *kr.Deleted}
		return nil
	})
	return out, err
}

// RecoverKey brings a soft-deleted key back and returns its current version.
func (s *Service) RecoverKey(ctx context.Context, vault *Vault, name string) (*Version, error) {
	var out *Version
	err := s.st.Update(ctx, func(tx store.Tx) error {
		kr, ver, v, err := s.deleted(ctx, tx, vault, name)
		if err != nil {
			return err
		}
		kr.Deleted = nil
		out = v
		return putKeyRecord(ctx, tx, keyKey(vault, name), kr, ver)
	})
	return out, err
}

// PurgeKey deletes a soft-deleted key for good, unless the vault has purge
// protection.
func (s *Service) PurgeKey(ctx context.Context, vault *Vault, name string) error {
	kk := keyKey(vault, name)
	err := s.st.Update(ctx, func(tx store.Tx) error {
		if _, _, _, err := s.deleted(ctx, tx, vault, name); err != nil {
			return err
		}
		if vault.Properties.EnablePurgeProtection {
			return errf(ErrPurgeProtected, "Operation \"purge\" is not allowed because purge protection is enabled for this vault. Key Vault service will automatically purge it after the retention period has passed.")
		}
		return purgeKeyTx(ctx, tx, kk)
	})
	if err == nil {
		s.cache.dropPrefix(kk + "/")
	}
	return err
}

// purgeKeyTx deletes a key record and all its versions.
func purgeKeyTx(ctx context.Context, tx store.Tx, kk string) error {
	recs, err := tx.List(ctx, KindKeyVersion, kk+"/", "", 0)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		if err := tx.Delete(ctx, KindKeyVersion, rec.Key, store.Any); err != nil {
			return err
		}
	}
	return tx.Delete(ctx, KindKey, kk, store.Any)
}

// Use returns a version for a cryptographic operation op (a key_ops name)
// with its private key, after checking that the version is enabled, valid
// now and allows op. The Version is shared with concurrent requests: read-only.
func (s *Service) Use(ctx context.Context, vault *Vault, name, version, op string) (*Version, *jwk.PrivateKey, error) {
	v, err := s.sharedVersion(ctx, vault, name, version)
	if err != nil {
		return nil, nil, err
	}
	return s.usable(v, op)
}

// usable checks that v is enabled, valid now and allows op, and returns
// it with its private key.
func (s *Service) usable(v *Version, op string) (*Version, *jwk.PrivateKey, error) {
	now := s.now().Unix()
	switch a := v.Attributes; {
	case !a.Enabled:
		return nil, nil, errf(ErrKeyDisabled, "Operation %s is not allowed on a disabled key.", op)
	case a.NotBefore != nil && now < *a.NotBefore:
		return nil, nil, errf(ErrKeyNotYetValid, "Operation %s is not allowed on a key that is not yet valid.", op)
	case a.Expires != nil && now >= *a.Expires:
		return nil, nil, errf(ErrKeyExpired, "Operation %s is not allowed on an expired key.", op)
	}
	if !slices.Contains(v.KeyOps, op) {
		return nil, nil, errf(ErrOpNotPermitted, "Operation %s is not permitted on this key.", op)
	}
	priv, err := s.privateKey(v)
	if err != nil {
		return nil, nil, err
	}
	return v, priv, nil
}

// PrivateKey unseals a version's private key. Callers must keep it out of
// responses, logs and errors (the release operation wraps it).
func (s *Service) PrivateKey(v *Version) (*jwk.PrivateKey, error) { return s.privateKey(v) }

func (s *Service) privateKey(v *Version) (*jwk.PrivateKey, error) {
	sk := v.StoreKey()
	if k := s.cache.get(sk); k != nil {
		return k, nil
	}
	raw, err := s.seal.Unseal(v.SealAAD(), v.Sealed)
	if err != nil {
		return nil, fmt.Errorf("unseal key %s/%s: %w", v.Name, v.Version, err)
	}
	k, err := jwk.ParsePrivateKey(v.KeyType, raw)
	clear(raw)
	if err != nil {
		return nil, fmt.Errorf("parse key %s/%s: %w", v.Name, v.Version, err)
	}
	s.cache.put(sk, k)
	return k, nil
}

func (c *keyCache) get(k string) *jwk.PrivateKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.m[k]; e != nil {
		return e.key
	}
	return nil
}

func (c *keyCache) put(k string, key *jwk.PrivateKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= keyCacheMax {
		for old := range c.m { // map order is random: evict one arbitrary entry
			delete(c.m, old)
			break
		}
	}
	c.m[k] = &cachedKey{key: key}
}

func (c *keyCache) dropPrefix(p string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if strings.HasPrefix(k, p) {
			delete(c.m, k)
		}
	}
}

type cachedKey struct{ key *jwk.PrivateKey }
