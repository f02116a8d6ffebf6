package keyvault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cvault/cvault/internal/jwk"
	"github.com/cvault/cvault/internal/store"
)

// Lifetime action types.
const (
	ActionRotate = "Rotate"
	ActionNotify = "Notify"
)

// RotationPolicy is a key's rotation policy. Durations are ISO 8601
// (P90D, P1Y2M, PT12H).
type RotationPolicy struct {
	LifetimeActions []LifetimeAction `json:"lifetimeActions"`
	ExpiryTime      string           `json:"expiryTime,omitempty"`
	Created         int64            `json:"created,omitempty"`
	Updated         int64            `json:"updated,omitempty"`
}

// LifetimeAction is one trigger → action of a rotation policy; exactly one
// of the trigger durations is set.
type LifetimeAction struct {
	TimeAfterCreate  string `json:"timeAfterCreate,omitempty"`
	TimeBeforeExpiry string `json:"timeBeforeExpiry,omitempty"`
	Action           string `json:"action"`
}

// DefaultRotationPolicy is what a key without a policy reports, as Key
// Vault does: notify 30 days before expiry.
func DefaultRotationPolicy() RotationPolicy {
	return RotationPolicy{LifetimeActions: []LifetimeAction{{TimeBeforeExpiry: "P30D", Action: ActionNotify}}}
}

// Duration is an ISO 8601 duration as calendar parts.
type Duration struct {
	Years, Months, Days     int
	Hours, Minutes, Seconds int
}

var isoDurationRE = regexp.MustCompile(`^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$`)

// ParseDuration parses an ISO 8601 duration such as P1Y2M10DT2H30M or P2W.
func ParseDuration(s string) (Duration, error) {
	m := isoDurationRE.FindStringSubmatch(strings.ToUpper(s))
	if m == nil || s == "P" || strings.HasSuffix(strings.ToUpper(s), "T") {
		return Duration{}, fmt.Errorf("%w: %q is not an ISO 8601 duration", ErrBadParameter, s)
	}
	n := make([]int, 8)
	for i := 1; i < 8; i++ {
		if m[i] == "" {
			continue
		}
		v, err := strconv.Atoi(m[i])
		if err != nil || v > 100000 {
			return Duration{}, fmt.Errorf("%w: %q is out of range", ErrBadParameter, s)
		}
		n[i] = v
	}
	return Duration{Years: n[1], Months: n[2], Days: n[3]*7 + n[4], Hours: n[5], Minutes: n[6], Seconds: n[7]}, nil
}

// AddTo returns t + d.
func (d Duration) AddTo(t time.Time) time.Time {
	return t.AddDate(d.Years, d.Months, d.Days).Add(time.Duration(d.Hours)*time.Hour + time.Duration(d.Minutes)*time.Minute + time.Duration(d.Seconds)*time.Second)
}

// SubFrom returns t - d.
func (d Duration) SubFrom(t time.Time) time.Time {
	return t.AddDate(-d.Years, -d.Months, -d.Days).Add(-(time.Duration(d.Hours)*time.Hour + time.Duration(d.Minutes)*time.Minute + time.Duration(d.Seconds)*time.Second))
}

