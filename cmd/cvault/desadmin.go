package main

import (
	"github.com/spf13/cobra"
)

// addDESAdmin adds create, list and delete (and the client flags) to cmd
// and returns the scope the flags fill.
func addDESAdmin(cmd *cobra.Command) *computeScope {
	s := newComputeScope(cmd, "diskEncryptionSets")
	cols := []outputColumn{col("NAME", "name"), col("TYPE", "properties.encryptionType"), col("KEY", "properties.activeKey.keyUrl"),
		col("PRINCIPAL", "identity.principalId"), col("STATE", "properties.provisioningState")}
	var location, keyURL, encType, uami, fic string
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a disk encryption set; it proves it can use the key (and, confidential, that the Confidential VM Orchestrator may get and release it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ident := map[string]any{"type": "SystemAssigned"}
			if uami != "" {
				ident = map[string]any{"type": "UserAssigned", "userAssignedIdentities": map[string]any{uami: map[string]any{}}}
			}
			props := map[string]any{"encryptionType": encType, "activeKey": map[string]string{"keyUrl": keyURL}}
			if fic != "" {
				props["federatedClientId"] = fic
			}
			return s.put(cmd, cols, args[0], map[string]any{"location": location, "identity": ident, "properties": props})
		},
	}
	create.Flags().StringVarP(&location, "location", "l", "westeurope", "Azure region (the key's vault must be in it)")
	create.Flags().StringVar(&keyURL, "key-url", "", "versioned key URL https://{vault}/keys/{name}/{version} (required)")
	create.Flags().StringVar(&encType, "encryption-type", "EncryptionAtRestWithCustomerKey",
		"EncryptionAtRestWithCustomerKey, EncryptionAtRestWithPlatformAndCustomerKeys or ConfidentialVmEncryptedWithCustomerKey")
	create.Flags().StringVar(&uami, "user-assigned-identity", "", "user-assigned identity resource ID (default: a system-assigned identity)")
	create.Flags().StringVar(&fic, "federated-client-id", "", "multi-tenant app ID for a key in another tenant")
	_ = create.MarkFlagRequired("key-url")
	cmd.AddCommand(create)
	s.crud(cmd, cols, "disk encryption set", true)
	return s
}
