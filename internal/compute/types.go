package compute

import (
	"encoding/json"
	"time"
)

// Resource types.
const (
	TypeDES  = "Microsoft.Compute/diskEncryptionSets"
	TypeDisk = "Microsoft.Compute/disks"
	TypeVM   = "Microsoft.Compute/virtualMachines"
)

// DES encryption types (DiskEncryptionSetType; note "ConfidentialVm…").
const (
	EncryptionAtRestWithCustomerKey             = "EncryptionAtRestWithCustomerKey"
	EncryptionAtRestWithPlatformAndCustomerKeys = "EncryptionAtRestWithPlatformAndCustomerKeys"
	ConfidentialVMEncryptedWithCustomerKey      = "ConfidentialVmEncryptedWithCustomerKey"
	// EncryptionAtRestWithPlatformKey is a disk-only encryption type.
	EncryptionAtRestWithPlatformKey = "EncryptionAtRestWithPlatformKey"
)

// Disk security types (DiskSecurityTypes).
const (
	SecurityTrustedLaunch                  = "TrustedLaunch"
	SecurityCVMGuestStateOnlyPlatformKey   = "ConfidentialVM_VMGuestStateOnlyEncryptedWithPlatformKey"
	SecurityCVMDiskPlatformKey             = "ConfidentialVM_DiskEncryptedWithPlatformKey"
	SecurityCVMDiskCustomerKey             = "ConfidentialVM_DiskEncryptedWithCustomerKey"
	SecurityCVMNonPersistedTPM             = "ConfidentialVM_NonPersistedTPM"
	securityEncryptionDiskWithVMGuestState = "DiskWithVMGuestState"
	securityEncryptionVMGuestStateOnly     = "VMGuestStateOnly"
	securityEncryptionNonPersistedTPM      = "NonPersistedTPM"
)

// Provisioning states.
const (
	StateSucceeded = "Succeeded"
	StateUpdating  = "Updating"
	StateCreating  = "Creating"
)

// Disk states.
const (
	DiskUnattached    = "Unattached"
	DiskAttached      = "Attached"
	DiskActiveSAS     = "ActiveSAS"
	DiskReadyToUpload = "ReadyToUpload"
	DiskActiveUpload  = "ActiveUpload"
)

// Power states (instance view PowerState/…).
const (
	PowerRunning     = "running"
	PowerStopped     = "stopped"
	PowerDeallocated = "deallocated"
)

// SubResource references another resource.
type SubResource struct {
	ID string `json:"id"`
}

// ResourceIdentity is a resource's managed identity block.
type ResourceIdentity struct {
	Type                   string                   `json:"type"`
	PrincipalID            string                   `json:"principalId,omitempty"`
	TenantID               string                   `json:"tenantId,omitempty"`
	UserAssignedIdentities map[string]*UserIdentity `json:"userAssignedIdentities,omitempty"`
}

// UserIdentity is one user-assigned identity of a resource (read-only values).
type UserIdentity struct {
	PrincipalID string `json:"principalId,omitempty"`
	ClientID    string `json:"clientId,omitempty"`
}

// KeyForDES is a DES's key.
type KeyForDES struct {
	KeyURL      string       `json:"keyUrl"`
	SourceVault *SubResource `json:"sourceVault,omitempty"`
}

// DiskEncryptionSet is the ARM resource, as stored and as served.
type DiskEncryptionSet struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Location   string            `json:"location"`
	Tags       map[string]string `json:"tags,omitempty"`
	Identity   *ResourceIdentity `json:"identity,omitempty"`
	Properties DESProperties     `json:"properties"`
}

// DESProperties are a DES's properties.
type DESProperties struct {
	EncryptionType                    string      `json:"encryptionType,omitempty"`
	ActiveKey                         *KeyForDES  `json:"activeKey,omitempty"`
	PreviousKeys                      []KeyForDES `json:"previousKeys"`
	RotationToLatestKeyVersionEnabled *bool       `json:"rotationToLatestKeyVersionEnabled,omitempty"`
	LastKeyRotationTimestamp          *time.Time  `json:"lastKeyRotationTimestamp,omitempty"`
	FederatedClientID                 string      `json:"federatedClientId,omitempty"`
	ProvisioningState                 string      `json:"provisioningState,omitempty"`
	// AutoKeyRotationError is why the last automatic rotation to the
	// latest key version failed (read-only, as Azure reports it); while it
	// is set no automatic rotation is attempted, until the owner saves the
	// set again or a rotation completes.
	AutoKeyRotationError *OpError `json:"autoKeyRotationError,omitempty"`
	// KeyRotation is cvault's read-only view of the last key rotation
	// (Azure shows none): while it runs and after a partial one, which key
	// it moves to and how many disks are still on previous keys. SDK
	// clients ignore it.
	KeyRotation *KeyRotation `json:"keyRotation,omitempty"`
}

