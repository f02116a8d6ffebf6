// Command cvault is a self-hosted, Azure-API-compatible key management plane
// for confidential computing: Entra-style identities and tokens, Azure RBAC,
// Key Vault keys with Secure Key Release, an Azure-Attestation-compatible
// SEV-SNP attestation service, and confidential VMs with customer-managed
// disk encryption. This file wires flags to packages; it holds no logic.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "cvault:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "cvault",
		Short: "Self-hosted, Azure-compatible key management for confidential computing",
		Long: `cvault serves, on one HTTPS listener, what Azure's confidential-VM key management
needs: an Entra-compatible token service, Azure Resource Manager resources, a Key Vault
keys data plane the Azure SDK for Go talks to unchanged, and the pieces built on them.

Start a server with 'cvault serve'; every command's --help lists its flags.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(), newVersionCmd(), newBenchCmd(), newSimCmd(), newGuestCmd())
	root.AddCommand(newTenantCmd(), newGroupCmd(), newAppCmd(), newSPCmd(), newIdentityCmd(), newRoleCmd())
	root.AddCommand(newVaultCmd(), newKeyCmd(), newPolicyCmd(), newDemoCmd())
	root.AddCommand(newVMCmd(), newDiskCmd(), newDESCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print cvault's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "cvault %s\n", version)
			return err
		},
	}
}
