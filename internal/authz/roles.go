package authz

import (
	"slices"
	"strings"
)

// RoleDefinition is an Azure role: a name and the permissions it grants.
type RoleDefinition struct {
	ID          string // the role definition GUID (constant across tenants for built-ins)
	Name        string // roleName, e.g. "Key Vault Crypto Service Release User"
	Description string
	Permissions []Permission
}

// Permission is one permissions entry of a role definition.
type Permission struct {
	Actions        []string
	NotActions     []string
	DataActions    []string
	NotDataActions []string
}

// Built-in role definition IDs (Azure's, identical in every tenant).
const (
	RoleOwner                             = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
	RoleContributor                       = "b24988ac-6180-42a0-ab88-20f7382dd24c"
	RoleReader                            = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
	RoleUserAccessAdministrator           = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
	RoleKeyVaultAdministrator             = "00482a5a-887f-4fb3-b363-3b7fe8e74483"
	RoleKeyVaultContributor               = "f25e0fa2-a7c8-4377-a976-54943a77a395"
	RoleKeyVaultCryptoOfficer             = "14b46e9e-c2b7-41b4-b07b-48a6ebf60603"
	RoleKeyVaultCryptoUser                = "12338af0-0e69-4776-bea7-57ae8d297424"
	RoleKeyVaultCryptoServiceEncryption   = "e147488a-f6f5-4113-8e2d-b22465e65bf6"
	RoleKeyVaultCryptoServiceRelease      = "08bbd89e-9f13-488c-ac41-acfcb10c90ab"
	RoleKeyVaultReader                    = "21090545-7ca7-4776-b22c-e363652d74d2"
	RoleManagedIdentityContributor        = "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59"
	RoleManagedIdentityOperator           = "f1a07417-d97a-45cb-824c-7a7467783830"
	RoleVirtualMachineContributor         = "9980e02c-c2be-4d73-94e8-173b1dc7cf3c"
	RoleManagedHSMCryptoServiceRelease    = "21dbd100-6940-42c2-9190-5d6cb909625c"
	RoleManagedHSMCryptoServiceEncryption = "33413926-3206-4cdd-b39a-83574fe37a17"
)

// The "read set" several Key Vault roles share.
var kvReadActions = []string{
	"Microsoft.Authorization/*/read",
	"Microsoft.Insights/alertRules/*",
	"Microsoft.Resources/deployments/*",
	"Microsoft.Resources/subscriptions/resourceGroups/read",
	"Microsoft.Support/*",
	"Microsoft.KeyVault/checkNameAvailability/read",
	"Microsoft.KeyVault/deletedVaults/read",
	"Microsoft.KeyVault/locations/*/read",
	"Microsoft.KeyVault/vaults/*/read",
	"Microsoft.KeyVault/operations/read",
}

