package compute

// Key rotation of a disk encryption set (seed 004). Saving a DES with a new
// key URL (PUT/PATCH) validates the key as at creation, applies seed 004's
// stop-all rule and the ephemeral-disk limitation, and then — in the same
// store update as the DES — records a job (internal/jobs). A runner on any
// server leases the job and re-wraps each disk's data key: unwrap with the
// disk's recorded key version, wrap with the new one, both through the
// vault over HTTPS as the DES's identity; the new wrap is written ahead
// beside the old one (diskdata.PrepareRewrapFrom), verified by unwrapping
// it, and switched in one update (CommitRewrapWith). Every disk is thus on
// its old or its new key at every instant, and a re-run skips the disks
// already on the target and commits those with a pending wrap.
//
// Where the state shows: the ARM operation's status carries
// properties {done,total}; the DES keeps activeKey on the old key until
// every disk is on the new one (seed 004: a partial rotation leaves the
// DES referring to the old key), previousKeys lists the key versions other
// than the target still wrapping some disk, and properties.keyRotation
// (cvault's extension) holds the target, the counts and the names of the
// disks still on previous keys. Saving the DES again (or `cvault des rotate
// --resume`, which saves the target again) starts a new job that finishes
// the work idempotently; a job whose server died is taken over by another
// server once its lease expires.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cvault/cvault/internal/arm"
	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/compute/diskcrypt"
	"github.com/cvault/cvault/internal/jobs"
	"github.com/cvault/cvault/internal/store"
)

// JobTypeRotation is the job type of DES key rotations.
const JobTypeRotation = "des-rotation"

// Steps of one disk's re-wrap, as Config.RotationHook sees them.
const (
	StepBeforeUnwrap = "before-unwrap"
	StepAfterWrap    = "after-wrap"
	StepAfterCommit  = "after-commit"
)

// CodeRotationInProgress refuses a second rotation of one DES.
const CodeRotationInProgress = "RotationInProgress"

// RotationProgress is the operation status's properties during a rotation.
type RotationProgress struct {
	Done  int `json:"done"`
	Total int `json:"total"`
}

// rotationJob is a rotation job's data.
type rotationJob struct {
	DES          string `json:"des"`
	Target       string `json:"target"`
	Subscription string `json:"subscription"`
	Operation    string `json:"operation"`
}

func rotationJobID(desID string) string { return JobTypeRotation + ":" + resKey(desID) }

// rotationStart is a rotation being recorded.
type rotationStart struct {
	op  arm.Operation
	job rotationJob
}

func sameKeyURL(a, b string) bool {
	ra, ok1 := parseKeyURL(a)
	rb, ok2 := parseKeyURL(b)
	return ok1 && ok2 && sameRef(ra, rb)
}

func sameRef(a, b keyRef) bool {
	return a.vault == b.vault && strings.EqualFold(a.name, b.name) && a.version == b.version
}

// innerKeyID is the customer part of a disk's wrapping key ID.
func innerKeyID(keyID string) string {
	if _, in, ok := diskcrypt.SplitDoubleKeyID(keyID); ok {
		return in
	}
	return keyID
}

// onKey reports that keyID is (or wraps inside a double wrap) target.
func onKey(keyID string, target keyRef) bool {
	r, ok := parseKeyURL(innerKeyID(keyID))
	return ok && sameRef(r, target)
}

// vmUse is a VM that uses a DES, and how.
type vmUse struct {
	rec       vmRecord
	ephemeral bool // its OS disk is ephemeral and encrypted by the set
}