// Key rotation states.
const (
	RotationInProgress = "InProgress"
	RotationFailed     = "Failed"
	RotationSucceeded  = "Succeeded"
)

// KeyRotation is the state of a DES's key rotation (see rotate.go).
type KeyRotation struct {
	State       string    `json:"state"`
	TargetKey   KeyForDES `json:"targetKey"`
	OperationID string    `json:"operationId,omitempty"`
	DisksTotal  int       `json:"disksTotal"`
	// DisksRotated are the disks wrapped by the target key.
	DisksRotated int `json:"disksRotated"`
	// DisksOnPreviousKeys names (up to 20) disks still on an older key.
	DisksOnPreviousKeys []string   `json:"disksOnPreviousKeys,omitempty"`
	Error               *OpError   `json:"error,omitempty"`
	StartTime           time.Time  `json:"startTime"`
	EndTime             *time.Time `json:"endTime,omitempty"`
}

// OpError is a failed rotation's error.
type OpError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// DESUpdate is a PATCH body (DiskEncryptionSetUpdate).
type DESUpdate struct {
	Tags       map[string]string `json:"tags,omitempty"`
	Identity   *ResourceIdentity `json:"identity,omitempty"`
	Properties *struct {
		EncryptionType                    *string    `json:"encryptionType,omitempty"`
		ActiveKey                         *KeyForDES `json:"activeKey,omitempty"`
		RotationToLatestKeyVersionEnabled *bool      `json:"rotationToLatestKeyVersionEnabled,omitempty"`
		FederatedClientID                 *string    `json:"federatedClientId,omitempty"`
	} `json:"properties,omitempty"`
}

// DiskSKU is a disk's storage type.
type DiskSKU struct {
	Name string `json:"name"`
	Tier string `json:"tier,omitempty"`
}

// Disk is the ARM managed-disk resource.
type Disk struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Location   string            `json:"location"`
	Tags       map[string]string `json:"tags,omitempty"`
	ManagedBy  string            `json:"managedBy,omitempty"`
	SKU        *DiskSKU          `json:"sku,omitempty"`
	Zones      []string          `json:"zones,omitempty"`
	Properties DiskProperties    `json:"properties"`
}

// DiskProperties are a disk's properties.
type DiskProperties struct {
	OSType            string               `json:"osType,omitempty"`
	HyperVGeneration  string               `json:"hyperVGeneration,omitempty"`
	CreationData      CreationData         `json:"creationData"`
	DiskSizeGB        *int32               `json:"diskSizeGB,omitempty"`
	DiskSizeBytes     int64                `json:"diskSizeBytes,omitempty"`
	UniqueID          string               `json:"uniqueId,omitempty"`
	Encryption        *Encryption          `json:"encryption,omitempty"`
	SecurityProfile   *DiskSecurityProfile `json:"securityProfile,omitempty"`
	ProvisioningState string               `json:"provisioningState,omitempty"`
	DiskState         string               `json:"diskState,omitempty"`
	TimeCreated       *time.Time           `json:"timeCreated,omitempty"`
}

// CreationData says how a disk was made.
type CreationData struct {
	CreateOption    string          `json:"createOption"`
	ImageReference  json.RawMessage `json:"imageReference,omitempty"`
	UploadSizeBytes int64           `json:"uploadSizeBytes,omitempty"`
}

// Encryption is a disk's at-rest encryption.
type Encryption struct {
	Type                string `json:"type,omitempty"`
	DiskEncryptionSetID string `json:"diskEncryptionSetId,omitempty"`
}

// DiskSecurityProfile is a disk's confidential-VM security.
type DiskSecurityProfile struct {
	SecurityType                string `json:"securityType,omitempty"`
	SecureVMDiskEncryptionSetID string `json:"secureVMDiskEncryptionSetId,omitempty"`
}

// DiskUpdate is a disk PATCH body.
type DiskUpdate struct {
	Tags       map[string]string `json:"tags,omitempty"`
	Properties *struct {
		DiskSizeGB *int32      `json:"diskSizeGB,omitempty"`
		Encryption *Encryption `json:"encryption,omitempty"`
	} `json:"properties,omitempty"`
}

// VirtualMachine is the ARM VM resource.
type VirtualMachine struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Location   string            `json:"location"`
	Tags       map[string]string `json:"tags,omitempty"`
	Identity   *ResourceIdentity `json:"identity,omitempty"`
	Zones      []string          `json:"zones,omitempty"`
	Properties VMProperties      `json:"properties"`
}

