package authz

import (
	"strings"

	"github.com/cvault/cvault/internal/authn"
)

// AccessPolicy is one entry of a vault's accessPolicies (the legacy
// permission model, used when enableRbacAuthorization is false).
type AccessPolicy struct {
	TenantID string `json:"tenantId"`
	ObjectID string `json:"objectId"`
	// ApplicationID, when set, makes a compound identity: the principal
	// ObjectID acting through that application.
	ApplicationID string      `json:"applicationId,omitempty"`
	Permissions   Permissions `json:"permissions"`
}

// Permissions lists an access policy's permissions per collection.
type Permissions struct {
	Keys         []string `json:"keys,omitempty"`
	Secrets      []string `json:"secrets,omitempty"`
	Certificates []string `json:"certificates,omitempty"`
	Storage      []string `json:"storage,omitempty"`
}

// Collections of access-policy permissions.
const (
	Keys         = "keys"
	Secrets      = "secrets"
	Certificates = "certificates"
)

// PolicyPermission names one access-policy permission.
type PolicyPermission struct {
	Collection string // Keys, Secrets or Certificates
	Name       string // e.g. "wrapKey"; compared case-insensitively
}

func (p PolicyPermission) String() string { return p.Collection + "/" + p.Name }

// Key permissions (armkeyvault KeyPermissions; "all" grants every one).
const (
	KeyAll               = "all"
	KeyGet               = "get"
	KeyList              = "list"
	KeyCreate            = "create"
	KeyUpdate            = "update"
	KeyImport            = "import"
	KeyDelete            = "delete"
	KeyRecover           = "recover"
	KeyBackup            = "backup"
	KeyRestore           = "restore"
	KeyWrapKey           = "wrapKey"
	KeyUnwrapKey         = "unwrapKey"
	KeyEncrypt           = "encrypt"
	KeyDecrypt           = "decrypt"
	KeySign              = "sign"
	KeyVerify            = "verify"
	KeyRelease           = "release"
	KeyRotate            = "rotate"
	KeyGetRotationPolicy = "getrotationpolicy"
	KeySetRotationPolicy = "setrotationpolicy"
	KeyPurge             = "purge"
)

// PermissionAction pairs an access-policy permission with the RBAC data
// action that authorizes the same operation.
type PermissionAction struct {
	Permission PolicyPermission
	DataAction string
}

// KeyPermissionActions is the mapping table between key access-policy
// permissions and data actions. Both get and list map to keys/read (RBAC
// does not tell them apart). Source: Azure/KeyVault-AccessPolicyToRBAC-CompareTool
// mapping and MicrosoftDocs/azure-docs role-based-access-control/permissions/security.md.
func KeyPermissionActions() []PermissionAction {
	const k = "Microsoft.KeyVault/vaults/keys/"
	kp := func(name, action string) PermissionAction {
		return PermissionAction{PolicyPermission{Keys, name}, action}
	}
	return []PermissionAction{
		kp(KeyGet, k+"read"),
		kp(KeyList, k+"read"),
		kp(KeyUpdate, k+"update/action"),
		kp(KeyCreate, k+"create/action"),
		kp(KeyImport, k+"import/action"),
		kp(KeyDelete, k+"delete"),
		kp(KeyRecover, k+"recover/action"),
		kp(KeyBackup, k+"backup/action"),
		kp(KeyRestore, k+"restore/action"),
		kp(KeyDecrypt, k+"decrypt/action"),
		kp(KeyEncrypt, k+"encrypt/action"),
		kp(KeyUnwrapKey, k+"unwrap/action"),
		kp(KeyWrapKey, k+"wrap/action"),
		kp(KeyVerify, k+"verify/action"),
		kp(KeySign, k+"sign/action"),
		kp(KeyPurge, k+"purge/action"),
		kp(KeyRelease, k+"release/action"),
		kp(KeyRotate, k+"rotate/action"),
		kp(KeyGetRotationPolicy, "Microsoft.KeyVault/vaults/keyrotationpolicies/read"),
		kp(KeySetRotationPolicy, "Microsoft.KeyVault/vaults/keyrotationpolicies/write"),
	}
}

// DataActionFor returns the data action of a key permission ("" if unknown).
func DataActionFor(perm PolicyPermission) string {
	for _, pa := range KeyPermissionActions() {
		if strings.EqualFold(pa.Permission.Collection, perm.Collection) && strings.EqualFold(pa.Permission.Name, perm.Name) {
			return pa.DataAction
		}
	}
	return ""
}

// CheckAccessPolicy reports whether one of a vault's access policies
// grants p the permission: the entry must name p's tenant and object id
// (and, for a compound identity, p's application id), and list the
// permission or "all". Denials are *DeniedError with ByPolicy set.
func CheckAccessPolicy(policies []AccessPolicy, p *authn.Principal, perm PolicyPermission) error {
	deny := &DeniedError{Action: perm.String(), ByPolicy: true}
	if p == nil {
		return deny
	}
	deny.ObjectID = p.ObjectID
	for _, ap := range policies {
		if !strings.EqualFold(ap.TenantID, p.TenantID) || !strings.EqualFold(ap.ObjectID, p.ObjectID) {
			continue
		}
		if ap.ApplicationID != "" && !strings.EqualFold(ap.ApplicationID, p.AppID) {
			continue
		}
		var list []string
		switch strings.ToLower(perm.Collection) {
		case Keys:
			list = ap.Permissions.Keys
		case Secrets:
			list = ap.Permissions.Secrets
		case Certificates:
			list = ap.Permissions.Certificates
		}
		for _, g := range list {
			if strings.EqualFold(g, perm.Name) || strings.EqualFold(g, KeyAll) {
				return nil
			}
		}
	}
	return deny
}