// vmsUsingDES finds the VMs of the DES's subscription that use it through
// a managed disk (OS or data, encryption or secureVMDiskEncryptionSetId) or
// an ephemeral OS disk's encryption settings, reading through r (so a
// transaction sees its own snapshot).
func (s *Service) vmsUsingDES(ctx context.Context, r store.Reader, desID string) ([]vmUse, error) {
	rid, err := azure.ParseResourceID(desID)
	if err != nil {
		return nil, err
	}
	recs, err := listJSON[vmRecord](ctx, r, KindVM, scopePrefix(rid.Subscription, ""))
	if err != nil {
		return nil, err
	}
	is := func(sr *SubResource) bool {
		return sr != nil && strings.EqualFold(strings.TrimRight(sr.ID, "/"), strings.TrimRight(desID, "/"))
	}
	var out []vmUse
	for _, rec := range recs {
		u := vmUse{rec: rec}
		uses := false
		if sp := rec.VM.Properties.StorageProfile; sp != nil && sp.OSDisk != nil {
			osd := sp.OSDisk
			eph := osd.DiffDiskSettings != nil && strings.EqualFold(osd.DiffDiskSettings.Option, "Local")
			if md := osd.ManagedDisk; eph && md != nil && (is(md.DiskEncryptionSet) || md.SecurityProfile != nil && is(md.SecurityProfile.DiskEncryptionSet)) {
				u.ephemeral, uses = true, true
			}
		}
		for _, dk := range rec.Disks {
			var d Disk
			if _, err := getJSON(ctx, r, KindDisk, dk, &d); err != nil {
				if errors.Is(err, ErrNotFound) {
					continue
				}
				return nil, err
			}
			if strings.EqualFold(diskDESID(&d), desID) {
				uses = true
			}
		}
		if uses {
			out = append(out, u)
		}
	}
	return out, nil
}

