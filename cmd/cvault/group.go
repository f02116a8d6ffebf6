package main

import (
	"context"
	"net/http"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/cvault/cvault/internal/cli/client"
)

func newGroupCmd() *cobra.Command {
	f := &clientFlags{}
	var sub string
	cmd := &cobra.Command{
		Use:   "group",
		Short: "Manage resource groups",
		Long: `Create, list, show and delete resource groups in a subscription
(default: the first subscription the credentials see).`,
	}
	addClientFlags(cmd, f)
	cmd.PersistentFlags().StringVar(&sub, "subscription", "", "subscription ID (default: the first one visible)")
	cols := []outputColumn{col("NAME", "name"), col("LOCATION", "location"), col("STATE", "properties.provisioningState"), col("ID", "id")}
	path := func(ctx context.Context, c *client.Client, name string) (string, error) {
		s, err := c.Subscription(ctx, sub)
		if err != nil {
			return "", err
		}
		p := "/subscriptions/" + url.PathEscape(s) + "/resourcegroups"
		if name != "" {
			p += "/" + url.PathEscape(name)
		}
		return p, nil
	}

	var location string
	create := &cobra.Command{Use: "create NAME", Short: "Create (or update) a resource group", Args: cobra.ExactArgs(1),
		RunE: f.armVerb(path, http.MethodPut, client.VersionResources, func([]string) any { return map[string]string{"location": location} }, nil, cols)}
	create.Flags().StringVarP(&location, "location", "l", "westeurope", "Azure region")
	list := &cobra.Command{Use: "list", Short: "List resource groups", Args: cobra.NoArgs,
		RunE: f.armVerb(path, http.MethodGet, client.VersionResources, nil, nil, cols)}
	show := &cobra.Command{Use: "show NAME", Short: "Show a resource group", Args: cobra.ExactArgs(1),
		RunE: f.armVerb(path, http.MethodGet, client.VersionResources, nil, nil, cols)}
	del := &cobra.Command{Use: "delete NAME", Short: "Delete a resource group and wait for the operation", Args: cobra.ExactArgs(1),
		RunE: f.armDeleteVerb(path, client.VersionResources)}
	cmd.AddCommand(create, list, show, del)
	return cmd
}