// builtins are copied from Azure's published definitions. Sources
// (MicrosoftDocs/azure-docs, articles/role-based-access-control/built-in-roles/):
// privileged.md (Owner, Contributor, User Access Administrator), general.md
// (Reader), security.md (Key Vault *), identity.md (Managed Identity *),
// compute.md (Virtual Machine Contributor); Managed HSM local roles from
// articles/key-vault/managed-hsm/built-in-roles.md (see
// shared/wire/identity-rbac-compute.md §4.3). "Disk Encryption Set Reader",
// named in the issue, is not a role we could find in Azure's list, so it
// is left out rather than invented.
func builtins() []RoleDefinition {
	return []RoleDefinition{
		{ID: RoleOwner, Name: "Owner",
			Description: "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.",
			Permissions: []Permission{{Actions: []string{"*"}}}},
		{ID: RoleContributor, Name: "Contributor",
			Description: "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC, manage assignments in Azure Blueprints, or share image galleries.",
			Permissions: []Permission{{Actions: []string{"*"}, NotActions: []string{
				"Microsoft.Authorization/*/Delete",
				"Microsoft.Authorization/*/Write",
				"Microsoft.Authorization/elevateAccess/Action",
				"Microsoft.Blueprint/blueprintAssignments/write",
				"Microsoft.Blueprint/blueprintAssignments/delete",
				"Microsoft.Compute/galleries/share/action",
				"Microsoft.Purview/consents/write",
				"Microsoft.Purview/consents/delete",
			}}}},
		{ID: RoleReader, Name: "Reader",
			Description: "View all resources, but does not allow you to make any changes.",
			Permissions: []Permission{{Actions: []string{"*/read"}}}},
		{ID: RoleUserAccessAdministrator, Name: "User Access Administrator",
			Description: "Lets you manage user access to Azure resources.",
			Permissions: []Permission{{Actions: []string{"*/read", "Microsoft.Authorization/*", "Microsoft.Support/*"}}}},
		{ID: RoleKeyVaultAdministrator, Name: "Key Vault Administrator",
			Description: "Perform all data plane operations on a key vault and all objects in it, including certificates, keys, and secrets. Cannot manage key vault resources or manage role assignments. Only works for key vaults that use the 'Azure role-based access control' permission model.",
			Permissions: []Permission{{Actions: kvReadActions, DataActions: []string{"Microsoft.KeyVault/vaults/*"}}}},
		{ID: RoleKeyVaultContributor, Name: "Key Vault Contributor",
			Description: "Lets you manage key vaults, but not access to them.",
			Permissions: []Permission{{Actions: []string{
				"Microsoft.Authorization/*/read",
				"Microsoft.Insights/alertRules/*",
				"Microsoft.KeyVault/*",
				"Microsoft.Resources/deployments/*",
				"Microsoft.Resources/subscriptions/resourceGroups/read",
				"Microsoft.Support/*",
			}, NotActions: []string{
				"Microsoft.KeyVault/locations/deletedVaults/purge/action",
				"Microsoft.KeyVault/hsmPools/*",
				"Microsoft.KeyVault/managedHsms/*",
			}}}},
		{ID: RoleKeyVaultCryptoOfficer, Name: "Key Vault Crypto Officer",
			Description: "Perform any action on the keys of a key vault, except manage permissions. Only works for key vaults that use the 'Azure role-based access control' permission model.",
			Permissions: []Permission{{Actions: kvReadActions, DataActions: []string{
				"Microsoft.KeyVault/vaults/keys/*",
				"Microsoft.KeyVault/vaults/keyrotationpolicies/*",
			}}}},
		{ID: RoleKeyVaultCryptoUser, Name: "Key Vault Crypto User",
			Description: "Perform cryptographic operations using keys. Only works for key vaults that use the 'Azure role-based access control' permission model.",
			Permissions: []Permission{{DataActions: []string{
				"Microsoft.KeyVault/vaults/keys/read",
				"Microsoft.KeyVault/vaults/keys/update/action",
				"Microsoft.KeyVault/vaults/keys/backup/action",
				"Microsoft.KeyVault/vaults/keys/encrypt/action",
				"Microsoft.KeyVault/vaults/keys/decrypt/action",
				"Microsoft.KeyVault/vaults/keys/wrap/action",
				"Microsoft.KeyVault/vaults/keys/unwrap/action",
				"Microsoft.KeyVault/vaults/keys/sign/action",
				"Microsoft.KeyVault/vaults/keys/verify/action",
			}}}},
		{ID: RoleKeyVaultCryptoServiceEncryption, Name: "Key Vault Crypto Service Encryption User",
			Description: "Read metadata of keys and perform wrap/unwrap operations. Only works for key vaults that use the 'Azure role-based access control' permission model.",
			Permissions: []Permission{{Actions: []string{
				"Microsoft.EventGrid/eventSubscriptions/write",
				"Microsoft.EventGrid/eventSubscriptions/read",
				"Microsoft.EventGrid/eventSubscriptions/delete",
			}, DataActions: []string{
				"Microsoft.KeyVault/vaults/keys/read",
				"Microsoft.KeyVault/vaults/keys/wrap/action",
				"Microsoft.KeyVault/vaults/keys/unwrap/action",
			}}}},
		{ID: RoleKeyVaultCryptoServiceRelease, Name: "Key Vault Crypto Service Release User",
			Description: "Release keys. Only works for key vaults that use the 'Azure role-based access control' permission model.",
			Permissions: []Permission{{DataActions: []string{"Microsoft.KeyVault/vaults/keys/release/action"}}}},
		{ID: RoleKeyVaultReader, Name: "Key Vault Reader",
			Description: "Read metadata of key vaults and its certificates, keys, and secrets. Cannot read sensitive values such as secret contents or key material. Only works for key vaults that use the 'Azure role-based access control' permission model.",
			Permissions: []Permission{{Actions: kvReadActions, DataActions: []string{
				"Microsoft.KeyVault/vaults/*/read",
				"Microsoft.KeyVault/vaults/secrets/readMetadata/action",
			}}}},
		{ID: RoleManagedIdentityContributor, Name: "Managed Identity Contributor",
			Description: "Create, Read, Update, and Delete User Assigned Identity",
			Permissions: []Permission{{Actions: []string{
				"Microsoft.ManagedIdentity/userAssignedIdentities/read",
				"Microsoft.ManagedIdentity/userAssignedIdentities/write",
				"Microsoft.ManagedIdentity/userAssignedIdentities/delete",
				"Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/read",
				"Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write",
				"Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/delete",
				"Microsoft.ManagedIdentity/userAssignedIdentities/revokeTokens/action",
				"Microsoft.Authorization/*/read",
				"Microsoft.Insights/alertRules/*",
				"Microsoft.Resources/subscriptions/resourceGroups/read",
				"Microsoft.Resources/deployments/*",
				"Microsoft.Support/*",
			}}}},
		{ID: RoleManagedIdentityOperator, Name: "Managed Identity Operator",
			Description: "Read and Assign User Assigned Identity",
			Permissions: []Permission{{Actions: []string{
				"Microsoft.ManagedIdentity/userAssignedIdentities/*/read",
				"Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
				"Microsoft.Authorization/*/read",
				"Microsoft.Insights/alertRules/*",
				"Microsoft.Resources/subscriptions/resourceGroups/read",
				"Microsoft.Resources/deployments/*",
				"Microsoft.Support/*",
			}}}},
		{ID: RoleVirtualMachineContributor, Name: "Virtual Machine Contributor",
			Description: "Lets you manage virtual machines, but not access to them, and not the virtual network or storage account they're connected to.",
			Permissions: []Permission{{Actions: []string{
				"Microsoft.Authorization/*/read",
				"Microsoft.Compute/availabilitySets/*",
				"Microsoft.Compute/locations/*",
				"Microsoft.Compute/virtualMachines/*",
				"Microsoft.Compute/virtualMachineScaleSets/*",
				"Microsoft.Compute/disks/write",
				"Microsoft.Compute/disks/read",
				"Microsoft.Compute/disks/delete",
				"Microsoft.DevTestLab/schedules/*",
				"Microsoft.Insights/alertRules/*",
				"Microsoft.Network/applicationGateways/backendAddressPools/join/action",
				"Microsoft.Network/loadBalancers/backendAddressPools/join/action",
				"Microsoft.Network/loadBalancers/inboundNatPools/join/action",
				"Microsoft.Network/loadBalancers/inboundNatRules/join/action",
				"Microsoft.Network/loadBalancers/probes/join/action",
				"Microsoft.Network/loadBalancers/read",
				"Microsoft.Network/locations/*",
				"Microsoft.Network/networkInterfaces/*",
				"Microsoft.Network/networkSecurityGroups/join/action",
				"Microsoft.Network/networkSecurityGroups/read",
				"Microsoft.Network/publicIPAddresses/join/action",
				"Microsoft.Network/publicIPAddresses/read",
				"Microsoft.Network/virtualNetworks/read",
				"Microsoft.Network/virtualNetworks/subnets/join/action",
				"Microsoft.RecoveryServices/locations/*",
				"Microsoft.RecoveryServices/Vaults/backupFabrics/backupProtectionIntent/write",
				"Microsoft.RecoveryServices/Vaults/backupFabrics/protectionContainers/protectedItems/*/read",
				"Microsoft.RecoveryServices/Vaults/backupFabrics/protectionContainers/protectedItems/read",
				"Microsoft.RecoveryServices/Vaults/backupFabrics/protectionContainers/protectedItems/write",
				"Microsoft.RecoveryServices/Vaults/backupPolicies/read",
				"Microsoft.RecoveryServices/Vaults/backupPolicies/write",
				"Microsoft.RecoveryServices/Vaults/read",
				"Microsoft.RecoveryServices/Vaults/usages/read",
				"Microsoft.RecoveryServices/Vaults/write",
				"Microsoft.ResourceHealth/availabilityStatuses/read",
				"Microsoft.Resources/deployments/*",
				"Microsoft.Resources/subscriptions/resourceGroups/read",
				"Microsoft.SqlVirtualMachine/*",
				"Microsoft.Storage/storageAccounts/listKeys/action",
				"Microsoft.Storage/storageAccounts/read",
				"Microsoft.Support/*",
			}}}},
		// Managed HSM local roles (data plane only). Azure assigns these in
		// the HSM's own RBAC; cvault keeps them in the same table so a
		// managed-HSM-shaped vault can be granted release as seed 000 says.
		{ID: RoleManagedHSMCryptoServiceRelease, Name: "Managed HSM Crypto Service Release User",
			Description: "Grants permission to release a key to a trusted execution environment.",
			Permissions: []Permission{{DataActions: []string{"Microsoft.KeyVault/managedHsm/keys/release/action"}}}},
		{ID: RoleManagedHSMCryptoServiceEncryption, Name: "Managed HSM Crypto Service Encryption User",
			Description: "Grants permissions to use a key for service encryption.",
			Permissions: []Permission{{DataActions: []string{
				"Microsoft.KeyVault/managedHsm/keys/read/action",
				"Microsoft.KeyVault/managedHsm/keys/wrap/action",
				"Microsoft.KeyVault/managedHsm/keys/unwrap/action",
			}}}},
	}
}

