package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/cvault/cvault/internal/demo"
)

func newDemoCmd() *cobra.Command {
	var opts demo.Options
	names := ""
	for _, s := range demo.Scenarios {
		names += "\n  " + s.Name + ": " + s.Title
	}
	cmd := &cobra.Command{
		Use:   "demo [scenario|all]",
		Short: "Replay the seed scenarios end to end against an in-process server",
		Long: `demo starts cvault in-process on a temporary data dir and replays the seeds' flows over
HTTPS with the Azure SDK clients, printing each step; it exits 0 only if every check held.
CVAULT_DEMO_BREAK=<step> makes the named step fail (to see a failing run).
Scenarios:` + names,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Break = os.Getenv("CVAULT_DEMO_BREAK")
			return demo.Run(cmd.Context(), cmd.OutOrStdout(), args, opts)
		},
	}
	cmd.Flags().DurationVar(&opts.DEKCacheTTL, "dek-cache-ttl", 0, "DEK cache TTL of the demo server (default 2s)")
	return cmd
}
