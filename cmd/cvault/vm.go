package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"

	"github.com/spf13/cobra"

	"github.com/cvault/cvault/internal/cli/client"
)

// versionCompute is the Compute RP version the CLI speaks.
const versionCompute = "2024-11-01"

// computeScope holds the flags shared by vm, disk and des commands.
type computeScope struct {
	f        *clientFlags
	sub, rg  string
	typ      string // virtualMachines, disks, diskEncryptionSets
	location string
}

func newComputeScope(cmd *cobra.Command, typ string) *computeScope {
	s := &computeScope{f: &clientFlags{}, typ: typ}
	addClientFlags(cmd, s.f)
	cmd.PersistentFlags().StringVar(&s.sub, "subscription", "", "subscription ID (default: the first one visible)")
	cmd.PersistentFlags().StringVarP(&s.rg, "resource-group", "g", "", "resource group (required)")
	return s
}

// path is the resource's (or, with name "", the group's collection's) ARM path.
func (s *computeScope) path(ctx context.Context, c *client.Client, name string) (string, error) {
	if s.rg == "" {
		return "", fmt.Errorf("--resource-group is required")
	}
	sub, err := c.Subscription(ctx, s.sub)
	if err != nil {
		return "", err
	}
	p := "/subscriptions/" + url.PathEscape(sub) + "/resourceGroups/" + url.PathEscape(s.rg) + "/providers/Microsoft.Compute/" + s.typ
	if name != "" {
		p += "/" + url.PathEscape(name)
	}
	return p, nil
}

// put sends the body and shows the resource once its operation finished.
func (s *computeScope) put(cmd *cobra.Command, cols []outputColumn, name string, body any) error {
	return s.f.run(cmd, cols, func(ctx context.Context, c *client.Client) (any, error) {
		p, err := s.path(ctx, c, name)
		if err != nil {
			return nil, err
		}
		if err := c.ARMWait(ctx, http.MethodPut, p, versionCompute, body, nil); err != nil {
			return nil, err
		}
		var v map[string]any
		return v, c.ARM(ctx, http.MethodGet, p, versionCompute, nil, &v)
	})
}

// crud adds show (unless noShow), list and delete.
func (s *computeScope) crud(cmd *cobra.Command, cols []outputColumn, what string, noShow ...bool) {
	show := &cobra.Command{
		Use: "show NAME", Short: "Show a " + what, Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return s.f.run(cmd, cols, func(ctx context.Context, c *client.Client) (any, error) {
				p, err := s.path(ctx, c, args[0])
				if err != nil {
					return nil, err
				}
				var v map[string]any
				return v, c.ARM(ctx, http.MethodGet, p, versionCompute, nil, &v)
			})
		},
	}
	if len(noShow) == 0 || !noShow[0] {
		cmd.AddCommand(show)
	}
	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "List the group's " + what + "s", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return s.f.run(cmd, cols, func(ctx context.Context, c *client.Client) (any, error) {
				p, err := s.path(ctx, c, "")
				if err != nil {
					return nil, err
				}
				var v map[string]any
				return v, c.ARM(ctx, http.MethodGet, p, versionCompute, nil, &v)
			})
		},
	}, &cobra.Command{
		Use: "delete NAME", Short: "Delete a " + what + " and wait for the operation", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return s.f.run(cmd, nil, func(ctx context.Context, c *client.Client) (any, error) {
				p, err := s.path(ctx, c, args[0])
				if err != nil {
					return nil, err
				}
				return nil, c.ARMDelete(ctx, p, versionCompute)
			})
		},
	})
}

// action runs a POST action and waits for its operation.
func (s *computeScope) action(use, short, action string) *cobra.Command {
	return &cobra.Command{
		Use: use + " NAME", Short: short, Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return s.f.run(cmd, nil, func(ctx context.Context, c *client.Client) (any, error) {
				p, err := s.path(ctx, c, args[0])
				if err != nil {
					return nil, err
				}
				return nil, c.ARMWait(ctx, http.MethodPost, p+"/"+action, versionCompute, nil, nil)
			})
		},
	}
}

func newVMCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vm",
		Short: "Manage (confidential) virtual machines",
		Long: `Create, show, list, start, deallocate and delete virtual machines (Microsoft.Compute/virtualMachines),
and issue a VM's managed-identity secret. A confidential VM (--security-type ConfidentialVM, a DCasv5/ECasv5
or DCesv5/ECesv5 size) gets a system-assigned identity; 'vm identity-secret' issues (or rotates) the secret its
guest presents to the managed-identity endpoint (in Azure IMDS does this; here 'cvault guest imds-proxy').`,
	}
	s := newComputeScope(cmd, "virtualMachines")
	cols := []outputColumn{col("NAME", "name"), col("SIZE", "properties.hardwareProfile.vmSize"),
		col("SECURITY", "properties.securityProfile.securityType"), col("PRINCIPAL", "identity.principalId"), col("STATE", "properties.provisioningState")}
	var size, secType, encType, des, location string
	var noIdentity bool
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a VM (running, with its OS disk) and wait for it", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			md := map[string]any{}
			if encType != "" {
				sp := map[string]any{"securityEncryptionType": encType}
				if des != "" {
					sp["diskEncryptionSet"] = map[string]string{"id": des}
				}
				md["securityProfile"] = sp
			} else if des != "" {
				md["diskEncryptionSet"] = map[string]string{"id": des}
			}
			props := map[string]any{
				"hardwareProfile": map[string]string{"vmSize": size},
				"storageProfile":  map[string]any{"osDisk": map[string]any{"createOption": "FromImage", "deleteOption": "Delete", "managedDisk": md}},
			}
			if secType != "" {
				props["securityProfile"] = map[string]any{"securityType": secType, "uefiSettings": map[string]bool{"secureBootEnabled": true, "vTpmEnabled": true}}
			}
			body := map[string]any{"location": location, "properties": props}
			if !noIdentity {
				body["identity"] = map[string]string{"type": "SystemAssigned"}
			}
			return s.put(cmd, cols, args[0], body)
		},
	}
	create.Flags().StringVarP(&location, "location", "l", "westeurope", "Azure region")
	create.Flags().StringVar(&size, "size", "Standard_DC2as_v5", "VM size")
	create.Flags().StringVar(&secType, "security-type", "ConfidentialVM", "securityProfile.securityType (\"\" for none)")
	create.Flags().StringVar(&encType, "security-encryption", "DiskWithVMGuestState", "OS disk securityEncryptionType (DiskWithVMGuestState, VMGuestStateOnly, NonPersistedTPM)")
	create.Flags().StringVar(&des, "des", "", "disk encryption set ID for the OS disk (confidential: ConfidentialVmEncryptedWithCustomerKey)")
	create.Flags().BoolVar(&noIdentity, "no-identity", false, "create no system-assigned identity")
	cmd.AddCommand(create, s.action("start", "Start a VM (unwraps its disks' keys)", "start"),
		s.action("deallocate", "Deallocate a VM", "deallocate"))
	s.crud(cmd, cols, "VM")

	var secretFile string
	secret := &cobra.Command{
		Use:   "identity-secret NAME",
		Short: "Issue or rotate the VM's managed-identity secret (printed once)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := s.f.client()
			if err != nil {
				return err
			}
			p, err := s.path(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			var v map[string]any
			if err := c.ARM(cmd.Context(), http.MethodPost, p+"/identitySecret", versionCompute, nil, &v); err != nil {
				return err
			}
			sec, _ := v["secret"].(string)
			out := cmd.OutOrStdout()
			if secretFile != "" {
				if err := os.WriteFile(secretFile, []byte(sec+"\n"), 0o600); err != nil {
					return fmt.Errorf("--secret-file: %w", err)
				}
				if err := os.Chmod(secretFile, 0o600); err != nil {
					return fmt.Errorf("--secret-file: %w", err)
				}
				fmt.Fprintf(out, "Secret saved to %s (give it to 'cvault guest imds-proxy --secret-file')\n", secretFile)
				return nil
			}
			s.f.printSecret(out, "Managed-identity secret (X-IDENTITY-HEADER)", sec)
			return nil
		},
	}
	secret.Flags().StringVar(&secretFile, "secret-file", "", "write the secret to this file (0600) instead of printing it")
	cmd.AddCommand(secret)
	return cmd
}
