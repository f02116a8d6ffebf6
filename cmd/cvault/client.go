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
