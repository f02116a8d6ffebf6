package arm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/store"
)

// Operation is a long-running operation's status record, polled through
// …/providers/{ns}/locations/{loc}/operations/{id}.
type Operation struct {
	Subscription string                `json:"subscription"`
	Namespace    string                `json:"namespace"`
	Location     string                `json:"location"`
	ResourceID   string                `json:"resourceId,omitempty"`
	Status       azure.OperationStatus `json:"status"`
}

func opKey(sub, id string) string { return strings.ToLower(sub) + "/" + strings.ToLower(id) }

func newOpID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// StartOperation records a new InProgress operation.
func (s *Service) StartOperation(ctx context.Context, sub, namespace, location, resourceID string) (Operation, error) {
	op := Operation{Subscription: sub, Namespace: namespace, Location: NormalizeLocation(location), ResourceID: resourceID,
		Status: azure.OperationStatus{Name: newOpID(), Status: azure.StatusInProgress, StartTime: s.now().UTC()}}
	if err := s.putOp(ctx, op, store.Absent); err != nil {
		return Operation{}, err
	}
	return op, nil
}

// FinishOperation marks an operation Succeeded (opErr nil) or Failed.
func (s *Service) FinishOperation(ctx context.Context, op Operation, opErr *azure.OpError, properties any) (Operation, error) {
	end := s.now().UTC()
	op.Status.EndTime = &end
	op.Status.Properties = properties
	if opErr != nil {
		op.Status.Status, op.Status.Error = azure.StatusFailed, opErr
	} else {
		op.Status.Status = azure.StatusSucceeded
	}
	return op, s.putOp(ctx, op, store.Any)
}

// UpdateOperation stores progress of an operation still in progress.
func (s *Service) UpdateOperation(ctx context.Context, op Operation) error {
	return s.putOp(ctx, op, store.Any)
}

func (s *Service) putOp(ctx context.Context, op Operation, ifVersion int64) error {
	b, err := json.Marshal(op)
	if err != nil {
		return fmt.Errorf("arm: operation: %w", err)
	}
	if _, err := store.Put(ctx, s.store, KindOperation, opKey(op.Subscription, op.Status.Name), b, ifVersion); err != nil {
		return fmt.Errorf("arm: operation %s: %w", op.Status.Name, err)
	}
	return nil
}

// Operation returns an operation of a subscription.
func (s *Service) Operation(ctx context.Context, sub, id string) (Operation, error) {
	rec, err := s.store.Get(ctx, KindOperation, opKey(sub, id))
	if errors.Is(err, store.ErrNotFound) {
		return Operation{}, fmt.Errorf("%w: operation %s", ErrNotFound, id)
	}
	if err != nil {
		return Operation{}, fmt.Errorf("arm: operation %s: %w", id, err)
	}
	var op Operation
	if err := json.Unmarshal(rec.Value, &op); err != nil {
		return Operation{}, fmt.Errorf("arm: operation %s: %w", id, err)
	}
	return op, nil
}

// StatusURL is the absolute Azure-AsyncOperation URL of op.
func (op Operation) StatusURL(base, apiVersion string) string {
	return fmt.Sprintf("%s/subscriptions/%s/providers/%s/locations/%s/operations/%s?api-version=%s",
		strings.TrimRight(base, "/"), op.Subscription, op.Namespace, op.Location, op.Status.Name, url.QueryEscape(apiVersion))
}

// ResultURL is the absolute Location URL of op (200/204 when done, 202 before).
func (op Operation) ResultURL(base, apiVersion string) string {
	return fmt.Sprintf("%s/subscriptions/%s/providers/%s/locations/%s/operationResults/%s?api-version=%s",
		strings.TrimRight(base, "/"), op.Subscription, op.Namespace, op.Location, op.Status.Name, url.QueryEscape(apiVersion))
}