func checkRotationPolicy(p *RotationPolicy) error {
	var errs []string
	if p.ExpiryTime != "" {
		if d, err := ParseDuration(p.ExpiryTime); err != nil {
			errs = append(errs, fmt.Sprintf("attributes.expiryTime %q is not an ISO 8601 duration", p.ExpiryTime))
		} else if d.AddTo(time.Unix(0, 0)).Before(time.Unix(0, 0).AddDate(0, 0, 28)) {
			errs = append(errs, "attributes.expiryTime must be at least 28 days (P28D)")
		}
	}
	rotates := 0
	for i := range p.LifetimeActions {
		la := &p.LifetimeActions[i]
		switch strings.ToLower(la.Action) {
		case "rotate":
			la.Action = ActionRotate
			rotates++
		case "notify":
			la.Action = ActionNotify
		default:
			errs = append(errs, fmt.Sprintf("lifetimeActions[%d].action.type %q is not Rotate or Notify", i, la.Action))
		}
		if (la.TimeAfterCreate == "") == (la.TimeBeforeExpiry == "") {
			errs = append(errs, fmt.Sprintf("lifetimeActions[%d].trigger must set exactly one of timeAfterCreate and timeBeforeExpiry", i))
			continue
		}
		for _, d := range []string{la.TimeAfterCreate, la.TimeBeforeExpiry} {
			if _, err := ParseDuration(d); d != "" && err != nil {
				errs = append(errs, fmt.Sprintf("lifetimeActions[%d].trigger %q is not an ISO 8601 duration", i, d))
			}
		}
		if la.TimeBeforeExpiry != "" && la.Action == ActionRotate && p.ExpiryTime == "" {
			errs = append(errs, fmt.Sprintf("lifetimeActions[%d]: a timeBeforeExpiry rotation needs attributes.expiryTime", i))
		}
	}
	if rotates > 1 {
		errs = append(errs, "a rotation policy may hold at most one Rotate action")
	}
	if len(p.LifetimeActions) > 2 {
		errs = append(errs, "a rotation policy may hold at most two lifetime actions")
	}
	if len(errs) > 0 {
		return errf(ErrBadParameter, "The rotation policy is invalid: %s.", strings.Join(errs, "; "))
	}
	return nil
}

// RotationPolicy returns a live key's rotation policy (the default when
// none was set).
func (s *Service) RotationPolicy(ctx context.Context, vault *Vault, name string) (RotationPolicy, error) {
	var out RotationPolicy
	err := s.st.View(ctx, func(r store.Reader) error {
		kr, _, _, err := resolve(ctx, r, vault, name, "")
		if err != nil {
			return err
		}
		out = DefaultRotationPolicy()
		if kr.RotationPolicy != nil {
			out = *kr.RotationPolicy
		}
		return nil
	})
	return out, err
}

// SetRotationPolicy replaces a live key's rotation policy.
func (s *Service) SetRotationPolicy(ctx context.Context, vault *Vault, name string, p RotationPolicy) (RotationPolicy, error) {
	if err := checkRotationPolicy(&p); err != nil {
		return RotationPolicy{}, err
	}
	err := s.st.Update(ctx, func(tx store.Tx) error {
		if _, _, _, err := resolve(ctx, tx, vault, name, ""); err != nil {
			return err
		}
		kk := keyKey(vault, name)
		kr, ver, err := getKeyRecord(ctx, tx, kk)
		if err != nil {
			return err
		}
		now := s.nowUTC().Unix()
		p.Created, p.Updated = now, now
		if kr.RotationPolicy != nil && kr.RotationPolicy.Created != 0 {
			p.Created = kr.RotationPolicy.Created
		}
		kr.RotationPolicy = &p
		return putKeyRecord(ctx, tx, kk, kr, ver)
	})
	return p, err
}

// RotateKey creates a new version of a key with the current version's
// type, size, curve, operations, tags and release policy; its expiry comes
// from the rotation policy's expiryTime.
func (s *Service) RotateKey(ctx context.Context, vault *Vault, name string) (*Version, error) {
	for range 8 {
		v, err := s.rotate(ctx, vault, name, "")
		if !errors.Is(err, errRotatedMeanwhile) {
			return v, err
		}
	}
	return nil, errf(ErrConflict, "Key %s is being rotated concurrently; retry.", name)
}

