// Package azure holds the Azure REST conventions every cvault route follows:
// the error envelope, JSON body decoding with size limits, api-version
// validation, ARM resource IDs, paging and long-running-operation headers.
// It is the only package where Azure's wire names appear outside JSON tags.
package azure
