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

func newIdentityCmd() *cobra.Command {
	f := &clientFlags{}
	var sub, group string
	cmd := &cobra.Command{
		Use:   "identity",
		Short: "Manage user-assigned managed identities and their federated credentials",
		Long: `Manage Microsoft.ManagedIdentity/userAssignedIdentities through ARM, their federated
identity credentials, and their managed-identity secrets. 'identity secret' issues (or
rotates) the secret a guest's 'cvault guest imds-proxy' presents: it is printed once, or
written to --secret-file (0600) without being printed.`,
	}
	addClientFlags(cmd, f)
	pf := cmd.PersistentFlags()
	pf.StringVar(&sub, "subscription", "", "subscription ID (default: the first one visible)")
	pf.StringVarP(&group, "resource-group", "g", "", "resource group")
	cols := []outputColumn{col("NAME", "name"), col("LOCATION", "location"), col("CLIENT ID", "properties.clientId"),
		col("PRINCIPAL ID", "properties.principalId"), col("TENANT", "properties.tenantId")}
	path := func(ctx context.Context, c *client.Client, name string) (string, error) {
		s, err := c.Subscription(ctx, sub)
		if err != nil {
			return "", err
		}
		p := "/subscriptions/" + url.PathEscape(s)
		if group == "" {
			if name != "" {
				return "", fmt.Errorf("--resource-group is required")
			}
			return p + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities", nil
		}
		p += "/resourceGroups/" + url.PathEscape(group) + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities"
		if name != "" {
			p += "/" + url.PathEscape(name)
		}
		return p, nil
	}
	get := func(method string, body func([]string) any, suffix func([]string) string, cols []outputColumn) func(*cobra.Command, []string) error {
		return f.armVerb(path, method, client.VersionMSI, body, suffix, cols)
	}

	var location string
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create (or update) a user-assigned identity",
		Args:  cobra.ExactArgs(1),
		RunE:  get(http.MethodPut, func([]string) any { return map[string]string{"location": location} }, nil, cols),
	}
	create.Flags().StringVarP(&location, "location", "l", "westeurope", "Azure region")
	show := &cobra.Command{Use: "show NAME", Short: "Show a user-assigned identity", Args: cobra.ExactArgs(1),
		RunE: get(http.MethodGet, nil, nil, cols)}
	list := &cobra.Command{Use: "list", Short: "List user-assigned identities (in -g, or the subscription)", Args: cobra.NoArgs,
		RunE: get(http.MethodGet, nil, nil, cols)}
	del := &cobra.Command{Use: "delete NAME", Short: "Delete a user-assigned identity", Args: cobra.ExactArgs(1),
		RunE: f.armDeleteVerb(path, client.VersionMSI)}

	var secretFile string
	secret := &cobra.Command{
		Use:   "secret NAME",
		Short: "Issue or rotate the identity's managed-identity secret (printed once)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			p, err := path(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			var v map[string]any
			if err := c.ARM(cmd.Context(), http.MethodPost, p+"/secret", client.VersionMSI, nil, &v); err != nil {
				return err
			}
			s, _ := v["secret"].(string)
			out := cmd.OutOrStdout()
			if secretFile != "" {
				if err := os.WriteFile(secretFile, []byte(s+"\n"), 0o600); err != nil {
					return fmt.Errorf("--secret-file: %w", err)
				}
				if err := os.Chmod(secretFile, 0o600); err != nil { // an existing file keeps its mode otherwise
					return fmt.Errorf("--secret-file: %w", err)
				}
				v["secret"] = "saved to " + secretFile
				s = ""
			}
			if err := f.print(out, v, col("IDENTITY ENDPOINT", "identityEndpoint")); err != nil {
				return err
			}
			if secretFile != "" && f.output == "table" {
				fmt.Fprintf(out, "Secret saved to %s (give it to 'cvault guest imds-proxy --secret-file')\n", secretFile)
			}
			f.printSecret(out, "Managed-identity secret (X-IDENTITY-HEADER)", s)
			return nil
		},
	}
	secret.Flags().StringVar(&secretFile, "secret-file", "", "write the secret to this file (0600) instead of printing it")

	var fic ficFlags
	addFIC := &cobra.Command{
		Use:   "add-fic NAME --name FIC --issuer URL --subject SUB [--audience AUD]",
		Short: "Add (or replace) a federated identity credential on the identity",
		Args:  cobra.ExactArgs(1),
		RunE: get(http.MethodPut, func([]string) any {
			return map[string]any{"properties": map[string]any{"issuer": fic.issuer, "subject": fic.subject, "audiences": fic.audiences}}
		}, func([]string) string { return "/federatedIdentityCredentials/" + url.PathEscape(fic.name) },
			[]outputColumn{col("NAME", "name"), col("ISSUER", "properties.issuer"), col("SUBJECT", "properties.subject"), col("AUDIENCES", "properties.audiences")}),
	}
	fic.register(addFIC, false)
	cmd.AddCommand(create, show, list, del, secret, addFIC)
	return cmd
}

// ficFlags are a federated identity credential's fields.
type ficFlags struct {
	name, issuer, subject, description string
	audiences                          []string
}

func (f *ficFlags) register(cmd *cobra.Command, withDescription bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.name, "name", "", "credential name")
	_ = cmd.MarkFlagRequired("name")
	if withDescription {
		fl.StringVar(&f.description, "description", "", "description")
	}
	fl.StringVar(&f.issuer, "issuer", "", "issuer URL the assertion's iss must equal")
	fl.StringVar(&f.subject, "subject", "", "subject the assertion's sub must equal")
	fl.StringSliceVar(&f.audiences, "audience", []string{"api://AzureADTokenExchange"}, "audience the assertion's aud must contain (repeatable)")
	_ = cmd.MarkFlagRequired("issuer")
	_ = cmd.MarkFlagRequired("subject")
}