// checkRotationAllowed refuses a key change that must not start: a
// rotation of the set already running, a VM with an ephemeral OS disk on
// the set, or (confidential sets, seed 004) any VM on the set not stopped.
// The job check runs outside transactions only (it may end a dead job).
func (s *Service) checkRotationAllowed(ctx context.Context, r store.Reader, des *DiskEncryptionSet, checkJob bool) error {
	var cur DiskEncryptionSet
	if _, err := getJSON(ctx, r, KindDES, resKey(des.ID), &cur); err == nil && checkJob {
		if kr := cur.Properties.KeyRotation; kr != nil && kr.State == RotationInProgress {
			if err := s.checkJobIdle(ctx, des.ID); err != nil {
				return err
			}
		}
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	vms, err := s.vmsUsingDES(ctx, r, des.ID)
	if err != nil {
		return err
	}
	var running, ephemeral []string
	for _, u := range vms {
		if u.ephemeral {
			ephemeral = append(ephemeral, u.rec.VM.Name)
		}
		if u.rec.PowerState == PowerRunning {
			running = append(running, u.rec.VM.Name)
		}
	}
	sort.Strings(running)
	sort.Strings(ephemeral)
	if len(ephemeral) > 0 {
		return conflict("OperationNotAllowed", "The key of disk encryption set %s cannot be rotated: key rotation is not supported for ephemeral OS disks, and VM(s) %s use the set with one. Use a separate disk encryption set for VMs with ephemeral OS disks, or delete those VMs before rotating the key.",
			des.Name, strings.Join(ephemeral, ", "))
	}
	if des.Properties.EncryptionType == ConfidentialVMEncryptedWithCustomerKey && len(running) > 0 {
		return conflict("OperationNotAllowed", "The key of disk encryption set %s cannot change while confidential VM(s) %s are running: stop (deallocate) every VM using the set first. No VM received the new key.",
			des.Name, strings.Join(running, ", "))
	}
	return nil
}

// checkJobIdle refuses while the DES's rotation job is pending or held by
// a live lease; a job whose server died (lease expired) is ended here so a
// new one can replace it.
func (s *Service) checkJobIdle(ctx context.Context, desID string) error {
	id := rotationJobID(desID)
	j, err := s.cfg.Jobs.Get(ctx, id)
	if errors.Is(err, jobs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !j.Active() {
		return nil
	}
	busy := conflict(CodeRotationInProgress, "A key rotation of disk encryption set %s is in progress (%d of %d disks); retry when it has finished.", lastSegment(desID), j.Done, j.Total)
	if j.State == jobs.StatePending || s.now().Before(j.LeaseUntil) {
		return busy
	}
	l, err := s.cfg.Jobs.AcquireID(ctx, id)
	if err != nil {
		return busy
	}
	return l.Finish(ctx, errors.New("superseded: the disk encryption set was saved again after its server stopped"))
}

// prepareRotation turns des (carrying the new key as activeKey) into the
// stored shape of a rotation in progress and starts its ARM operation.
func (s *Service) prepareRotation(ctx context.Context, des *DiskEncryptionSet, old DiskEncryptionSet) (*rotationStart, error) {
	rid, err := azure.ParseResourceID(des.ID)
	if err != nil {
		return nil, err
	}
	target := *des.Properties.ActiveKey
	if old.Properties.ActiveKey != nil {
		des.Properties.ActiveKey = old.Properties.ActiveKey // switched when every disk is on the target
	}
	total := 0
	if err := s.eachDiskOfDES(ctx, des.ID, func(Disk) error { total++; return nil }); err != nil {
		return nil, err
	}
	op, err := s.cfg.ARM.StartOperation(ctx, rid.Subscription, Namespace, des.Location, des.ID)
	if err != nil {
		return nil, err
	}
	op.Status.Properties = RotationProgress{Total: total}
	des.Properties.ProvisioningState = StateUpdating
	des.Properties.KeyRotation = &KeyRotation{State: RotationInProgress, TargetKey: target, OperationID: op.Status.Name,
		DisksTotal: total, StartTime: s.now()}
	if des.Properties.ActiveKey != nil && !sameKeyURL(des.Properties.ActiveKey.KeyURL, target.KeyURL) {
		des.Properties.PreviousKeys = []KeyForDES{*des.Properties.ActiveKey}
	}
	return &rotationStart{op: op, job: rotationJob{DES: des.ID, Target: target.KeyURL, Subscription: rid.Subscription, Operation: op.Status.Name}}, nil
}

// putRotation records the job beside the DES in tx, after checking again
// (in the transaction) what checkRotationAllowed checked.
func (s *Service) putRotation(ctx context.Context, tx store.Tx, des *DiskEncryptionSet, rot *rotationStart) error {
	if err := s.checkRotationAllowed(ctx, tx, des, false); err != nil {
		return err
	}
	_, err := s.cfg.Jobs.Put(ctx, tx, rotationJobID(des.ID), JobTypeRotation, rot.job, des.Properties.KeyRotation.DisksTotal)
	if errors.Is(err, jobs.ErrActive) {
		return conflict(CodeRotationInProgress, "A key rotation of disk encryption set %s is in progress; retry when it has finished.", des.Name)
	}
	return err
}

// abandonOperation ends the operation of a rotation that was not recorded.
func (s *Service) abandonOperation(ctx context.Context, rot *rotationStart, cause error) {
	code, msg := "Conflict", "The rotation was not started."
	var ae *azure.Error
	if errors.As(cause, &ae) {
		code, msg = ae.Code, ae.Message
	}
	_, _ = s.cfg.ARM.FinishOperation(context.WithoutCancel(ctx), rot.op, &azure.OpError{Code: code, Message: msg}, nil)
}

// Kick wakes this server's rotation runner.
func (s *Service) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// RunRotations runs rotation jobs until ctx is done, leasing them from the
// store: every poll interval, and at once when this server starts one.
// Jobs whose server died are taken over once their lease has expired.
func (s *Service) RunRotations(ctx context.Context, poll time.Duration, logf func(error)) {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		for ctx.Err() == nil {
			l, err := s.cfg.Jobs.Acquire(ctx, JobTypeRotation)
			if err != nil {
				if ctx.Err() == nil && logf != nil {
					logf(err)
				}
				break
			}
			if l == nil {
				break
			}
			if err := s.RunRotationJob(ctx, l); err != nil && logf != nil && ctx.Err() == nil {
				logf(err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}

// RunRotationJob runs one leased rotation to its end. It returns the
// rotation's failure (also recorded on the DES and its operation), or nil
// when the lease was lost or ctx ended first (the job stays for another
// run).
func (s *Service) RunRotationJob(ctx context.Context, l *jobs.Lease) error {
	var job rotationJob
	if err := json.Unmarshal(l.Job().Data, &job); err != nil {
		return l.Finish(ctx, fmt.Errorf("compute: rotation job data: %w", err))
	}
	op, err := s.cfg.ARM.Operation(ctx, job.Subscription, job.Operation)
	if err != nil {
		return err
	}
	kctx, stop := l.KeepAlive(ctx)
	defer stop()
	workErr := s.rewrapAll(kctx, l, &op, job)
	if ctx.Err() != nil || errors.Is(context.Cause(kctx), jobs.ErrLeaseLost) || errors.Is(workErr, jobs.ErrLeaseLost) {
		return nil // another run continues from the disks' recorded state
	}
	return s.finishRotation(ctx, l, op, job, workErr)
}

var errSuperseded = errors.New("compute: the rotation was superseded by a later save of the disk encryption set")

// rewrapAll moves every disk of the set to the target key.
func (s *Service) rewrapAll(ctx context.Context, l *jobs.Lease, op *arm.Operation, job rotationJob) error {
	des, err := s.GetDES(ctx, job.DES)
	if err != nil {
		return err
	}
	if kr := des.Properties.KeyRotation; kr == nil || kr.OperationID != job.Operation {
		return errSuperseded
	}
	target, ok := parseKeyURL(job.Target)
	if !ok {
		return fmt.Errorf("compute: rotation target %q is not a versioned key URL", job.Target)
	}
	p, err := s.desPrincipal(ctx, &des)
	if err != nil {
		return err
	}
	// The rotation's own wrapper unwraps confidential disks too (guestOnly
	// refuses reads, not this): the DEK exists only in this process's
	// memory for the re-wrap, while every VM on the set is stopped.
	cw := &customerWrapper{k: s.keys, p: p, ref: target}
	var done, total atomic.Int64
	total.Store(int64(l.Job().Total))
	// Progress is flushed a few times a second, not per disk.
	flushed := make(chan struct{})
	var flushMu sync.Mutex
	flush := func() error {
		flushMu.Lock()
		defer flushMu.Unlock()
		n := int(done.Load())
		if err := l.Update(ctx, func(j *jobs.Job) error { j.Done = n; return nil }); err != nil {
			return err
		}
		op.Status.Properties = RotationProgress{Done: n, Total: max(int(total.Load()), n)}
		return s.cfg.ARM.UpdateOperation(ctx, *op)
	}
	fctx, stopFlush := context.WithCancel(ctx)
	go func() {
		defer close(flushed)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		last := int64(-1)
		for {
			select {
			case <-fctx.Done():
				return
			case <-t.C:
				if n := done.Load(); n != last {
					last = n
					_ = flush()
				}
			}
		}
	}()
	defer func() { stopFlush(); <-flushed }()
	// Disks created during the run are wrapped with the old key: passes
	// repeat until one finds nothing left to move.
	for pass := 0; pass < 3; pass++ {
		moved := atomic.Int64{}
		done.Store(0)
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(s.cfg.RotationWorkers)
		err := s.eachDiskOfDES(gctx, des.ID, func(d Disk) error {
			if gctx.Err() != nil {
				return gctx.Err()
			}
			g.Go(func() error {
				m, err := s.rewrapDisk(gctx, &d, cw, target)
				if err != nil {
					return err
				}
				if m {
					moved.Add(1)
				}
				done.Add(1)
				return nil
			})
			return nil
		})
		if werr := g.Wait(); werr != nil {
			return werr
		}
		if err != nil {
			return err
		}
		total.Store(done.Load())
		if moved.Load() == 0 {
			break
		}
	}
	return flush()
}

// rewrapDisk moves one disk to target; moved reports that it had work.
func (s *Service) rewrapDisk(ctx context.Context, d *Disk, cw *customerWrapper, target keyRef) (moved bool, err error) {
	id := d.Properties.UniqueID
	info, err := s.cfg.DiskData.Get(ctx, id)
	if err != nil {
		return false, fmt.Errorf("disk %s: %w", d.Name, err)
	}
	if onKey(info.KeyID, target) {
		return false, nil
	}
	var w diskcrypt.Wrapper = cw
	if d.Properties.Encryption != nil && d.Properties.Encryption.Type == EncryptionAtRestWithPlatformAndCustomerKeys {
		w = diskcrypt.Double(s.cfg.DiskData.Platform(), cw)
	}
	hook := func(step string) {
		if s.cfg.RotationHook != nil {
			s.cfg.RotationHook(step)
		}
	}
	// A wrap written ahead by an earlier run is verified and committed.
	if info.PendingKeyID == "" || !onKey(info.PendingKeyID, target) {
		hook(StepBeforeUnwrap)
		if _, err := s.cfg.DiskData.PrepareRewrapFrom(ctx, id, w, w); err != nil {
			return false, diskErr(d, err)
		}
		hook(StepAfterWrap)
	}
	if err := s.cfg.DiskData.CommitRewrapWith(ctx, id, w); err != nil {
		return false, diskErr(d, err)
	}
	hook(StepAfterCommit)
	return true, nil
}

func diskErr(d *Disk, err error) error {
	var ke *KeyError
	if errors.As(err, &ke) {
		return &KeyError{Code: ke.Code, Message: fmt.Sprintf("Disk %s: %s", d.Name, ke.Message), Err: err}
	}
	return fmt.Errorf("disk %s: %w", d.Name, err)
}

// eachDiskOfDES streams the disks that use desID, a page at a time, so a
// rotation's memory does not grow with the number of disks.
func (s *Service) eachDiskOfDES(ctx context.Context, desID string, fn func(Disk) error) error {
	rid, err := azure.ParseResourceID(desID)
	if err != nil {
		return err
	}
	prefix := scopePrefix(rid.Subscription, "")
	after := ""
	for {
		recs, err := s.cfg.Store.List(ctx, KindDisk, prefix, after, 256)
		if err != nil {
			return fmt.Errorf("compute: list disks: %w", err)
		}
		for _, rec := range recs {
			var d Disk
			if err := json.Unmarshal(rec.Value, &d); err != nil {
				return fmt.Errorf("compute: decode disk %s: %w", rec.Key, err)
			}
			if strings.EqualFold(diskDESID(&d), desID) {
				if err := fn(d); err != nil {
					return err
				}
			}
		}
		if len(recs) < 256 {
			return nil
		}
		after = recs[len(recs)-1].Key
	}
}

// keyCensus counts the set's disks on target and lists the other keys in
// use and (up to 20) the disks on them.
func (s *Service) keyCensus(ctx context.Context, desID string, target keyRef) (total, onTarget int, others []KeyForDES, names []string, err error) {
	seen := map[string]bool{}
	err = s.eachDiskOfDES(ctx, desID, func(d Disk) error {
		total++
		info, err := s.cfg.DiskData.Get(ctx, d.Properties.UniqueID)
		if err != nil {
			return err
		}
		if onKey(info.KeyID, target) {
			onTarget++
			return nil
		}
		k := innerKeyID(info.KeyID)
		if !seen[k] {
			seen[k] = true
			others = append(others, KeyForDES{KeyURL: k})
		}
		if len(names) < 20 {
			names = append(names, d.Name)
		}
		return nil
	})
	sort.Slice(others, func(i, j int) bool { return others[i].KeyURL < others[j].KeyURL })
	return total, onTarget, others, names, err
}

// finishRotation records the outcome on the DES, the operation and the job.
func (s *Service) finishRotation(ctx context.Context, l *jobs.Lease, op arm.Operation, job rotationJob, workErr error) error {
	if errors.Is(workErr, errSuperseded) {
		_, _ = s.cfg.ARM.FinishOperation(ctx, op, &azure.OpError{Code: "Canceled", Message: workErr.Error()}, nil)
		return l.Finish(ctx, workErr)
	}
	target, _ := parseKeyURL(job.Target)
	total, onTarget, others, names, cerr := s.keyCensus(ctx, job.DES, target)
	if workErr == nil && cerr != nil {
		workErr = cerr
	}
	if workErr == nil && onTarget < total {
		workErr = fmt.Errorf("compute: %d of %d disks are not on the new key", total-onTarget, total)
	}
	var opErr *azure.OpError
	if workErr != nil {
		opErr = &azure.OpError{Code: "KeyRotationFailed", Message: "The key rotation stopped part-way; save the disk encryption set again to complete it."}
		var ke *KeyError
		if errors.As(workErr, &ke) {
			opErr = &azure.OpError{Code: ke.Code, Message: ke.Message + " The rotation stopped part-way (each disk is on its previous or its new key); save the disk encryption set again to complete it."}
		}
	}
	now := s.now()
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		var des DiskEncryptionSet
		v, err := getJSON(ctx, tx, KindDES, resKey(job.DES), &des)
		if err != nil {
			return err
		}
		kr := des.Properties.KeyRotation
		if kr == nil || kr.OperationID != job.Operation {
			return nil // superseded meanwhile
		}
		kr.DisksTotal, kr.DisksRotated, kr.EndTime = total, onTarget, &now
		if opErr == nil {
			tk := kr.TargetKey
			des.Properties.ActiveKey = &tk
			des.Properties.PreviousKeys = []KeyForDES{}
			des.Properties.LastKeyRotationTimestamp = &now
			des.Properties.ProvisioningState = StateSucceeded
			des.Properties.AutoKeyRotationError = nil
			kr.State, kr.DisksOnPreviousKeys, kr.Error = RotationSucceeded, nil, nil
		} else {
			des.Properties.PreviousKeys = others
			if des.Properties.PreviousKeys == nil {
				des.Properties.PreviousKeys = []KeyForDES{}
			}
			des.Properties.ProvisioningState = "Failed"
			kr.State, kr.DisksOnPreviousKeys = RotationFailed, names
			kr.Error = &OpError{Code: opErr.Code, Message: opErr.Message}
		}
		return putJSON(ctx, tx, KindDES, resKey(job.DES), des, v)
	})
	if err != nil {
		return err
	}
	if _, err := s.cfg.ARM.FinishOperation(ctx, op, opErr, RotationProgress{Done: onTarget, Total: total}); err != nil {
		return err
	}
	if err := l.Finish(ctx, workErr); err != nil {
		return err
	}
	return workErr
}

// checkNotRotating refuses to start a VM whose disks' DES is rotating.
func (s *Service) checkNotRotating(ctx context.Context, r store.Reader, vmName string, disks []string) error {
	seen := map[string]bool{}
	for _, dk := range disks {
		var d Disk
		if _, err := getJSON(ctx, r, KindDisk, dk, &d); err != nil {
			if errors.Is(err, ErrNotFound) {
				continue
			}
			return err
		}
		id := resKey(diskDESID(&d))
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		var des DiskEncryptionSet
		if _, err := getJSON(ctx, r, KindDES, id, &des); err != nil {
			if errors.Is(err, ErrNotFound) {
				continue
			}
			return err
		}
		if kr := des.Properties.KeyRotation; kr != nil && kr.State == RotationInProgress {
			return conflict("OperationNotAllowed", "VM %s cannot start while the key of its disk encryption set %s is being rotated; start it once the rotation has finished.", vmName, des.Name)
		}
	}
	return nil
}

// AutoRotate starts a rotation to the latest key version for each DES with
// rotationToLatestKeyVersionEnabled whose key has a newer version (Azure
// moves such sets within an hour). Confidential sets never have the flag.
func (s *Service) AutoRotate(ctx context.Context) error {
	all, err := listJSON[DiskEncryptionSet](ctx, s.cfg.Store, KindDES, "")
	if err != nil {
		return err
	}
	var errs []error
	for _, des := range all {
		p := des.Properties
		if p.RotationToLatestKeyVersionEnabled == nil || !*p.RotationToLatestKeyVersionEnabled || p.ConfidentialRotation() || p.ActiveKey == nil {
			continue
		}
		if kr := p.KeyRotation; kr != nil && kr.State == RotationInProgress {
			continue
		}
		if p.AutoKeyRotationError != nil {
			continue // Azure: not attempted until the error is fixed (a save clears it)
		}
		if err := s.autoRotateOne(ctx, des); err != nil {
			errs = append(errs, fmt.Errorf("compute: auto-rotate %s: %w", des.Name, err))
			if rerr := s.recordAutoRotationError(ctx, des.ID, err); rerr != nil {
				errs = append(errs, rerr)
			}
		}
	}
	return errors.Join(errs...)
}

// recordAutoRotationError sets autoKeyRotationError on the set, as Azure
// reports a failed automatic rotation: the key error's code and message, or
// the refusal's (stop-all, ephemeral disks, a rotation in progress).
func (s *Service) recordAutoRotationError(ctx context.Context, desID string, cause error) error {
	e := &OpError{Code: "InternalError", Message: "The automatic rotation to the latest key version failed."}
	var ke *KeyError
	var ae *azure.Error
	switch {
	case errors.As(cause, &ke):
		e = &OpError{Code: ke.Code, Message: ke.Message}
	case errors.As(cause, &ae):
		e = &OpError{Code: ae.Code, Message: ae.Message}
	}
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		var des DiskEncryptionSet
		v, err := getJSON(ctx, tx, KindDES, resKey(desID), &des)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		des.Properties.AutoKeyRotationError = e
		return putJSON(ctx, tx, KindDES, resKey(desID), des, v)
	})
	if err != nil {
		return fmt.Errorf("compute: record autoKeyRotationError: %w", err)
	}
	return nil
}

func (s *Service) autoRotateOne(ctx context.Context, des DiskEncryptionSet) error {
	ref, ok := parseKeyURL(des.Properties.ActiveKey.KeyURL)
	if !ok {
		return nil
	}
	pr, err := s.desPrincipal(ctx, &des)
	if err != nil {
		return err
	}
	c, err := s.keys.client(pr, ref.vault)
	if err != nil {
		return err
	}
	latest, err := c.GetKey(ctx, ref.name, "", nil)
	if err != nil {
		return classify(err, ref, "get")
	}
	if latest.Key == nil || latest.Key.KID == nil {
		return nil
	}
	lref, ok := parseKeyURL(string(*latest.Key.KID))
	if !ok || sameRef(lref, ref) {
		return nil
	}
	if kr := des.Properties.KeyRotation; kr != nil && kr.State == RotationFailed && sameRef(lref, mustRef(kr.TargetKey.KeyURL)) && s.now().Sub(kr.StartTime) < time.Hour {
		return nil // a failed automatic rotation is retried hourly, not at every pass
	}
	rid, err := azure.ParseResourceID(des.ID)
	if err != nil {
		return err
	}
	next := des
	next.Properties.ActiveKey = &KeyForDES{KeyURL: string(*latest.Key.KID), SourceVault: des.Properties.ActiveKey.SourceVault}
	_, err = s.PatchDES(ctx, rid, DESUpdate{Properties: &struct {
		EncryptionType                    *string    `json:"encryptionType,omitempty"`
		ActiveKey                         *KeyForDES `json:"activeKey,omitempty"`
		RotationToLatestKeyVersionEnabled *bool      `json:"rotationToLatestKeyVersionEnabled,omitempty"`
		FederatedClientID                 *string    `json:"federatedClientId,omitempty"`
	}{ActiveKey: next.Properties.ActiveKey}})
	return err
}

func mustRef(u string) keyRef { r, _ := parseKeyURL(u); return r }

// RunAutoRotation runs AutoRotate every interval until ctx is done.
func (s *Service) RunAutoRotation(ctx context.Context, every time.Duration, logf func(error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.AutoRotate(ctx); err != nil && logf != nil && ctx.Err() == nil {
				logf(err)
			}
		}
	}
}

