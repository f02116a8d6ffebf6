package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/spf13/cobra"
)

func newKeyCmd() *cobra.Command {
	c := &conn{}
	var domain string
	cmd := &cobra.Command{Use: "key", Short: "Manage keys of a vault over the Key Vault data plane (as azkeys does)"}
	c.flags(cmd)
	cmd.PersistentFlags().StringVar(&domain, "vault-domain", "vault.localhost", "parent domain of vault hosts")
	client := func(vault string) (*azkeys.Client, error) {
		cred, opts, err := c.credential()
		if err != nil {
			return nil, err
		}
		u, err := url.Parse(c.url)
		if err != nil {
			return nil, fmt.Errorf("--url: %w", err)
		}
		vu := "https://" + strings.ToLower(vault) + "." + domain
		if p := u.Port(); p != "" && p != "443" {
			vu += ":" + p
		}
		return azkeys.NewClient(vu, cred, &azkeys.ClientOptions{ClientOptions: opts})
	}
	var kty, crv, policyFile string
	var size int32
	var ops []string
	var exportable, cvmDefault bool
	create := &cobra.Command{
		Use: "create VAULT NAME", Short: "Create a key (or a new version)", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kc, err := client(args[0])
			if err != nil {
				return err
			}
			p := azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyType(kty))}
			if size != 0 {
				p.KeySize = to.Ptr(size)
			}
			if crv != "" {
				p.Curve = to.Ptr(azkeys.CurveName(crv))
			}
			for _, op := range ops {
				p.KeyOps = append(p.KeyOps, to.Ptr(azkeys.KeyOperation(op)))
			}
			pol, err := releasePolicyFlag(policyFile, cvmDefault, c.url)
			if err != nil {
				return err
			}
			if pol != nil {
				exportable = true
				p.ReleasePolicy = &azkeys.KeyReleasePolicy{EncodedPolicy: pol, Immutable: to.Ptr(false)}
			}
			if exportable {
				p.KeyAttributes = &azkeys.KeyAttributes{Exportable: to.Ptr(true)}
			}
			res, err := kc.CreateKey(cmd.Context(), args[1], p, nil)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), res.KeyBundle)
		},
	}
	f := create.Flags()
	f.StringVar(&kty, "kty", "RSA-HSM", "RSA, RSA-HSM, EC, EC-HSM or oct-HSM")
	f.Int32Var(&size, "size", 0, "key size in bits (RSA 2048/3072/4096, oct 128/192/256)")
	f.StringVar(&crv, "crv", "", "EC curve (P-256, P-384, P-521)")
	f.StringSliceVar(&ops, "ops", nil, "permitted operations (default: the type's)")
	f.BoolVar(&exportable, "exportable", false, "exportable key (needs a release policy; implied by --policy/--cvm-default-policy)")
	f.StringVar(&policyFile, "policy", "", "release policy JSON file (Secure Key Release)")
	f.BoolVar(&cvmDefault, "cvm-default-policy", false, "release policy: Azure's default confidential-VM policy with this server's default attestation instance as authority")
	var version string
	show := &cobra.Command{
		Use: "show VAULT NAME", Short: "Show a key's public part and attributes", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kc, err := client(args[0])
			if err != nil {
				return err
			}
			res, err := kc.GetKey(cmd.Context(), args[1], version, nil)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), res.KeyBundle)
		},
	}
	show.Flags().StringVar(&version, "version", "", "key version (default: the current one)")
	list := &cobra.Command{
		Use: "list VAULT", Short: "List a vault's keys", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kc, err := client(args[0])
			if err != nil {
				return err
			}
			p := kc.NewListKeyPropertiesPager(nil)
			for p.More() {
				page, err := p.NextPage(cmd.Context())
				if err != nil {
					return err
				}
				for _, k := range page.Value {
					fmt.Fprintf(cmd.OutOrStdout(), "%-32s enabled=%v\n", k.KID.Name(), *k.Attributes.Enabled)
				}
			}
			return nil
		},
	}
	rotate := &cobra.Command{
		Use: "rotate VAULT NAME", Short: "Create a new version of a key", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kc, err := client(args[0])
			if err != nil {
				return err
			}
			res, err := kc.RotateKey(cmd.Context(), args[1], nil)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), res.KeyBundle)
		},
	}
	del := &cobra.Command{
		Use: "delete VAULT NAME", Short: "Soft-delete a key", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kc, err := client(args[0])
			if err != nil {
				return err
			}
			_, err = kc.DeleteKey(cmd.Context(), args[1], nil)
			return err
		},
	}
	setEnabled := func(on bool) func(cmd *cobra.Command, args []string) error {
		return func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			kc, err := client(args[0])
			if err != nil {
				return err
			}
			got, err := kc.GetKey(ctx, args[1], version, nil)
			if err != nil {
				return err
			}
			if got.Key == nil || got.Key.KID == nil {
				return fmt.Errorf("key %s: the vault returned no key id", args[1])
			}
			if !on {
				warnDESUse(cmd, c, string(*got.Key.KID))
			}
			kv := got.Key.KID.Version()
			res, err := kc.UpdateKey(ctx, args[1], kv, azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Enabled: to.Ptr(on)}}, nil)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), res.KeyBundle)
		}
	}
	disable := &cobra.Command{
		Use:   "disable VAULT NAME",
		Short: "Disable a key version (the owner's kill switch); warns when a disk encryption set still refers to it",
		Long: `Disable a key version (default: the current one). The vault never refuses its owner:
disks whose data key that version wraps stop starting and reading (at once for VM
starts, within the server's --dek-cache-ttl for reads) until it is enabled again.
Before disabling, the disk encryption sets the caller can read (in --subscription,
else in all its subscriptions) are checked, and each one whose active key, previous
keys or rotation target is that version is named in a warning. Sets in tenants the
caller cannot read (a cross-tenant provider's) are not seen.`,
		Args: cobra.ExactArgs(2), RunE: setEnabled(false),
	}
	enable := &cobra.Command{Use: "enable VAULT NAME", Short: "Enable a key version again", Args: cobra.ExactArgs(2), RunE: setEnabled(true)}
	for _, v := range []*cobra.Command{disable, enable} {
		v.Flags().StringVar(&version, "version", "", "key version (default: the current one)")
	}
	cmd.AddCommand(create, show, list, rotate, del, disable, enable)
	return cmd
}

// warnDESUse prints a warning per disk encryption set that refers to kid.
// It never blocks the disable: a failed check is itself a warning.
func warnDESUse(cmd *cobra.Command, c *conn, kid string) {
	w := cmd.ErrOrStderr()
	cred, opts, err := c.credential()
	if err != nil {
		fmt.Fprintf(w, "warning: could not check disk encryption sets for %s: %v\n", kid, err)
		return
	}
	hc, ok := opts.Transport.(*http.Client)
	if !ok {
		hc = http.DefaultClient
	}
	var subs []string
	if c.subscription != "" {
		subs = []string{c.subscription}
	}
	uses, err := desesUsingKey(cmd.Context(), hc, cred, c.url, subs, kid)
	if err != nil {
		fmt.Fprintf(w, "warning: could not check disk encryption sets for %s: %v\n", kid, err)
		return
	}
	for _, u := range uses {
		fmt.Fprintf(w, "warning: disk encryption set %s still refers to %s (%s): its disks on this version will not start or read until it is enabled again\n", u.ID, kid, u.How)
	}
}