// compiledRole is a role prepared for Check.
type compiledRole struct {
	def                                RoleDefinition
	actions, notActions, data, notData patterns
}

func compileRole(d RoleDefinition) *compiledRole {
	c := &compiledRole{def: d}
	for _, p := range d.Permissions {
		c.actions = append(c.actions, compileAll(p.Actions)...)
		c.notActions = append(c.notActions, compileAll(p.NotActions)...)
		c.data = append(c.data, compileAll(p.DataActions)...)
		c.notData = append(c.notData, compileAll(p.NotDataActions)...)
	}
	return c
}

// allows reports whether the role grants the lower-cased action a.
// Permissions entries are merged, which is exact for single-entry roles
// (every built-in here has one).
func (c *compiledRole) allows(a string, data bool) bool {
	if data {
		return c.data.match(a) && !c.notData.match(a)
	}
	return c.actions.match(a) && !c.notActions.match(a)
}

// Allows reports whether role d grants action (or data action, by IsDataAction).
func (d RoleDefinition) Allows(action string) bool {
	a := strings.ToLower(action)
	return compileRole(d).allows(a, isDataLower(a))
}

// roleTable indexes the definitions by folded ID and name.
type roleTable struct {
	list   []RoleDefinition
	byID   map[string]*compiledRole
	byName map[string]*compiledRole
}

func newRoleTable(defs []RoleDefinition) *roleTable {
	t := &roleTable{list: defs, byID: map[string]*compiledRole{}, byName: map[string]*compiledRole{}}
	for _, d := range defs {
		c := compileRole(d)
		t.byID[strings.ToLower(d.ID)] = c
		t.byName[strings.ToLower(d.Name)] = c
	}
	return t
}

// Roles returns the built-in role definitions, sorted by name.
func Roles() []RoleDefinition {
	r := builtins()
	slices.SortFunc(r, func(a, b RoleDefinition) int { return strings.Compare(a.Name, b.Name) })
	return r
}
