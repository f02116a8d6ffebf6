package kvhttp

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/cvault/cvault/internal/authz"
	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/jwk"
	"github.com/cvault/cvault/internal/keyops"
	"github.com/cvault/cvault/internal/keyvault"
	"github.com/cvault/cvault/internal/route"
)

// cryptoOps are the POST operations on a key version; the same names in
// the version slot (/keys/{name}/wrapkey) mean the current version, as
// azkeys sends them for version "" (wire §1.1).
var cryptoOps = []string{"wrapkey", "unwrapkey", "encrypt", "decrypt", "sign", "verify"}

func (h *handlers) dataRoutes() []route.Route {
	r := func(method, pattern string, fn route.HandlerFunc) route.Route {
		return route.Route{Method: method, Pattern: pattern, Host: route.Vault, Auth: route.Bearer, Service: route.KeyVault,
			APIVersions: DataAPIVersions, Handler: fn}
	}
	rs := []route.Route{
		r("GET", "/keys", h.listKeys),
		r("POST", "/keys/{name}/create", h.createKey),
		r("PUT", "/keys/{name}", h.importKey),
		r("GET", "/keys/{name}", h.getKey),
		r("GET", "/keys/{name}/{version}", h.getKey),
		r("PATCH", "/keys/{name}", h.updateKey),
		r("PATCH", "/keys/{name}/{version}", h.updateKey),
		r("DELETE", "/keys/{name}", h.deleteKey),
		r("GET", "/keys/{name}/versions", h.listVersions),
		r("POST", "/keys/{name}/rotate", h.rotateKey),
		r("POST", "/keys/{name}/backup", h.backupKey),
		r("POST", "/keys/restore", h.restoreKey),
		r("GET", "/keys/{name}/rotationpolicy", h.getRotationPolicy),
		r("PUT", "/keys/{name}/rotationpolicy", h.putRotationPolicy),
		r("GET", "/deletedkeys", h.listDeletedKeys),
		r("GET", "/deletedkeys/{name}", h.getDeletedKey),
		r("DELETE", "/deletedkeys/{name}", h.purgeDeletedKey),
		r("POST", "/deletedkeys/{name}/recover", h.recoverDeletedKey),
	}
	for _, op := range cryptoOps {
		rs = append(rs, r("POST", "/keys/{name}/"+op, h.crypto(op)), r("POST", "/keys/{name}/{version}/"+op, h.crypto(op)))
	}
	return rs
}

// begin loads the request's vault, sets the region header, checks the
// caller's tenant and authorizes op on key name ("" = the vault's keys).
func (h *handlers) begin(w http.ResponseWriter, r *http.Request, name string, op keyvault.Operation) (*keyvault.Vault, error) {
	v, err := h.svc.DataVault(r.Context(), route.VaultName(r.Context()))
	if err != nil {
		return nil, mapErr(err)
	}
	return v, h.authorizeData(w, r, v, name, op)
}

