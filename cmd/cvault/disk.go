package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/cvault/cvault/internal/cli/client"
)

// maxPage is the most one Put Page carries (Azure's 4 MiB).
const maxPage = 4 << 20

func newDiskCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "disk",
		Short: "Manage managed disks and their data",
		Long: `Create, show, list and delete managed disks (Microsoft.Compute/disks), and read or write their
data the way Azure does: beginGetAccess issues an expiring signed URL, the data moves through it as a page
blob, endGetAccess revokes it. 'disk write' needs a disk created with --upload-bytes (ReadyToUpload).
A ConfidentialVM_DiskEncryptedWithCustomerKey disk serves only ciphertext records: its guest decrypts them.`,
	}
	s := newComputeScope(cmd, "disks")
	cols := []outputColumn{col("NAME", "name"), col("SIZE GB", "properties.diskSizeGB"), col("STATE", "properties.diskState"),
		col("ENCRYPTION", "properties.encryption.type"), col("SECURITY", "properties.securityProfile.securityType"), col("MANAGED BY", "managedBy")}
	var location, des, secType, osType string
	var sizeGB int32
	var upload int64
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a disk (empty, or awaiting an upload) and wait for it", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			props := map[string]any{}
			switch {
			case upload > 0:
				props["creationData"] = map[string]any{"createOption": "Upload", "uploadSizeBytes": upload}
			case sizeGB > 0:
				props["creationData"] = map[string]any{"createOption": "Empty"}
				props["diskSizeGB"] = sizeGB
			default:
				return fmt.Errorf("give --size-gb or --upload-bytes")
			}
			if osType != "" {
				props["osType"] = osType
			}
			switch {
			case secType != "":
				sp := map[string]any{"securityType": secType}
				if des != "" {
					sp["secureVMDiskEncryptionSetId"] = des
				}
				props["securityProfile"] = sp
			case des != "":
				props["encryption"] = map[string]any{"diskEncryptionSetId": des}
			}
			return s.put(cmd, cols, args[0], map[string]any{"location": location, "properties": props})
		},
	}
	create.Flags().StringVarP(&location, "location", "l", "westeurope", "Azure region")
	create.Flags().Int32Var(&sizeGB, "size-gb", 0, "size of an empty disk in GiB")
	create.Flags().Int64Var(&upload, "upload-bytes", 0, "size of a disk awaiting upload (a multiple of 512)")
	create.Flags().StringVar(&des, "des", "", "disk encryption set ID (customer-managed key)")
	create.Flags().StringVar(&secType, "security-type", "", "securityProfile.securityType, e.g. ConfidentialVM_DiskEncryptedWithCustomerKey")
	create.Flags().StringVar(&osType, "os-type", "", "Linux or Windows (confidential security types apply to OS disks)")
	cmd.AddCommand(create)
	s.crud(cmd, cols, "disk")

	var offset, length int64
	var outFile, inFile string
	read := &cobra.Command{
		Use: "read NAME", Short: "Read a disk's data through a signed URL (beginGetAccess Read)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return s.f.run(cmd, nil, func(ctx context.Context, c *client.Client) (any, error) {
				var w io.Writer = cmd.OutOrStdout()
				if outFile != "" && outFile != "-" {
					f, err := os.Create(outFile)
					if err != nil {
						return nil, err
					}
					defer f.Close()
					w = f
				}
				return nil, s.withAccess(ctx, c, args[0], "Read", func(sas string) error {
					req, err := http.NewRequestWithContext(ctx, http.MethodGet, sas, nil)
					if err != nil {
						return err
					}
					if offset > 0 || length > 0 {
						rg := "bytes=" + strconv.FormatInt(offset, 10) + "-"
						if length > 0 {
							rg += strconv.FormatInt(offset+length-1, 10)
						}
						req.Header.Set("x-ms-range", rg)
					}
					res, err := c.HTTP.Do(req)
					if err != nil {
						return err
					}
					defer res.Body.Close()
					if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusPartialContent {
						return fmt.Errorf("read: %s (%s)", res.Status, res.Header.Get("x-ms-error-code"))
					}
					n, err := io.Copy(w, res.Body)
					if err == nil && res.ContentLength >= 0 && n != res.ContentLength {
						err = fmt.Errorf("read: short body (%d of %d bytes)", n, res.ContentLength)
					}
					return err
				})
			})
		},
	}
	read.Flags().Int64Var(&offset, "offset", 0, "first byte")
	read.Flags().Int64Var(&length, "length", 0, "bytes to read (0: to the end)")
	read.Flags().StringVar(&outFile, "out", "-", "write the data to this file ('-': stdout)")
	write := &cobra.Command{
		Use: "write NAME", Short: "Upload data to a ReadyToUpload disk through a signed URL (beginGetAccess Write)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if inFile == "" {
				return fmt.Errorf("--in is required")
			}
			data, err := os.ReadFile(inFile)
			if err != nil {
				return err
			}
			if len(data)%512 != 0 || offset%512 != 0 {
				return fmt.Errorf("offset and length must be multiples of 512 (pages); %s is %d bytes", inFile, len(data))
			}
			return s.f.run(cmd, nil, func(ctx context.Context, c *client.Client) (any, error) {
				return nil, s.withAccess(ctx, c, args[0], "Write", func(sas string) error {
					for done := 0; done < len(data); {
						chunk := data[done:min(len(data), done+maxPage)]
						req, err := http.NewRequestWithContext(ctx, http.MethodPut, sas+"&comp=page", bytes.NewReader(chunk))
						if err != nil {
							return err
						}
						from := offset + int64(done)
						req.Header.Set("x-ms-page-write", "update")
						req.Header.Set("x-ms-range", fmt.Sprintf("bytes=%d-%d", from, from+int64(len(chunk))-1))
						res, err := c.HTTP.Do(req)
						if err != nil {
							return err
						}
						res.Body.Close()
						if res.StatusCode != http.StatusCreated {
							return fmt.Errorf("write at %d: %s (%s)", from, res.Status, res.Header.Get("x-ms-error-code"))
						}
						done += len(chunk)
					}
					fmt.Fprintf(cmd.OutOrStdout(), "wrote %d bytes at offset %d\n", len(data), offset)
					return nil
				})
			})
		},
	}
	write.Flags().Int64Var(&offset, "offset", 0, "first byte (a multiple of 512)")
	write.Flags().StringVar(&inFile, "in", "", "file whose bytes to upload (a multiple of 512)")
	cmd.AddCommand(read, write)
	return cmd
}

// withAccess runs fn with a signed URL for the disk, then revokes it.
func (s *computeScope) withAccess(ctx context.Context, c *client.Client, name, access string, fn func(sas string) error) error {
	p, err := s.path(ctx, c, name)
	if err != nil {
		return err
	}
	var grant struct {
		AccessSAS string `json:"accessSAS"`
	}
	if err := c.ARMWait(ctx, http.MethodPost, p+"/beginGetAccess", versionCompute, map[string]any{"access": access, "durationInSeconds": 3600}, &grant); err != nil {
		return err
	}
	if grant.AccessSAS == "" {
		return fmt.Errorf("beginGetAccess returned no accessSAS")
	}
	ferr := fn(grant.AccessSAS)
	if err := c.ARMWait(context.WithoutCancel(ctx), http.MethodPost, p+"/endGetAccess", versionCompute, nil, nil); err != nil && ferr == nil {
		return err
	}
	return ferr
}
