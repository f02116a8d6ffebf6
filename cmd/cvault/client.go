package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/cvault/cvault/internal/cli/client"
	"github.com/cvault/cvault/internal/cli/output"
)

// clientFlags are the flags every admin verb shares.
type clientFlags struct {
	server, data, ca, credentials string
	tenant, clientID              string
	output                        string
}

const credentialsHelp = `
Credentials: the data dir's admin.json (written by 'cvault serve' on its first start),
another file in that shape (--credentials), or --tenant and --client-id with the secret
in $CVAULT_CLIENT_SECRET (secrets are never taken from the command line).`

// addClientFlags registers the shared flags on a command group.
func addClientFlags(cmd *cobra.Command, f *clientFlags) {
	p := cmd.PersistentFlags()
	p.StringVar(&f.server, "server", "", "cvault base URL (default: the authority in the credentials file, else "+client.DefaultServer+")")
	p.StringVar(&f.data, "data", client.DefaultDataDir, "data dir holding admin.json and ca.pem")
	p.StringVar(&f.ca, "ca", "", "CA certificate to trust (default: $SSL_CERT_FILE and DATA/ca.pem)")
	p.StringVar(&f.credentials, "credentials", "", "credentials file in admin.json's shape (default DATA/admin.json)")
	p.StringVar(&f.tenant, "tenant", "", "tenant ID of the credentials")
	p.StringVar(&f.clientID, "client-id", "", "client (app) ID to sign in as; secret from $"+client.SecretEnv)
	p.StringVarP(&f.output, "output", "o", output.Table, "output format: table or json")
	cmd.Long += "\n" + credentialsHelp
}

// client builds the API client; it checks --output first so a typo fails
// before any request.
func (f *clientFlags) client() (*client.Client, error) {
	if err := output.Check(f.output); err != nil {
		return nil, err
	}
	return client.New(client.Options{Server: f.server, DataDir: f.data, CAFile: f.ca, CredentialsFile: f.credentials,
		TenantID: f.tenant, ClientID: f.clientID, ClientSecret: os.Getenv(client.SecretEnv)})
}

// print renders v with the --output format.
func (f *clientFlags) print(w io.Writer, v any, cols ...output.Column) error {
	return output.Write(w, f.output, v, cols)
}

// col is shorthand for a table column.
type outputColumn = output.Column

func col(header, path string) output.Column { return output.Column{Header: header, Path: path} }

// apiCall runs fn with a client and prints what it returns.
func (f *clientFlags) run(cmd *cobra.Command, cols []output.Column, fn func(ctx context.Context, c *client.Client) (any, error)) error {
	c, err := f.client()
	if err != nil {
		return err
	}
	v, err := fn(cmd.Context(), c)
	if err != nil {
		return err
	}
	if v == nil {
		return nil
	}
	return f.print(cmd.OutOrStdout(), v, cols...)
}

// printSecret shows a secret once, after the object it belongs to, in
// both output formats (in JSON it is already part of the object).
func (f *clientFlags) printSecret(w io.Writer, label, secret string) {
	if f.output == output.Table && secret != "" {
		fmt.Fprintf(w, "%s (shown once, store it now): %s\n", label, secret)
	}
}

// armPath names the ARM path of a resource ("" = its collection).
type armPath func(ctx context.Context, c *client.Client, name string) (string, error)

// armVerb is the RunE of a verb that sends one ARM request to the path of
// its first argument (the collection without one), plus suffix, with body,
// and prints the answer.
func (f *clientFlags) armVerb(path armPath, method, version string, body func([]string) any, suffix func([]string) string, cols []output.Column) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		return f.run(cmd, cols, func(ctx context.Context, c *client.Client) (any, error) {
			name := ""
			if len(args) > 0 {
				name = args[0]
			}
			p, err := path(ctx, c, name)
			if err != nil {
				return nil, err
			}
			if suffix != nil {
				p += suffix(args)
			}
			var b any
			if body != nil {
				b = body(args)
			}
			var v map[string]any
			return v, c.ARM(ctx, method, p, version, b, &v)
		})
	}
}

// armDeleteVerb is the RunE of a verb that deletes the resource named by
// its first argument and waits for the operation.
func (f *clientFlags) armDeleteVerb(path armPath, version string) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		return f.run(cmd, nil, func(ctx context.Context, c *client.Client) (any, error) {
			p, err := path(ctx, c, args[0])
			if err != nil {
				return nil, err
			}
			return nil, c.ARMDelete(ctx, p, version)
		})
	}
}