// authorizeData is begin's second half, on an already-read vault v.
func (h *handlers) authorizeData(w http.ResponseWriter, r *http.Request, v *keyvault.Vault, name string, op keyvault.Operation) error {
	ctx := r.Context()
	w.Header().Set("x-ms-keyvault-region", v.Location)
	p, err := principal(r)
	if err != nil {
		return err
	}
	if !strings.EqualFold(p.TenantID, v.Properties.TenantID) {
		// Azure answers a token of another tenant with 401 and the
		// challenge naming the vault's tenant (AKV10032 invalid issuer).
		e := azure.Errorf(http.StatusUnauthorized, azure.CodeUnauthorized,
			"AKV10032: Invalid issuer. Expected one of %s/%s/v2.0, found %s.", h.base, v.Properties.TenantID, p.Issuer)
		e.Header = http.Header{}
		e.Header.Set("WWW-Authenticate", fmt.Sprintf(`Bearer authorization="%s/%s", resource="%s"`, h.base, v.Properties.TenantID, h.resource))
		return e
	}
	scope := v.ID()
	if name != "" {
		scope += "/keys/" + name
	}
	if v.Properties.EnableRBACAuthorization {
		if err := h.az.Check(ctx, p, op.DataAction, scope); err != nil {
			return azure.Errorf(http.StatusForbidden, azure.CodeForbidden,
				"Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: %s\r\nAction: '%s'\r\nResource: '%s'\r\nAssignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: null \r\nVault: %s;location=%s\r\n",
				callerOf(p), op.DataAction, strings.ToLower(scope), v.Name, v.Location).WithInner("ForbiddenByRbac").Wrap(err)
		}
	} else if err := authz.CheckAccessPolicy(v.Properties.AccessPolicies, p, authz.PolicyPermission{Collection: authz.Keys, Name: op.Permission}); err != nil {
		return azure.Errorf(http.StatusForbidden, azure.CodeForbidden,
			"The user, group or application '%s' does not have keys %s permission on key vault '%s;location=%s'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287",
			callerOf(p), op.Permission, v.Name, v.Location).WithInner("ForbiddenByPolicy").Wrap(err)
	}
	route.AddLogAttrs(ctx, slog.String("vault", v.Name), slog.String("key", name))
	return nil
}

// --- JSON shapes (SPEC74) ---

type attributesJSON struct {
	Enabled         *bool  `json:"enabled,omitempty"`
	NotBefore       *int64 `json:"nbf,omitempty"`
	Expires         *int64 `json:"exp,omitempty"`
	Created         *int64 `json:"created,omitempty"`
	Updated         *int64 `json:"updated,omitempty"`
	RecoveryLevel   string `json:"recoveryLevel,omitempty"`
	RecoverableDays *int   `json:"recoverableDays,omitempty"`
	Exportable      *bool  `json:"exportable,omitempty"`
}

type releasePolicyJSON struct {
	ContentType string    `json:"contentType,omitempty"`
	Data        jwk.Bytes `json:"data,omitempty"`
	Immutable   bool      `json:"immutable"`
}

type keyBundleJSON struct {
	Key                *jwk.Key           `json:"key"`
	Attributes         attributesJSON     `json:"attributes"`
	Tags               map[string]string  `json:"tags,omitempty"`
	Managed            *bool              `json:"managed,omitempty"`
	ReleasePolicy      *releasePolicyJSON `json:"release_policy,omitempty"`
	RecoveryID         string             `json:"recoveryId,omitempty"`
	DeletedDate        *int64             `json:"deletedDate,omitempty"`
	ScheduledPurgeDate *int64             `json:"scheduledPurgeDate,omitempty"`
}

type keyItemJSON struct {
	KID                string            `json:"kid"`
	Attributes         attributesJSON    `json:"attributes"`
	Tags               map[string]string `json:"tags,omitempty"`
	Managed            *bool             `json:"managed,omitempty"`
	RecoveryID         string            `json:"recoveryId,omitempty"`
	DeletedDate        *int64            `json:"deletedDate,omitempty"`
	ScheduledPurgeDate *int64            `json:"scheduledPurgeDate,omitempty"`
}

func (h *handlers) kid(vault *keyvault.Vault, name, version string) string {
	k := h.vaultURI(vault.Name) + "/keys/" + name
	if version != "" {
		k += "/" + version
	}
	return k
}

func attrsOf(vault *keyvault.Vault, v *keyvault.Version) attributesJSON {
	a := v.Attributes
	days := vault.Properties.SoftDeleteRetentionInDays
	out := attributesJSON{Enabled: &a.Enabled, NotBefore: a.NotBefore, Expires: a.Expires, Created: &a.Created, Updated: &a.Updated,
		RecoveryLevel: vault.RecoveryLevel(), RecoverableDays: &days}
	if a.Exportable {
		out.Exportable = &a.Exportable
	}
	return out
}

