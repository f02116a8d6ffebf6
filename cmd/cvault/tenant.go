package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cvault/cvault/internal/cli/client"
)

func newTenantCmd() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "tenant",
		Short: "Create and show tenants (Entra directories)",
		Long: `Create and show tenants. A new tenant comes with its administrator, a service principal
with a client secret: the secret is printed once (or saved with --save) and never again.
'list' and 'show' read the directory the credentials belong to, as Graph's /organization does.`,
	}
	addClientFlags(cmd, f)
	cols := []outputColumn{col("ID", "id"), col("NAME", "displayName"), col("CREATED", "createdDateTime")}

	var save string
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a tenant and its administrator (secret printed once)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			var t map[string]any
			if err := c.Graph(cmd.Context(), http.MethodPost, "/tenants", map[string]string{"displayName": args[0]}, &t); err != nil {
				return err
			}
			admin, _ := t["admin"].(map[string]any)
			creds := client.Credentials{}
			creds.TenantID, _ = admin["tenantId"].(string)
			creds.ClientID, _ = admin["clientId"].(string)
			creds.ClientSecret, _ = admin["clientSecret"].(string)
			creds.ObjectID, _ = admin["objectId"].(string)
			creds.Authority, _ = admin["authority"].(string)
			out := cmd.OutOrStdout()
			if save != "" {
				if err := client.WriteCredentials(save, creds); err != nil {
					return err
				}
				admin["clientSecret"] = "saved to " + save
				creds.ClientSecret = ""
			}
			if err := f.print(out, t, append(cols[:2:2], col("ADMIN CLIENT ID", "admin.clientId"), col("ADMIN OBJECT ID", "admin.objectId"))...); err != nil {
				return err
			}
			if save != "" && f.output == "table" {
				fmt.Fprintf(out, "Administrator credentials saved to %s (use --credentials %s)\n", save, save)
			}
			f.printSecret(out, "Administrator client secret", creds.ClientSecret)
			return nil
		},
	}
	create.Flags().StringVar(&save, "save", "", "write the administrator's credentials to this file (0600, admin.json's shape) instead of printing the secret")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the tenants the credentials belong to",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd, cols, func(ctx context.Context, c *client.Client) (any, error) {
				var v map[string]any
				return v, c.Graph(ctx, http.MethodGet, "/organization", nil, &v)
			})
		},
	}
	show := &cobra.Command{
		Use:   "show [ID]",
		Short: "Show the credentials' tenant (or check it is ID)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd, cols, func(ctx context.Context, c *client.Client) (any, error) {
				var v struct {
					Value []map[string]any `json:"value"`
				}
				if err := c.Graph(ctx, http.MethodGet, "/organization", nil, &v); err != nil {
					return nil, err
				}
				for _, t := range v.Value {
					if id, _ := t["id"].(string); len(args) == 0 || strings.EqualFold(id, args[0]) {
						return t, nil
					}
				}
				return nil, fmt.Errorf("tenant %s is not visible to these credentials (sign in as its administrator): %w", args[0], client.ErrNotFound)
			})
		},
	}
	cmd.AddCommand(create, list, show)
	return cmd
}