// VerifyDisks opens every data key of the set's disks under the key
// version its disk records (through the vault, as the DES's identity) and
// checks it against the disk's check value; it returns how many disks are
// on each key. An operator's integrity check after a rotation: the keys
// stay in memory only for the check.
func (s *Service) VerifyDisks(ctx context.Context, desID string) (map[string]int, error) {
	des, err := s.GetDES(ctx, desID)
	if err != nil {
		return nil, err
	}
	p, err := s.desPrincipal(ctx, &des)
	if err != nil {
		return nil, err
	}
	ref, _ := parseKeyURL(des.Properties.ActiveKey.KeyURL)
	cw := &customerWrapper{k: s.keys, p: p, ref: ref}
	out := map[string]int{}
	err = s.eachDiskOfDES(ctx, des.ID, func(d Disk) error {
		var w diskcrypt.Wrapper = cw
		if d.Properties.Encryption != nil && d.Properties.Encryption.Type == EncryptionAtRestWithPlatformAndCustomerKeys {
			w = diskcrypt.Double(s.cfg.DiskData.Platform(), cw)
		}
		keyID, err := s.cfg.DiskData.VerifyKey(ctx, d.Properties.UniqueID, w)
		if err != nil {
			return diskErr(&d, err)
		}
		out[innerKeyID(keyID)]++
		return nil
	})
	return out, err
}
