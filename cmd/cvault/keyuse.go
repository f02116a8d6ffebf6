package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// desUse is a disk encryption set that refers to a key version, and how.
type desUse struct {
	ID  string
	How string // "activeKey", "previousKeys" or "keyRotation.targetKey"
}

// sameKeyVersion reports whether two versioned key URLs name the same key
// version: vault host (port ignored, as the server's public port may
// differ from the one a client dials), key name case-insensitively, version.
func sameKeyVersion(a, b string) bool {
	pa, ok1 := splitKeyURL(a)
	pb, ok2 := splitKeyURL(b)
	return ok1 && ok2 && pa[0] == pb[0] && strings.EqualFold(pa[1], pb[1]) && pa[2] == pb[2]
}

func splitKeyURL(s string) ([3]string, bool) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.Host == "" {
		return [3]string{}, false
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 3 || !strings.EqualFold(parts[0], "keys") || parts[2] == "" {
		return [3]string{}, false
	}
	return [3]string{strings.ToLower(u.Hostname()), parts[1], parts[2]}, true
}

// desesUsingKey lists the disk encryption sets that the caller can read,
// in subs (all its subscriptions when empty), whose active key, previous
// keys or rotation target is the key version kid. Sets in tenants the
// caller cannot read (a cross-tenant provider's) are not seen.
func desesUsingKey(ctx context.Context, hc *http.Client, cred azcore.TokenCredential, base string, subs []string, kid string) ([]desUse, error) {
	base = strings.TrimRight(base, "/")
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{base + "/.default"}})
	if err != nil {
		return nil, fmt.Errorf("ARM token: %w", err)
	}
	get := func(u string, out any) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		res, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
			return fmt.Errorf("GET %s: %d %s", u, res.StatusCode, b)
		}
		return json.NewDecoder(res.Body).Decode(out)
	}
	if len(subs) == 0 {
		var page struct {
			Value []struct {
				SubscriptionID string `json:"subscriptionId"`
			} `json:"value"`
		}
		if err := get(base+"/subscriptions?api-version=2022-12-01", &page); err != nil {
			return nil, err
		}
		for _, s := range page.Value {
			subs = append(subs, s.SubscriptionID)
		}
	}
	type keyRef struct {
		KeyURL string `json:"keyUrl"`
	}
	var out []desUse
	for _, sub := range subs {
		next := base + "/subscriptions/" + url.PathEscape(sub) + "/providers/Microsoft.Compute/diskEncryptionSets?api-version=2023-04-02"
		for next != "" {
			var page struct {
				Value []struct {
					ID         string `json:"id"`
					Properties struct {
						ActiveKey    *keyRef  `json:"activeKey"`
						PreviousKeys []keyRef `json:"previousKeys"`
						KeyRotation  *struct {
							State     string `json:"state"`
							TargetKey keyRef `json:"targetKey"`
						} `json:"keyRotation"`
					} `json:"properties"`
				} `json:"value"`
				NextLink string `json:"nextLink"`
			}
			if err := get(next, &page); err != nil {
				return nil, err
			}
			for _, d := range page.Value {
				p := d.Properties
				switch {
				case p.ActiveKey != nil && sameKeyVersion(p.ActiveKey.KeyURL, kid):
					out = append(out, desUse{ID: d.ID, How: "activeKey"})
				case p.KeyRotation != nil && p.KeyRotation.State != "Succeeded" && sameKeyVersion(p.KeyRotation.TargetKey.KeyURL, kid):
					out = append(out, desUse{ID: d.ID, How: "keyRotation.targetKey"})
				default:
					for _, k := range p.PreviousKeys {
						if sameKeyVersion(k.KeyURL, kid) {
							out = append(out, desUse{ID: d.ID, How: "previousKeys"})
							break
						}
					}
				}
			}
			next = page.NextLink
		}
	}
	return out, nil
}