func (h *handlers) bundle(vault *keyvault.Vault, v *keyvault.Version) keyBundleJSON {
	k := *v.Public
	k.KID = h.kid(vault, v.Name, v.Version)
	k.KeyType = v.KeyType
	k.KeyOps = v.KeyOps
	out := keyBundleJSON{Key: &k, Attributes: attrsOf(vault, v), Tags: v.Tags}
	if rp := v.ReleasePolicy; rp != nil {
		out.ReleasePolicy = &releasePolicyJSON{ContentType: rp.ContentType, Data: rp.Data, Immutable: rp.Immutable}
	}
	return out
}

func (h *handlers) deletedFields(vault *keyvault.Vault, name string, d keyvault.Deletion) (string, *int64, *int64) {
	dd, sp := d.Deleted.Unix(), d.ScheduledPurgeDate.Unix()
	return h.vaultURI(vault.Name) + "/deletedkeys/" + name, &dd, &sp
}

func policyIn(p *releasePolicyJSON) *keyvault.ReleasePolicy {
	if p == nil {
		return nil
	}
	return &keyvault.ReleasePolicy{ContentType: p.ContentType, Data: p.Data, Immutable: p.Immutable}
}

func decode(r *http.Request, v any) error {
	return azure.DecodeJSON(r, 0, azure.CodeBadParameter, false, v)
}

// --- handlers ---

type createBody struct {
	KeyType        string             `json:"kty"`
	KeySize        *int               `json:"key_size"`
	PublicExponent *int               `json:"public_exponent"`
	KeyOps         []string           `json:"key_ops"`
	Attributes     *attributesJSON    `json:"attributes"`
	Tags           map[string]string  `json:"tags"`
	Curve          string             `json:"crv"`
	ReleasePolicy  *releasePolicyJSON `json:"release_policy"`
}

func (a *attributesJSON) parts() (enabled *bool, nbf, exp *int64, exportable *bool) {
	if a == nil {
		return nil, nil, nil, nil
	}
	return a.Enabled, a.NotBefore, a.Expires, a.Exportable
}

func (h *handlers) createKey(w http.ResponseWriter, r *http.Request) error {
	return serveKey(h, w, r, keyvault.OpCreate, func(ctx context.Context, vault *keyvault.Vault, name string) (*keyvault.Version, error) {
		var b createBody
		if err := decode(r, &b); err != nil {
			return nil, err
		}
		if b.KeyType == "" {
			return nil, azure.Errorf(http.StatusBadRequest, azure.CodeBadParameter, "The key type (kty) is required.")
		}
		p := keyvault.CreateParams{KeyType: b.KeyType, Curve: b.Curve, KeyOps: b.KeyOps, Tags: b.Tags,
			ReleasePolicy: policyIn(b.ReleasePolicy), APIVersion: r.URL.Query().Get("api-version")}
		if b.KeySize != nil {
			p.Size = *b.KeySize
			if p.Size == 0 {
				return nil, azure.Errorf(http.StatusBadRequest, azure.CodeBadParameter, "The key size 0 is not supported.")
			}
		}
		if b.PublicExponent != nil {
			p.PublicExponent = *b.PublicExponent
		}
		p.Enabled, p.NotBefore, p.Expires, p.Exportable = b.Attributes.parts()
		v, err := h.svc.CreateKey(ctx, vault, name, p)
		if err == nil {
			route.AddLogAttrs(ctx, slog.String("version", v.Version))
		}
		return v, err
	}, h.bundle)
}

type importBody struct {
	Key           *jwk.Key           `json:"key"`
	HSM           *bool              `json:"Hsm"`
	Attributes    *attributesJSON    `json:"attributes"`
	Tags          map[string]string  `json:"tags"`
	ReleasePolicy *releasePolicyJSON `json:"release_policy"`
}

