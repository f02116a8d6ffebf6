// This file only keeps go.mod/go.sum complete for the modules the project
// is about to use while their first importers are being written; it never builds.

//go:build tools

package internal

import (
	_ "github.com/Azure/azure-sdk-for-go/sdk/azcore"
	_ "github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	_ "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/authorization/armauthorization/v2"
	_ "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	_ "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"
	_ "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/msi/armmsi"
	_ "github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	_ "github.com/go-jose/go-jose/v4"
	_ "github.com/go-jose/go-jose/v4/jwt"
	_ "github.com/golang-jwt/jwt/v5"
	_ "github.com/google/go-sev-guest/abi"
	_ "github.com/google/go-sev-guest/client"
	_ "github.com/google/go-sev-guest/kds"
	_ "github.com/google/go-sev-guest/testing"
	_ "github.com/google/go-sev-guest/validate"
	_ "github.com/google/go-sev-guest/verify"
	_ "github.com/google/go-sev-guest/verify/testdata"
	_ "github.com/google/go-tdx-guest/abi"
	_ "github.com/google/go-tdx-guest/validate"
	_ "github.com/google/go-tdx-guest/verify"
	_ "github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/schollz/progressbar/v3"
	_ "github.com/spf13/cobra"
	_ "go.etcd.io/bbolt"
	_ "golang.org/x/sync/errgroup"
)
