package release

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cvault/cvault/internal/store"
)

// Decisions in the audit log.
const (
	DecisionAllowed = "allowed"
	DecisionRefused = "refused"
)

// AuditEntry is one release attempt. It never holds key material or the
// token itself, only the claims that identify the attested VM.
type AuditEntry struct {
	ID      string    `json:"id"`
	Time    time.Time `json:"time"`
	Vault   string    `json:"vault"`
	Key     string    `json:"key"`
	Version string    `json:"version,omitempty"`
	Caller  Caller    `json:"caller"`
	// Attestation claims (empty when the token did not parse).
	Issuer          string `json:"issuer,omitempty"`
	AttestationType string `json:"attestationType,omitempty"`
	ComplianceState string `json:"complianceStatus,omitempty"`
	Measurement     string `json:"measurement,omitempty"`
	ReportID        string `json:"reportId,omitempty"`
	JTI             string `json:"jti,omitempty"`
	Simulated       *bool  `json:"simulated,omitempty"`
	Decision        string `json:"decision"`
	Reason          string `json:"reason"`
}

func (e *AuditEntry) fromToken(t *Token) {
	str := func(name string) string { s, _ := t.Claims[name].(string); return s }
	e.Issuer, e.JTI = t.Issuer, t.JTI
	e.AttestationType = str("x-ms-attestation-type")
	e.ComplianceState = str("x-ms-compliance-status")
	e.Measurement = str("x-ms-sevsnpvm-launchmeasurement")
	e.ReportID = str("x-ms-sevsnpvm-reportid")
	if e.Measurement == "" {
		e.Measurement = str("tdx_mrtd")
	}
	if b, ok := t.Claims["x-cvault-simulated"].(bool); ok {
		e.Simulated = &b
	}
}

func auditPrefix(vault, key string) string {
	return strings.ToLower(vault) + "/" + strings.ToLower(key) + "/"
}

// newAuditKey orders entries by time within a key; the random suffix keeps
// two servers' entries of the same nanosecond apart.
func (s *Service) newAuditKey(e *AuditEntry) (string, error) {
	var r [6]byte
	if _, err := io.ReadFull(s.cfg.Rand, r[:]); err != nil {
		return "", fmt.Errorf("release: audit id: %w", err)
	}
	e.ID = fmt.Sprintf("%020d-%s", e.Time.UnixNano(), hex.EncodeToString(r[:]))
	return auditPrefix(e.Vault, e.Key) + e.ID, nil
}

// Record appends an audit entry (the HTTP layer records authorization
// refusals with it; Release records its own outcomes).
func (s *Service) Record(ctx context.Context, e AuditEntry) error {
	return s.commit(ctx, e, false, nil)
}

// commit writes the audit entry and, for a single-use key, the token's jti,
// in one transaction: a replayed token fails the whole write.
func (s *Service) commit(ctx context.Context, e AuditEntry, singleUse bool, tok *Token) error {
	if e.Time.IsZero() {
		e.Time = s.cfg.Now().UTC()
	}
	key, err := s.newAuditKey(&e)
	if err != nil {
		return err
	}
	value, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("release: audit entry: %w", err)
	}
	var jtiKey string
	var jtiValue []byte
	if singleUse {
		sum := sha256.Sum256([]byte(tok.Issuer + "|" + tok.JTI))
		jtiKey = auditPrefix(e.Vault, e.Key) + hex.EncodeToString(sum[:])
		jtiValue, _ = json.Marshal(struct {
			Used    time.Time `json:"used"`
			Expires time.Time `json:"expires"`
		}{e.Time, tok.Expires})
	}
	err = s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		if singleUse {
			if _, err := tx.Put(ctx, KindJTI, jtiKey, jtiValue, store.Absent); err != nil {
				return err
			}
		}
		_, err := tx.Put(ctx, KindAudit, key, value, store.Absent)
		return err
	})
	if singleUse && errors.Is(err, store.ErrConflict) {
		// Release records the refusal.
		return errf(ErrReplay, "Target environment attestation statement cannot be verified: the key is single-use (tag %s) and this attestation token (jti %s) already released it.", TagSingleUse, tok.JTI)
	}
	if err != nil {
		return fmt.Errorf("release: audit log: %w", err)
	}
	return nil
}

// Audit lists a key's release attempts in time order, at most limit (≤ 0:
// all) after the entry with id after ("" = from the start).
func (s *Service) Audit(ctx context.Context, vault, key, after string, limit int) ([]AuditEntry, error) {
	p := auditPrefix(vault, key)
	if after != "" {
		after = p + after
	}
	recs, err := s.cfg.Store.List(ctx, KindAudit, p, after, limit)
	if err != nil {
		return nil, fmt.Errorf("release: audit log: %w", err)
	}
	out := make([]AuditEntry, 0, len(recs))
	for _, r := range recs {
		var e AuditEntry
		if err := json.Unmarshal(r.Value, &e); err != nil {
			return nil, fmt.Errorf("release: audit entry %s: %w", r.Key, err)
		}
		out = append(out, e)
	}
	return out, nil
}