func (h *handlers) importKey(w http.ResponseWriter, r *http.Request) error {
	return serveKey(h, w, r, keyvault.OpImport, func(ctx context.Context, vault *keyvault.Vault, name string) (*keyvault.Version, error) {
		var b importBody
		if err := decode(r, &b); err != nil {
			return nil, err
		}
		if b.Key == nil {
			return nil, azure.Errorf(http.StatusBadRequest, azure.CodeBadParameter, "The key to import (key) is required.")
		}
		if jwk.Family(b.Key.KeyType) == "" {
			return nil, azure.Errorf(http.StatusBadRequest, azure.CodeBadParameter, "The key type '%s' is not supported.", b.Key.KeyType)
		}
		p := keyvault.ImportParams{Key: b.Key, HSM: b.HSM != nil && *b.HSM, Tags: b.Tags, ReleasePolicy: policyIn(b.ReleasePolicy),
			APIVersion: r.URL.Query().Get("api-version")}
		p.Enabled, p.NotBefore, p.Expires, p.Exportable = b.Attributes.parts()
		return h.svc.ImportKey(ctx, vault, name, p)
	}, h.bundle)
}

func (h *handlers) getKey(w http.ResponseWriter, r *http.Request) error {
	return serveKey(h, w, r, keyvault.OpGet, func(ctx context.Context, vault *keyvault.Vault, name string) (*keyvault.Version, error) {
		return h.svc.Key(ctx, vault, name, r.PathValue("version"))
	}, h.bundle)
}

type updateBody struct {
	KeyOps        []string           `json:"key_ops"`
	Attributes    *attributesJSON    `json:"attributes"`
	Tags          map[string]string  `json:"tags"`
	ReleasePolicy *releasePolicyJSON `json:"release_policy"`
}

func (h *handlers) updateKey(w http.ResponseWriter, r *http.Request) error {
	return serveKey(h, w, r, keyvault.OpUpdate, func(ctx context.Context, vault *keyvault.Vault, name string) (*keyvault.Version, error) {
		var b updateBody
		if err := decode(r, &b); err != nil {
			return nil, err
		}
		p := keyvault.UpdateParams{KeyOps: b.KeyOps, Tags: b.Tags, ReleasePolicy: policyIn(b.ReleasePolicy)}
		p.Enabled, p.NotBefore, p.Expires, p.Exportable = b.Attributes.parts()
		return h.svc.UpdateKey(ctx, vault, name, r.PathValue("version"), p)
	}, h.bundle)
}

func (h *handlers) deleteKey(w http.ResponseWriter, r *http.Request) error {
	return serveKey(h, w, r, keyvault.OpDelete, h.svc.DeleteKey, h.deletedBundle)
}

// deletedBundle is a deleted key's bundle: the key with its recovery id and dates.
func (h *handlers) deletedBundle(vault *keyvault.Vault, d *keyvault.DeletedKey) keyBundleJSON {
	out := h.bundle(vault, d.Version)
	out.RecoveryID, out.DeletedDate, out.ScheduledPurgeDate = h.deletedFields(vault, d.Name, d.Deletion)
	return out
}

// serveKey is the shape most key handlers share: authorize op on the key
// named in the URL, let call do the work, and answer 200 with what reply
// makes of its result. call's errors go through mapErr (which passes an
// *azure.Error, such as a decode error, unchanged).
func serveKey[T, R any](h *handlers, w http.ResponseWriter, r *http.Request, op keyvault.Operation,
	call func(ctx context.Context, vault *keyvault.Vault, name string) (T, error), reply func(*keyvault.Vault, T) R) error {
	name := r.PathValue("name")
	vault, err := h.begin(w, r, name, op)
	if err != nil {
		return err
	}
	t, err := call(r.Context(), vault, name)
	if err != nil {
		return mapErr(err)
	}
	azure.WriteJSON(w, http.StatusOK, reply(vault, t))
	return nil
}

