package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/cvault/cvault/internal/cli/client"
)

// desAPIVersion is the DiskRP version the des verbs speak.
const desAPIVersion = "2023-04-02"

// desResource is the part of a DES the des verbs read.
type desResource struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Location   string `json:"location"`
	Properties struct {
		EncryptionType string `json:"encryptionType"`
		ActiveKey      *struct {
			KeyURL string `json:"keyUrl"`
		} `json:"activeKey"`
		PreviousKeys []struct {
			KeyURL string `json:"keyUrl"`
		} `json:"previousKeys"`
		ProvisioningState string `json:"provisioningState"`
		KeyRotation       *struct {
			State     string `json:"state"`
			TargetKey struct {
				KeyURL string `json:"keyUrl"`
			} `json:"targetKey"`
			OperationID         string   `json:"operationId"`
			DisksTotal          int      `json:"disksTotal"`
			DisksRotated        int      `json:"disksRotated"`
			DisksOnPreviousKeys []string `json:"disksOnPreviousKeys"`
			Error               *struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		} `json:"keyRotation"`
	} `json:"properties"`
}

// newDESCmd is the des command: create, list and delete (desadmin.go),
// show and rotate (here).
func newDESCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "des",
		Short: "Manage disk encryption sets and rotate their keys",
		Long: `Create, list, show and delete disk encryption sets (Microsoft.Compute/diskEncryptionSets) and rotate
their customer-managed key (seed 004). On create the set proves it can use its key over HTTPS as its managed
identity; a ConfidentialVmEncryptedWithCustomerKey set also needs the Confidential VM Orchestrator (appId
bf7b6499-ff71-4aa2-97a4-f372087be7f0) to hold get and release on its exportable RSA-HSM key.`,
	}
	sc := addDESAdmin(cmd)
	f := sc.f
	path := func(ctx context.Context, c *client.Client, name string) (string, error) { return sc.path(ctx, c, name) }
	cols := []outputColumn{col("NAME", "name"), col("TYPE", "properties.encryptionType"), col("STATE", "properties.provisioningState"),
		col("ACTIVE KEY", "properties.activeKey.keyUrl"), col("ROTATION", "properties.keyRotation.state"),
		col("ROTATED", "properties.keyRotation.disksRotated"), col("OF", "properties.keyRotation.disksTotal")}
	show := &cobra.Command{Use: "show NAME", Short: "Show a disk encryption set with its key rotation state", Args: cobra.ExactArgs(1),
		RunE: f.armVerb(path, http.MethodGet, desAPIVersion, nil, nil, cols)}

	var keyURL string
	var resume, noWait bool
	rotate := &cobra.Command{
		Use:   "rotate NAME (--key https://VAULT/keys/NAME/VERSION | --resume)",
		Short: "Change the set's key and re-wrap every disk's data key, with a progress bar",
		Long: `Save the disk encryption set with a new key version: every disk's data key is re-wrapped
(unwrapped with its old key version, wrapped with the new one, through the vault) by a job on the
server. For a ConfidentialVmEncryptedWithCustomerKey set every VM using it must be stopped first.
--resume saves the target of a rotation that stopped part-way again, which completes it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (keyURL == "") == !resume {
				return errors.New("give exactly one of --key and --resume")
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			p, err := path(ctx, c, args[0])
			if err != nil {
				return err
			}
			var des desResource
			if err := c.ARM(ctx, http.MethodGet, p, desAPIVersion, nil, &des); err != nil {
				return err
			}
			if resume {
				kr := des.Properties.KeyRotation
				if kr == nil || kr.State == "Succeeded" {
					return fmt.Errorf("disk encryption set %s has no unfinished rotation", args[0])
				}
				keyURL = kr.TargetKey.KeyURL
			}
			body := map[string]any{"properties": map[string]any{"activeKey": map[string]string{"keyUrl": keyURL}}}
			if err := c.ARM(ctx, http.MethodPatch, p, desAPIVersion, body, &des); err != nil {
				return err
			}
			kr := des.Properties.KeyRotation
			if kr == nil || kr.State != "InProgress" {
				return printDES(ctx, cmd, c, f, p, cols)
			}
			if noWait {
				fmt.Fprintf(cmd.OutOrStdout(), "rotation of %s to %s started (operation %s)\n", des.Name, keyURL, kr.OperationID)
				return nil
			}
			return waitRotation(ctx, cmd, c, f, p, des, cols)
		},
	}
	rotate.Flags().StringVar(&keyURL, "key", "", "the new versioned key URL")
	rotate.Flags().BoolVar(&resume, "resume", false, "complete a rotation that stopped part-way (saves its target again)")
	rotate.Flags().BoolVar(&noWait, "no-wait", false, "return once the rotation has started")
	cmd.AddCommand(show, rotate)
	return cmd
}

// waitRotation polls the rotation's operation, drawing its done/total.
func waitRotation(ctx context.Context, cmd *cobra.Command, c *client.Client, f *clientFlags, p string, des desResource, cols []outputColumn) error {
	kr := des.Properties.KeyRotation
	rid := p[:len("/subscriptions/")+len(subOf(p))]
	opPath := rid + "/providers/Microsoft.Compute/locations/" + url.PathEscape(des.Location) + "/operations/" + url.PathEscape(kr.OperationID)
	bar := progressbar.NewOptions(kr.DisksTotal, progressbar.OptionSetWriter(cmd.ErrOrStderr()),
		progressbar.OptionSetDescription("re-wrapping disk keys"), progressbar.OptionShowCount(), progressbar.OptionThrottle(100*time.Millisecond))
	var op struct {
		Status     string `json:"status"`
		Properties struct {
			Done  int `json:"done"`
			Total int `json:"total"`
		} `json:"properties"`
		Error *struct{ Code, Message string } `json:"error"`
	}
	for {
		if err := c.ARM(ctx, http.MethodGet, opPath, desAPIVersion, nil, &op); err != nil {
			return err
		}
		if op.Properties.Total > 0 {
			bar.ChangeMax(op.Properties.Total)
		}
		_ = bar.Set(op.Properties.Done)
		if op.Status != "InProgress" {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	_ = bar.Finish()
	fmt.Fprintln(cmd.ErrOrStderr())
	if err := c.ARM(ctx, http.MethodGet, p, desAPIVersion, nil, &des); err != nil {
		return err
	}
	if err := printDES(ctx, cmd, c, f, p, cols); err != nil {
		return err
	}
	if op.Status != "Succeeded" {
		msg := op.Status
		if op.Error != nil {
			msg = op.Error.Code + ": " + op.Error.Message
		}
		if kr := des.Properties.KeyRotation; kr != nil {
			msg += fmt.Sprintf(" (%d of %d disks on the new key; still on previous keys: %v) — run 'cvault des rotate %s --resume' to complete it",
				kr.DisksRotated, kr.DisksTotal, kr.DisksOnPreviousKeys, des.Name)
		}
		return errors.New(msg)
	}
	return nil
}

// printDES shows the set as it is now.
func printDES(ctx context.Context, cmd *cobra.Command, c *client.Client, f *clientFlags, p string, cols []outputColumn) error {
	var v map[string]any
	if err := c.ARM(ctx, http.MethodGet, p, desAPIVersion, nil, &v); err != nil {
		return err
	}
	return f.print(cmd.OutOrStdout(), v, cols...)
}

// subOf is the subscription segment of an ARM path.
func subOf(p string) string {
	rest := p[len("/subscriptions/"):]
	for i := range len(rest) {
		if rest[i] == '/' {
			return rest[:i]
		}
	}
	return rest
}