// VMProperties are a VM's properties.
type VMProperties struct {
	HardwareProfile    *HardwareProfile   `json:"hardwareProfile,omitempty"`
	SecurityProfile    *VMSecurityProfile `json:"securityProfile,omitempty"`
	StorageProfile     *StorageProfile    `json:"storageProfile,omitempty"`
	OSProfile          json.RawMessage    `json:"osProfile,omitempty"`
	NetworkProfile     json.RawMessage    `json:"networkProfile,omitempty"`
	DiagnosticsProfile json.RawMessage    `json:"diagnosticsProfile,omitempty"`
	VMID               string             `json:"vmId,omitempty"`
	ProvisioningState  string             `json:"provisioningState,omitempty"`
	TimeCreated        *time.Time         `json:"timeCreated,omitempty"`
	InstanceView       *InstanceView      `json:"instanceView,omitempty"`
}

// HardwareProfile holds the VM size.
type HardwareProfile struct {
	VMSize string `json:"vmSize,omitempty"`
}

// VMSecurityProfile is a VM's security settings.
type VMSecurityProfile struct {
	SecurityType     string        `json:"securityType,omitempty"`
	UefiSettings     *UefiSettings `json:"uefiSettings,omitempty"`
	EncryptionAtHost *bool         `json:"encryptionAtHost,omitempty"`
}

// UefiSettings are secure boot and vTPM.
type UefiSettings struct {
	SecureBootEnabled *bool `json:"secureBootEnabled,omitempty"`
	VTpmEnabled       *bool `json:"vTpmEnabled,omitempty"`
}

// StorageProfile lists a VM's disks.
type StorageProfile struct {
	ImageReference json.RawMessage `json:"imageReference,omitempty"`
	OSDisk         *OSDisk         `json:"osDisk,omitempty"`
	DataDisks      []DataDisk      `json:"dataDisks"`
}

// OSDisk is a VM's OS disk.
type OSDisk struct {
	OSType           string             `json:"osType,omitempty"`
	Name             string             `json:"name,omitempty"`
	CreateOption     string             `json:"createOption"`
	Caching          string             `json:"caching,omitempty"`
	DiskSizeGB       *int32             `json:"diskSizeGB,omitempty"`
	DeleteOption     string             `json:"deleteOption,omitempty"`
	DiffDiskSettings *DiffDiskSettings  `json:"diffDiskSettings,omitempty"`
	ManagedDisk      *ManagedDiskParams `json:"managedDisk,omitempty"`
}

// DiffDiskSettings selects an ephemeral OS disk.
type DiffDiskSettings struct {
	Option    string `json:"option,omitempty"`
	Placement string `json:"placement,omitempty"`
}

// DataDisk is a VM's data disk.
type DataDisk struct {
	Lun          int32              `json:"lun"`
	Name         string             `json:"name,omitempty"`
	CreateOption string             `json:"createOption"`
	Caching      string             `json:"caching,omitempty"`
	DiskSizeGB   *int32             `json:"diskSizeGB,omitempty"`
	DeleteOption string             `json:"deleteOption,omitempty"`
	ManagedDisk  *ManagedDiskParams `json:"managedDisk,omitempty"`
}

// ManagedDiskParams references or describes a VM's managed disk.
type ManagedDiskParams struct {
	ID                 string                 `json:"id,omitempty"`
	StorageAccountType string                 `json:"storageAccountType,omitempty"`
	DiskEncryptionSet  *SubResource           `json:"diskEncryptionSet,omitempty"`
	SecurityProfile    *VMDiskSecurityProfile `json:"securityProfile,omitempty"`
}

// VMDiskSecurityProfile is the confidential encryption of a VM's OS disk.
type VMDiskSecurityProfile struct {
	SecurityEncryptionType string       `json:"securityEncryptionType,omitempty"`
	DiskEncryptionSet      *SubResource `json:"diskEncryptionSet,omitempty"`
}

// InstanceView is a VM's runtime status.
type InstanceView struct {
	Statuses []InstanceViewStatus `json:"statuses"`
	Disks    []DiskInstanceView   `json:"disks,omitempty"`
}

// InstanceViewStatus is one status line.
type InstanceViewStatus struct {
	Code          string     `json:"code"`
	Level         string     `json:"level"`
	DisplayStatus string     `json:"displayStatus"`
	Time          *time.Time `json:"time,omitempty"`
}

// DiskInstanceView is a disk's status in the VM's view.
type DiskInstanceView struct {
	Name     string               `json:"name"`
	Statuses []InstanceViewStatus `json:"statuses"`
}

// vmRecord is a stored VM: the resource and its power state.
type vmRecord struct {
	VM         VirtualMachine `json:"vm"`
	PowerState string         `json:"powerState"`
	// Disks are the managed disks (lower-case IDs) the VM holds.
	Disks []string `json:"disks"`
	// Implicit are disks the VM created and deletes with it.
	Implicit []string `json:"implicit,omitempty"`
}