func (s *Service) rotate(ctx context.Context, vault *Vault, name, expectCurrent string) (*Version, error) {
	var cur *Version
	var pol *RotationPolicy
	err := s.st.View(ctx, func(r store.Reader) error {
		kr, v, _, err := resolve(ctx, r, vault, name, "")
		cur, pol = v, nil
		if kr != nil {
			pol = kr.RotationPolicy
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if expectCurrent != "" && cur.Version != expectCurrent {
		return nil, errRotatedMeanwhile
	}
	priv, err := jwk.Generate(s.rand, cur.KeyType, cur.Size, cur.Curve)
	if err != nil {
		return nil, fmt.Errorf("rotate %s: %w", name, err)
	}
	v := &Version{KeyType: cur.KeyType, KeyOps: cur.KeyOps, Tags: cur.Tags, ReleasePolicy: cur.ReleasePolicy,
		Attributes: Attributes{Enabled: true, Exportable: cur.Attributes.Exportable}}
	if pol != nil && pol.ExpiryTime != "" {
		if d, err := ParseDuration(pol.ExpiryTime); err == nil {
			exp := d.AddTo(s.nowUTC()).Unix()
			v.Attributes.Expires = &exp
		}
	}
	// The rotated version must follow the version we copied from; a
	// concurrent rotate or create makes this one retry on the new current.
	return s.addVersion(ctx, vault, name, v, priv, cur.Version)
}

// RotateDue rotates every live key whose rotation policy's Rotate action
// is due at the service clock's now, and returns how many it rotated.
// Running it on several servers at once is safe: a rotation only applies
// if the version it rotated from is still current.
func (s *Service) RotateDue(ctx context.Context) (int, error) {
	recs, err := s.st.List(ctx, KindKey, "", "", 0)
	if err != nil {
		return 0, fmt.Errorf("rotation scan: %w", err)
	}
	now := s.now()
	n := 0
	var errs []error
	for _, rec := range recs {
		var kr keyRecord
		if err := json.Unmarshal(rec.Value, &kr); err != nil || kr.Deleted != nil || kr.RotationPolicy == nil {
			continue
		}
		vaultName, _, _ := strings.Cut(rec.Key, "/")
		vault, err := s.VaultByName(ctx, vaultName)
		if err != nil {
			continue // deleted vaults don't rotate
		}
		cur, _, err := getVersion(ctx, s.st, rec.Key+"/"+kr.Current)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !rotationDue(kr.RotationPolicy, cur, now) {
			continue
		}
		_, err = s.rotate(ctx, vault, kr.Name, cur.Version)
		switch {
		case err == nil:
			n++
		case errors.Is(err, errRotatedMeanwhile):
		default:
			errs = append(errs, fmt.Errorf("rotate %s: %w", rec.Key, err))
		}
	}
	return n, errors.Join(errs...)
}

func rotationDue(p *RotationPolicy, cur *Version, now time.Time) bool {
	for _, la := range p.LifetimeActions {
		if la.Action != ActionRotate {
			continue
		}
		if la.TimeAfterCreate != "" {
			d, err := ParseDuration(la.TimeAfterCreate)
			if err == nil && !now.Before(d.AddTo(time.Unix(cur.Attributes.Created, 0))) {
				return true
			}
		}
		if la.TimeBeforeExpiry != "" && cur.Attributes.Expires != nil {
			d, err := ParseDuration(la.TimeBeforeExpiry)
			if err == nil && !now.Before(d.SubFrom(time.Unix(*cur.Attributes.Expires, 0))) {
				return true
			}
		}
	}
	return false
}

// RunScheduler runs the key vault's clock-driven work every interval
// until ctx ends: due key rotations (RotateDue) and purges of soft-deleted
// vaults and keys past their scheduled purge date (PurgeDue). report (may
// be nil) hears about failures.
func (s *Service) RunScheduler(ctx context.Context, interval time.Duration, report func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Tick(ctx); err != nil && report != nil {
				report(err)
			}
		}
	}
}

// Tick runs the scheduler's work once at the service clock's now.
func (s *Service) Tick(ctx context.Context) error {
	_, rerr := s.RotateDue(ctx)
	_, _, perr := s.PurgeDue(ctx)
	return errors.Join(rerr, perr)
}
