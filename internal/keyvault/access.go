package keyvault

import (
	"slices"
	"strings"
)

// Operation is one data-plane key operation with the two names that
// authorize it: the RBAC data action (checked at {vaultID}/keys/{name})
// and the access-policy key permission.
type Operation struct {
	DataAction string
	Permission string
}

// Key operations of the data plane. Data actions are Azure's
// (Microsoft.KeyVault resource-provider operations; rotation policies are
// their own resource type, keyrotationpolicies, which the Crypto Officer
// role grants with keyrotationpolicies/*); permissions are the
// access-policy key permission enum (wire identity-rbac-compute §4.4).
var (
	OpGet               = Operation{"Microsoft.KeyVault/vaults/keys/read", "get"}
	OpList              = Operation{"Microsoft.KeyVault/vaults/keys/read", "list"}
	OpCreate            = Operation{"Microsoft.KeyVault/vaults/keys/create/action", "create"}
	OpImport            = Operation{"Microsoft.KeyVault/vaults/keys/import/action", "import"}
	OpUpdate            = Operation{"Microsoft.KeyVault/vaults/keys/update/action", "update"}
	OpDelete            = Operation{"Microsoft.KeyVault/vaults/keys/delete", "delete"}
	OpGetDeleted        = Operation{"Microsoft.KeyVault/vaults/keys/read", "get"}
	OpListDeleted       = Operation{"Microsoft.KeyVault/vaults/keys/read", "list"}
	OpRecover           = Operation{"Microsoft.KeyVault/vaults/keys/recover/action", "recover"}
	OpPurge             = Operation{"Microsoft.KeyVault/vaults/keys/purge/action", "purge"}
	OpRotate            = Operation{"Microsoft.KeyVault/vaults/keys/rotate/action", "rotate"}
	OpGetRotationPolicy = Operation{"Microsoft.KeyVault/vaults/keyrotationpolicies/read", "getrotationpolicy"}
	OpSetRotationPolicy = Operation{"Microsoft.KeyVault/vaults/keyrotationpolicies/write", "setrotationpolicy"}
	OpWrapKey           = Operation{"Microsoft.KeyVault/vaults/keys/wrap/action", "wrapKey"}
	OpUnwrapKey         = Operation{"Microsoft.KeyVault/vaults/keys/unwrap/action", "unwrapKey"}
	OpEncrypt           = Operation{"Microsoft.KeyVault/vaults/keys/encrypt/action", "encrypt"}
	OpDecrypt           = Operation{"Microsoft.KeyVault/vaults/keys/decrypt/action", "decrypt"}
	OpSign              = Operation{"Microsoft.KeyVault/vaults/keys/sign/action", "sign"}
	OpVerify            = Operation{"Microsoft.KeyVault/vaults/keys/verify/action", "verify"}
	OpRelease           = Operation{"Microsoft.KeyVault/vaults/keys/release/action", "release"}
	OpBackup            = Operation{"Microsoft.KeyVault/vaults/keys/backup/action", "backup"}
	OpRestore           = Operation{"Microsoft.KeyVault/vaults/keys/restore/action", "restore"}
)

var keyPermissions = []string{"all", "backup", "create", "decrypt", "delete", "encrypt", "get", "getrotationpolicy",
	"import", "list", "purge", "recover", "release", "restore", "rotate", "setrotationpolicy", "sign", "unwrapKey",
	"update", "verify", "wrapKey"}

func validKeyPermission(p string) bool {
	return slices.ContainsFunc(keyPermissions, func(k string) bool { return strings.EqualFold(k, p) })
}
