package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"
	"github.com/spf13/cobra"

	"github.com/cvault/cvault/internal/app"
	"github.com/cvault/cvault/internal/identity"
)

// conn is how admin verbs reach a server: its URL, the CA to trust and the
// client credentials to sign in with (default: the data dir's admin.json).
type conn struct {
	url, caFile, dataDir        string
	tenant, clientID, secret    string
	subscription, resourceGroup string

	cred     azcore.TokenCredential // built once: a second build would misread the loaded admin.json
	credOpts azcore.ClientOptions
}

func (c *conn) flags(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&c.url, "server", "https://localhost:8443", "cvault base URL")
	f.StringVar(&c.caFile, "ca", "", "CA certificate to trust (default $SSL_CERT_FILE, else the system roots)")
	f.StringVar(&c.dataDir, "data", "cvault-data", "data dir whose admin.json holds the credentials (when --client-id is not given)")
	f.StringVar(&c.tenant, "tenant", os.Getenv("AZURE_TENANT_ID"), "tenant id")
	f.StringVar(&c.clientID, "client-id", os.Getenv("AZURE_CLIENT_ID"), "client (application) id")
	f.StringVar(&c.subscription, "subscription", os.Getenv("AZURE_SUBSCRIPTION_ID"), "subscription id")
	f.StringVarP(&c.resourceGroup, "resource-group", "g", "", "resource group")
}

func (c *conn) options() (azcore.ClientOptions, error) {
	hc, err := caClient(c.caFile)
	if err != nil {
		return azcore.ClientOptions{}, err
	}
	base := strings.TrimRight(c.url, "/")
	return azcore.ClientOptions{Transport: hc, Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: base + "/",
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{cloud.ResourceManager: {Audience: base, Endpoint: base}}}}, nil
}

func (c *conn) credential() (azcore.TokenCredential, azcore.ClientOptions, error) {
	if c.cred != nil {
		return c.cred, c.credOpts, nil
	}
	opts, err := c.options()
	if err != nil {
		return nil, opts, err
	}
	if c.clientID != "" {
		// Secrets come from the environment, never from the command line.
		if c.secret = os.Getenv("CVAULT_CLIENT_SECRET"); c.secret == "" {
			c.secret = os.Getenv("AZURE_CLIENT_SECRET")
		}
		if c.secret == "" {
			return nil, opts, fmt.Errorf("credentials: --client-id needs the secret in CVAULT_CLIENT_SECRET")
		}
	} else {
		b, err := os.ReadFile(filepath.Join(c.dataDir, app.AdminFile))
		if err != nil {
			return nil, opts, fmt.Errorf("credentials: give --tenant/--client-id (secret in CVAULT_CLIENT_SECRET) or --data with an admin.json: %w", err)
		}
		var a identity.AdminCredentials
		if err := json.Unmarshal(b, &a); err != nil {
			return nil, opts, fmt.Errorf("credentials: %w", err)
		}
		c.tenant, c.clientID, c.secret = a.TenantID, a.ClientID, a.ClientSecret
	}
	cred, err := azidentity.NewClientSecretCredential(c.tenant, c.clientID, c.secret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
	if err != nil {
		return nil, opts, err
	}
	c.cred, c.credOpts = cred, opts
	return cred, opts, nil
}

func (c *conn) vaults() (*armkeyvault.VaultsClient, error) {
	cred, opts, err := c.credential()
	if err != nil {
		return nil, err
	}
	if c.subscription == "" {
		return nil, fmt.Errorf("--subscription is required")
	}
	return armkeyvault.NewVaultsClient(c.subscription, cred, &arm.ClientOptions{ClientOptions: opts, DisableRPRegistration: true})
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newVaultCmd() *cobra.Command {
	c := &conn{}
	cmd := &cobra.Command{Use: "vault", Short: "Manage key vaults (Microsoft.KeyVault/vaults) over the ARM API"}
	c.flags(cmd)
	var (
		location, sku         string
		rbac, purgeProtection bool
		retention             int32
	)
	create := &cobra.Command{
		Use: "create NAME", Short: "Create or update a vault", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			vc, err := c.vaults()
			if err != nil {
				return err
			}
			p, err := vc.BeginCreateOrUpdate(cmd.Context(), c.resourceGroup, args[0], armkeyvault.VaultCreateOrUpdateParameters{
				Location: to.Ptr(location),
				Properties: &armkeyvault.VaultProperties{TenantID: to.Ptr(c.tenant),
					SKU:                       &armkeyvault.SKU{Family: to.Ptr(armkeyvault.SKUFamilyA), Name: to.Ptr(armkeyvault.SKUName(sku))},
					EnableRbacAuthorization:   to.Ptr(rbac),
					EnablePurgeProtection:     to.Ptr(purgeProtection),
					SoftDeleteRetentionInDays: to.Ptr(retention),
				}}, nil)
			if err != nil {
				return err
			}
			res, err := p.PollUntilDone(cmd.Context(), nil)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), res.Vault)
		},
	}
	f := create.Flags()
	f.StringVarP(&location, "location", "l", "westeurope", "region")
	f.StringVar(&sku, "sku", "premium", "standard | premium (HSM key types and exportable keys need premium)")
	f.BoolVar(&rbac, "enable-rbac-authorization", true, "authorize data-plane calls with Azure RBAC (else access policies)")
	f.BoolVar(&purgeProtection, "enable-purge-protection", false, "refuse purges until the retention period ends (irreversible)")
	f.Int32Var(&retention, "retention-days", 90, "soft-delete retention, 7-90 days")
	show := &cobra.Command{
		Use: "show NAME", Short: "Show a vault", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			vc, err := c.vaults()
			if err != nil {
				return err
			}
			res, err := vc.Get(cmd.Context(), c.resourceGroup, args[0], nil)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), res.Vault)
		},
	}
	list := &cobra.Command{
		Use: "list", Short: "List vaults (of --resource-group, else of the subscription)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			vc, err := c.vaults()
			if err != nil {
				return err
			}
			var out []*armkeyvault.Vault
			if c.resourceGroup != "" {
				p := vc.NewListByResourceGroupPager(c.resourceGroup, nil)
				for p.More() {
					page, err := p.NextPage(cmd.Context())
					if err != nil {
						return err
					}
					out = append(out, page.Value...)
				}
			} else {
				p := vc.NewListBySubscriptionPager(nil)
				for p.More() {
					page, err := p.NextPage(cmd.Context())
					if err != nil {
						return err
					}
					out = append(out, page.Value...)
				}
			}
			w := cmd.OutOrStdout()
			for _, v := range out {
				fmt.Fprintf(w, "%-24s %-14s %-8s %s\n", *v.Name, *v.Location, *v.Properties.SKU.Name, *v.Properties.VaultURI)
			}
			return nil
		},
	}
	del := &cobra.Command{
		Use: "delete NAME", Short: "Soft-delete a vault", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			vc, err := c.vaults()
			if err != nil {
				return err
			}
			_, err = vc.Delete(cmd.Context(), c.resourceGroup, args[0], nil)
			return err
		},
	}
	cmd.AddCommand(create, show, list, del)
	return cmd
}