// pageBase is where nextLink points: the vault URI for vault-host
// requests, the base URL for the /vaults/{vault}/ alias.
func (h *handlers) pageBase(r *http.Request, vault *keyvault.Vault) string {
	if strings.HasPrefix(strings.ToLower(r.URL.Path), "/vaults/") {
		return h.base
	}
	return h.vaultURI(vault.Name)
}

func (h *handlers) listKeys(w http.ResponseWriter, r *http.Request) error { return h.list(w, r, false) }

func (h *handlers) listDeletedKeys(w http.ResponseWriter, r *http.Request) error {
	return h.list(w, r, true)
}

func (h *handlers) list(w http.ResponseWriter, r *http.Request, deleted bool) error {
	op := keyvault.OpList
	if deleted {
		op = keyvault.OpListDeleted
	}
	vault, err := h.begin(w, r, "", op)
	if err != nil {
		return err
	}
	limit, after, err := keyPage(r)
	if err != nil {
		return err
	}
	list := h.svc.Keys
	if deleted {
		list = h.svc.DeletedKeys
	}
	items, next, err := list(r.Context(), vault, after, limit)
	if err != nil {
		return mapErr(err)
	}
	out := azure.Page[keyItemJSON]{Value: []keyItemJSON{}, NextLink: azure.NextLink(h.pageBase(r, vault), r, azure.EncodeSkipToken(next))}
	for _, it := range items {
		ij := keyItemJSON{KID: h.kid(vault, it.Name, ""), Attributes: attrsOf(vault, it.Version), Tags: it.Tags}
		if it.Deletion != nil {
			ij.RecoveryID, ij.DeletedDate, ij.ScheduledPurgeDate = h.deletedFields(vault, it.Name, *it.Deletion)
		}
		out.Value = append(out.Value, ij)
	}
	azure.WriteJSON(w, http.StatusOK, out)
	return nil
}

// keyPage reads a key list's maxresults (25 at most and by default) and
// its $skiptoken.
func keyPage(r *http.Request) (limit int, after string, err error) {
	if limit, err = azure.PageSize(r, "maxresults", 25, 25); err != nil {
		return 0, "", err
	}
	if after, err = azure.SkipToken(r); err != nil {
		return 0, "", err
	}
	return limit, after, nil
}

