package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cvault/cvault/internal/cli/client"
	"github.com/cvault/cvault/internal/cli/output"
)

func newRoleCmd() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "role",
		Short: "Manage Azure RBAC role assignments and read role definitions",
		Long: `Assign, list and delete role assignments (Microsoft.Authorization/roleAssignments) at a
subscription, resource group, resource or key scope, and read the built-in role definitions.
Only Owner and User Access Administrator may write role assignments.`,
	}
	addClientFlags(cmd, f)
	assignCols := []outputColumn{col("NAME", "name"), col("ROLE", "properties.roleName"), col("PRINCIPAL", "properties.principalId"),
		col("TYPE", "properties.principalType"), col("SCOPE", "properties.scope")}
	defaultScope := func(ctx context.Context, c *client.Client, scope string) (string, error) {
		if scope != "" {
			return "/" + strings.Trim(scope, "/"), nil
		}
		s, err := c.Subscription(ctx, "")
		if err != nil {
			return "", err
		}
		return "/subscriptions/" + s, nil
	}

	var role, assignee, assigneeType, scope string
	assign := &cobra.Command{
		Use:   "assign --role NAME|ID --assignee OBJECTID [--scope SCOPE]",
		Short: "Assign a role to a principal at a scope (default: the subscription)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd, assignCols, func(ctx context.Context, c *client.Client) (any, error) {
				sc, err := defaultScope(ctx, c, scope)
				if err != nil {
					return nil, err
				}
				def, err := c.RoleDefinitionID(ctx, sc, role)
				if err != nil {
					return nil, err
				}
				name, err := client.NewGUID()
				if err != nil {
					return nil, err
				}
				props := map[string]string{"roleDefinitionId": def, "principalId": assignee}
				if assigneeType != "" {
					props["principalType"] = assigneeType
				}
				var v map[string]any
				if err := c.ARM(ctx, http.MethodPut, sc+"/providers/Microsoft.Authorization/roleAssignments/"+name,
					client.VersionAuthorization, map[string]any{"properties": props}, &v); err != nil {
					return nil, err
				}
				return v, f.addRoleNames(ctx, c, []any{v})
			})
		},
	}
	assign.Flags().StringVar(&role, "role", "", "role name (\"Key Vault Crypto User\") or role definition ID")
	assign.Flags().StringVar(&assignee, "assignee", "", "object ID of the principal (service principal, managed identity)")
	assign.Flags().StringVar(&assigneeType, "assignee-type", "", "principal type: ServicePrincipal, User, Group (optional)")
	assign.Flags().StringVar(&scope, "scope", "", "ARM scope (default: /subscriptions/{first visible subscription})")
	_ = assign.MarkFlagRequired("role")
	_ = assign.MarkFlagRequired("assignee")

	var listScope, listAssignee string
	list := &cobra.Command{
		Use:   "list [--scope SCOPE] [--assignee OBJECTID]",
		Short: "List role assignments that apply at a scope (default: the subscription)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd, assignCols, func(ctx context.Context, c *client.Client) (any, error) {
				sc, err := defaultScope(ctx, c, listScope)
				if err != nil {
					return nil, err
				}
				p := sc + "/providers/Microsoft.Authorization/roleAssignments"
				if listAssignee != "" {
					p += "?$filter=" + url.QueryEscape("principalId eq '"+listAssignee+"'")
				}
				var v map[string]any
				if err := c.ARM(ctx, http.MethodGet, p, client.VersionAuthorization, nil, &v); err != nil {
					return nil, err
				}
				list, _ := v["value"].([]any)
				return v, f.addRoleNames(ctx, c, list)
			})
		},
	}
	list.Flags().StringVar(&listScope, "scope", "", "ARM scope (default: the first visible subscription)")
	list.Flags().StringVar(&listAssignee, "assignee", "", "only assignments of this principal object ID")

	del := &cobra.Command{
		Use:   "delete ASSIGNMENT-ID",
		Short: "Delete a role assignment by its ID ({scope}/providers/Microsoft.Authorization/roleAssignments/{name})",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd, nil, func(ctx context.Context, c *client.Client) (any, error) {
				id := "/" + strings.Trim(args[0], "/")
				if !strings.Contains(strings.ToLower(id), "/providers/microsoft.authorization/roleassignments/") {
					return nil, fmt.Errorf("%q is not a role assignment ID (see the id column of 'role list -o json')", args[0])
				}
				return nil, c.ARM(ctx, http.MethodDelete, id, client.VersionAuthorization, nil, nil)
			})
		},
	}

	var defName string
	defs := &cobra.Command{
		Use:   "definitions [--name ROLE]",
		Short: "List the built-in role definitions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cols := []outputColumn{col("NAME", "properties.roleName"), col("ID", "name"), col("DESCRIPTION", "properties.description")}
			return f.run(cmd, cols, func(ctx context.Context, c *client.Client) (any, error) {
				p := "/providers/Microsoft.Authorization/roleDefinitions"
				if defName != "" {
					p += "?$filter=" + url.QueryEscape("roleName eq '"+strings.ReplaceAll(defName, "'", "''")+"'")
				}
				var v map[string]any
				return v, c.ARM(ctx, http.MethodGet, p, client.VersionAuthorization, nil, &v)
			})
		},
	}
	defs.Flags().StringVar(&defName, "name", "", "only the role with this name")
	cmd.AddCommand(assign, list, del, defs)
	return cmd
}

// addRoleNames adds properties.roleName to assignments for the table (the
// wire shape has only the definition's ID); JSON stays as the server sent it.
func (f *clientFlags) addRoleNames(ctx context.Context, c *client.Client, assignments []any) error {
	if f.output != output.Table {
		return nil
	}
	var defs struct {
		Value []struct {
			Name       string `json:"name"`
			Properties struct {
				RoleName string `json:"roleName"`
			} `json:"properties"`
		} `json:"value"`
	}
	if err := c.ARM(ctx, http.MethodGet, "/providers/Microsoft.Authorization/roleDefinitions", client.VersionAuthorization, nil, &defs); err != nil {
		return fmt.Errorf("role definitions: %w", err)
	}
	names := map[string]string{}
	for _, d := range defs.Value {
		names[strings.ToLower(d.Name)] = d.Properties.RoleName
	}
	for _, a := range assignments {
		props, _ := a.(map[string]any)["properties"].(map[string]any)
		if props == nil {
			continue
		}
		id, _ := props["roleDefinitionId"].(string)
		if n, ok := names[strings.ToLower(path.Base(id))]; ok {
			props["roleName"] = n
		}
	}
	return nil
}
