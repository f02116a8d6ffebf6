package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/cvault/cvault/internal/cli/client"
)

var (
	appCols = []outputColumn{col("APP ID", "appId"), col("OBJECT ID", "id"), col("NAME", "displayName"), col("AUDIENCE", "signInAudience")}
	spCols  = []outputColumn{col("OBJECT ID", "id"), col("APP ID", "appId"), col("NAME", "displayName"),
		col("OWNER TENANT", "appOwnerOrganizationId"), col("TYPE", "servicePrincipalType")}
)

// graphRun runs one Graph call and prints its answer.
func graphRun(f *clientFlags, method string, path func([]string) string, body func([]string) any, cols []outputColumn) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		return f.run(cmd, cols, func(ctx context.Context, c *client.Client) (any, error) {
			var b any
			if body != nil {
				b = body(args)
			}
			if method == http.MethodDelete {
				return nil, c.Graph(ctx, method, path(args), b, nil)
			}
			var v map[string]any
			return v, c.Graph(ctx, method, path(args), b, &v)
		})
	}
}

func newAppCmd() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "app",
		Short: "Manage app registrations, their client secrets and federated credentials",
		Long: `Manage app registrations in the credentials' tenant through the Graph-shaped directory API.
APP is an application's object ID or its appId. 'add-secret' prints the new client secret
once (or saves it with --save); it cannot be read again.`,
	}
	addClientFlags(cmd, f)
	appPath := func(args []string) string { return "/applications/" + url.PathEscape(args[0]) }

	var multi bool
	create := &cobra.Command{
		Use:   "create NAME [--multi-tenant]",
		Short: "Register an application",
		Args:  cobra.ExactArgs(1),
		RunE: graphRun(f, http.MethodPost, func([]string) string { return "/applications" }, func(args []string) any {
			aud := "AzureADMyOrg"
			if multi {
				aud = "AzureADMultipleOrgs"
			}
			return map[string]string{"displayName": args[0], "signInAudience": aud}
		}, appCols),
	}
	create.Flags().BoolVar(&multi, "multi-tenant", false, "sign-in audience AzureADMultipleOrgs: other tenants may consent to it")
	list := &cobra.Command{Use: "list", Short: "List app registrations", Args: cobra.NoArgs,
		RunE: graphRun(f, http.MethodGet, func([]string) string { return "/applications" }, nil, appCols)}
	show := &cobra.Command{Use: "show APP", Short: "Show an app registration", Args: cobra.ExactArgs(1),
		RunE: graphRun(f, http.MethodGet, appPath, nil, appCols)}
	del := &cobra.Command{Use: "delete APP", Short: "Delete an app registration", Args: cobra.ExactArgs(1),
		RunE: graphRun(f, http.MethodDelete, appPath, nil, nil)}

	var (
		secretName, save string
		life             time.Duration
	)
	addSecret := &cobra.Command{
		Use:   "add-secret APP",
		Short: "Add a client secret (printed once)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			pc := map[string]any{"displayName": secretName}
			if life > 0 {
				pc["endDateTime"] = time.Now().Add(life).UTC().Format(time.RFC3339)
			}
			var v map[string]any
			if err := c.Graph(ctx, http.MethodPost, appPath(args)+"/addPassword", map[string]any{"passwordCredential": pc}, &v); err != nil {
				return err
			}
			secret, _ := v["secretText"].(string)
			out := cmd.OutOrStdout()
			if save != "" {
				var a struct {
					AppID string `json:"appId"`
				}
				if err := c.Graph(ctx, http.MethodGet, appPath(args), nil, &a); err != nil {
					return err
				}
				creds := client.Credentials{TenantID: c.TenantID, ClientID: a.AppID, ClientSecret: secret, Authority: c.BaseURL + "/" + c.TenantID}
				if err := client.WriteCredentials(save, creds); err != nil {
					return err
				}
				v["secretText"] = "saved to " + save
				secret = ""
			}
			if err := f.print(out, v, col("KEY ID", "keyId"), col("NAME", "displayName"), col("HINT", "hint"), col("EXPIRES", "endDateTime")); err != nil {
				return err
			}
			if save != "" && f.output == "table" {
				fmt.Fprintf(out, "Credentials saved to %s (use --credentials %s)\n", save, save)
			}
			f.printSecret(out, "Client secret", secret)
			return nil
		},
	}
	addSecret.Flags().StringVar(&secretName, "name", "", "display name of the secret")
	addSecret.Flags().DurationVar(&life, "expires-in", 0, "lifetime of the secret (default: the server's, as Graph's addPassword)")
	addSecret.Flags().StringVar(&save, "save", "", "write tenant, client ID and secret to this file (0600, admin.json's shape) instead of printing the secret")

	var fic ficFlags
	addFIC := &cobra.Command{
		Use:   "add-fic APP --name NAME --issuer URL --subject SUB [--audience AUD]",
		Short: "Add a federated identity credential (e.g. a managed identity as the app's credential)",
		Args:  cobra.ExactArgs(1),
		RunE: graphRun(f, http.MethodPost, func(args []string) string { return appPath(args) + "/federatedIdentityCredentials" },
			func([]string) any {
				return map[string]any{"name": fic.name, "issuer": fic.issuer, "subject": fic.subject, "audiences": fic.audiences, "description": fic.description}
			}, []outputColumn{col("NAME", "name"), col("ISSUER", "issuer"), col("SUBJECT", "subject"), col("AUDIENCES", "audiences")}),
	}
	fic.register(addFIC, true)
	cmd.AddCommand(create, list, show, del, addSecret, addFIC)
	return cmd
}

func newSPCmd() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "sp",
		Short: "Manage service principals (consent to apps in a tenant)",
		Long: `Manage service principals in the credentials' tenant. 'sp create --app-id' is consent:
it instantiates an app in the tenant of the credentials (sign in as that tenant's
administrator with --credentials, or --tenant/--client-id); a single-tenant app can be
instantiated only in its own tenant.`,
	}
	addClientFlags(cmd, f)
	spPath := func(args []string) string { return "/servicePrincipals/" + url.PathEscape(args[0]) }
	var appID string
	create := &cobra.Command{
		Use:   "create --app-id APPID",
		Short: "Create the app's service principal in this tenant (consent)",
		Args:  cobra.NoArgs,
		RunE: graphRun(f, http.MethodPost, func([]string) string { return "/servicePrincipals" },
			func([]string) any { return map[string]string{"appId": appID} }, spCols),
	}
	create.Flags().StringVar(&appID, "app-id", "", "appId of the application")
	_ = create.MarkFlagRequired("app-id")
	list := &cobra.Command{Use: "list", Short: "List service principals", Args: cobra.NoArgs,
		RunE: graphRun(f, http.MethodGet, func([]string) string { return "/servicePrincipals" }, nil, spCols)}
	show := &cobra.Command{Use: "show ID", Short: "Show a service principal (object ID or appId)", Args: cobra.ExactArgs(1),
		RunE: graphRun(f, http.MethodGet, spPath, nil, spCols)}
	del := &cobra.Command{Use: "delete ID", Short: "Delete a service principal", Args: cobra.ExactArgs(1),
		RunE: graphRun(f, http.MethodDelete, spPath, nil, nil)}
	cmd.AddCommand(create, list, show, del)
	return cmd
}