func (h *handlers) listVersions(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	vault, err := h.begin(w, r, name, keyvault.OpList)
	if err != nil {
		return err
	}
	limit, after, err := keyPage(r)
	if err != nil {
		return err
	}
	vs, next, err := h.svc.Versions(r.Context(), vault, name, after, limit)
	if err != nil {
		return mapErr(err)
	}
	out := azure.Page[keyItemJSON]{Value: []keyItemJSON{}, NextLink: azure.NextLink(h.pageBase(r, vault), r, azure.EncodeSkipToken(next))}
	for _, v := range vs {
		out.Value = append(out.Value, keyItemJSON{KID: h.kid(vault, v.Name, v.Version), Attributes: attrsOf(vault, v), Tags: v.Tags})
	}
	azure.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (h *handlers) getDeletedKey(w http.ResponseWriter, r *http.Request) error {
	return serveKey(h, w, r, keyvault.OpGetDeleted, h.svc.DeletedKey, h.deletedBundle)
}

func (h *handlers) recoverDeletedKey(w http.ResponseWriter, r *http.Request) error {
	return serveKey(h, w, r, keyvault.OpRecover, h.svc.RecoverKey, h.bundle)
}

func (h *handlers) purgeDeletedKey(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	vault, err := h.begin(w, r, name, keyvault.OpPurge)
	if err != nil {
		return err
	}
	if err := h.svc.PurgeKey(r.Context(), vault, name); err != nil {
		return mapErr(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *handlers) rotateKey(w http.ResponseWriter, r *http.Request) error {
	return serveKey(h, w, r, keyvault.OpRotate, h.svc.RotateKey, h.bundle)
}

type rotationPolicyJSON struct {
	ID              string               `json:"id,omitempty"`
	LifetimeActions []lifetimeActionJSON `json:"lifetimeActions"`
	Attributes      *struct {
		ExpiryTime string `json:"expiryTime,omitempty"`
		Created    *int64 `json:"created,omitempty"`
		Updated    *int64 `json:"updated,omitempty"`
	} `json:"attributes,omitempty"`
}

type lifetimeActionJSON struct {
	Trigger struct {
		TimeAfterCreate  string `json:"timeAfterCreate,omitempty"`
		TimeBeforeExpiry string `json:"timeBeforeExpiry,omitempty"`
	} `json:"trigger"`
	Action struct {
		Type string `json:"type"`
	} `json:"action"`
}

func (h *handlers) policyJSON(vault *keyvault.Vault, name string, p keyvault.RotationPolicy) rotationPolicyJSON {
	out := rotationPolicyJSON{ID: h.vaultURI(vault.Name) + "/keys/" + name + "/rotationpolicy", LifetimeActions: []lifetimeActionJSON{}}
	for _, la := range p.LifetimeActions {
		var j lifetimeActionJSON
		j.Trigger.TimeAfterCreate, j.Trigger.TimeBeforeExpiry, j.Action.Type = la.TimeAfterCreate, la.TimeBeforeExpiry, la.Action
		out.LifetimeActions = append(out.LifetimeActions, j)
	}
	out.Attributes = &struct {
		ExpiryTime string `json:"expiryTime,omitempty"`
		Created    *int64 `json:"created,omitempty"`
		Updated    *int64 `json:"updated,omitempty"`
	}{ExpiryTime: p.ExpiryTime}
	if p.Created != 0 {
		out.Attributes.Created, out.Attributes.Updated = &p.Created, &p.Updated
	}
	return out
}

func (h *handlers) getRotationPolicy(w http.ResponseWriter, r *http.Request) error {
	return serveKey(h, w, r, keyvault.OpGetRotationPolicy, h.svc.RotationPolicy, h.rotationPolicyReply(r))
}

// rotationPolicyReply renders the rotation policy of the key named in r's URL.
func (h *handlers) rotationPolicyReply(r *http.Request) func(*keyvault.Vault, keyvault.RotationPolicy) rotationPolicyJSON {
	return func(vault *keyvault.Vault, p keyvault.RotationPolicy) rotationPolicyJSON {
		return h.policyJSON(vault, r.PathValue("name"), p)
	}
}

func (h *handlers) putRotationPolicy(w http.ResponseWriter, r *http.Request) error {
	return serveKey(h, w, r, keyvault.OpSetRotationPolicy, func(ctx context.Context, vault *keyvault.Vault, name string) (keyvault.RotationPolicy, error) {
		var b rotationPolicyJSON
		if err := decode(r, &b); err != nil {
			return keyvault.RotationPolicy{}, err
		}
		var p keyvault.RotationPolicy
		for _, la := range b.LifetimeActions {
			p.LifetimeActions = append(p.LifetimeActions, keyvault.LifetimeAction{TimeAfterCreate: la.Trigger.TimeAfterCreate,
				TimeBeforeExpiry: la.Trigger.TimeBeforeExpiry, Action: la.Action.Type})
		}
		if b.Attributes != nil {
			p.ExpiryTime = b.Attributes.ExpiryTime
		}
		return h.svc.SetRotationPolicy(ctx, vault, name, p)
	}, h.rotationPolicyReply(r))
}

type opBody struct {
	Alg    string    `json:"alg"`
	Value  jwk.Bytes `json:"value"`
	Digest jwk.Bytes `json:"digest"`
	IV     jwk.Bytes `json:"iv"`
	AAD    jwk.Bytes `json:"aad"`
	Tag    jwk.Bytes `json:"tag"`
}

type opResultJSON struct {
	KID   string    `json:"kid"`
	Value jwk.Bytes `json:"value"`
	IV    jwk.Bytes `json:"iv,omitempty"`
	Tag   jwk.Bytes `json:"tag,omitempty"`
	AAD   jwk.Bytes `json:"aad,omitempty"`
}

var opTable = map[string]struct {
	op    keyvault.Operation
	keyOp string
}{
	"wrapkey":   {keyvault.OpWrapKey, keyops.OpWrapKey},
	"unwrapkey": {keyvault.OpUnwrapKey, keyops.OpUnwrapKey},
	"encrypt":   {keyvault.OpEncrypt, keyops.OpEncrypt},
	"decrypt":   {keyvault.OpDecrypt, keyops.OpDecrypt},
	"sign":      {keyvault.OpSign, keyops.OpSign},
	"verify":    {keyvault.OpVerify, keyops.OpVerify},
}

// maxOpValue bounds value/digest: Key Vault's largest input is an RSA-4096
// block or a GCM plaintext; larger is refused before any crypto runs.
const maxOpValue = 64 << 10

func (h *handlers) crypto(opName string) route.HandlerFunc {
	t := opTable[opName]
	return func(w http.ResponseWriter, r *http.Request) error {
		// One store read for vault and key, then the tenant and
		// authorization checks outside it; a missing key is only
		// reported (by UseRead) to an authorized caller.
		name := r.PathValue("name")
		kr, err := h.svc.ReadKey(r.Context(), route.VaultName(r.Context()), name, r.PathValue("version"))
		if err != nil {
			return mapErr(err)
		}
		vault := kr.Vault
		if err := h.authorizeData(w, r, vault, name, t.op); err != nil {
			return err
		}
		var b opBody
		if err := decodeOp(r, &b); err != nil {
			return err
		}
		if b.Alg == "" {
			return azure.Errorf(http.StatusBadRequest, azure.CodeBadParameter, "The algorithm (alg) is required.")
		}
		if len(b.Value) == 0 && opName != "encrypt" {
			return azure.Errorf(http.StatusBadRequest, azure.CodeBadParameter, "The value is required.")
		}
		if len(b.Value) > maxOpValue || len(b.Digest) > maxOpValue || len(b.AAD) > maxOpValue {
			return azure.Errorf(http.StatusBadRequest, azure.CodeBadParameter, "The value is larger than %d bytes.", maxOpValue)
		}
		v, key, err := h.svc.UseRead(kr, t.keyOp)
		if err != nil {
			return mapErr(err)
		}
		route.AddLogAttrs(r.Context(), slog.String("version", v.Version), slog.String("alg", b.Alg))
		res := opResultJSON{KID: h.kid(vault, v.Name, v.Version)}
		switch opName {
		case "wrapkey":
			res.Value, err = keyops.WrapKey(rand.Reader, key, b.Alg, b.Value)
		case "unwrapkey":
			res.Value, err = keyops.UnwrapKey(key, b.Alg, b.Value)
		case "encrypt":
			var e *keyops.Encrypted
			if e, err = keyops.Encrypt(rand.Reader, key, b.Alg, b.Value, b.IV, b.AAD); err == nil {
				res.Value, res.IV, res.Tag, res.AAD = e.Value, e.IV, e.Tag, e.AAD
			}
		case "decrypt":
			res.Value, err = keyops.Decrypt(key, b.Alg, b.Value, b.IV, b.AAD, b.Tag)
		case "sign":
			res.Value, err = keyops.Sign(rand.Reader, key, b.Alg, b.Value)
		case "verify":
			if len(b.Digest) == 0 {
				return azure.Errorf(http.StatusBadRequest, azure.CodeBadParameter, "The digest is required.")
			}
			var ok bool
			if ok, err = keyops.Verify(key.Public(), b.Alg, b.Digest, b.Value); err != nil {
				return mapErr(err)
			}
			azure.WriteJSON(w, http.StatusOK, struct {
				Value bool `json:"value"`
			}{ok})
			return nil
		}
		if err != nil {
			return mapErr(err)
		}
		writeOpResult(w, &res)
		return nil
	}
}
