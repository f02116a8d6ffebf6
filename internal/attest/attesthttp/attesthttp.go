// Package attesthttp serves the attestation instances (package instance; design §6, seed 002)
// over HTTP: MAA's public data plane per instance under BASE/attestation/{instance} —
// `POST attest/SevSnpVm`, `POST attest/TdxVm`, `GET certs`, `GET .well-known/openid-configuration`
// — and cvault's admin routes for instances (Bearer, ARM audience, checked by an Authorizer).
//
// Refused evidence answers 400 with Azure's CloudError envelope, as MAA answers bad evidence
// (MAA's exact codes are unconfirmed, wire §6): code `EvidenceVerificationFailed` (an
// always-check: signature, chain, TCB, report data) or `PolicyEvaluationFailed` (the instance's
// policy), innererror.code the first failed check, and a message naming every failed check
// with what was expected and what was seen. A body that is no attestation request is 400
// `BadRequest`; an unknown instance 404 `NotFound`.
package attesthttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/cvault/cvault/internal/attest/instance"
	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/route"
)

// Authorizer decides whether a principal may perform an action on a scope (internal/authz).
type Authorizer interface {
	Check(ctx context.Context, p *authn.Principal, action, scope string) error
}

// APIVersions are MAA data-plane versions: the sidecar's 2020-10-01, the 2022-08-01 spec and
// every later (preview) date.
var APIVersions = azure.Versions("2018-09-01-preview", "2020-10-01").AndDatesFrom("2020-10-01")

// Authorization actions of the admin routes.
const (
	ActionRead  = "Microsoft.Attestation/attestationProviders/read"
	ActionWrite = "Microsoft.Attestation/attestationProviders/write"
)

// Error codes of refusals.
const (
	CodeEvidence = "EvidenceVerificationFailed"
	CodePolicy   = "PolicyEvaluationFailed"
)

type handlers struct {
	svc       *instance.Service
	az        Authorizer
	scopeRoot string
	governing string
}

// Routes returns the attestation routes. Instances are server-wide, not ARM resources; the
// admin routes check the caller at scope
// {governingScope}/providers/Microsoft.Attestation/attestationProviders/{instance} (the list
// at governingScope), where
// governingScope is the subscription whose role assignments govern instances (`serve` passes
// the bootstrap subscription, whose Owner is the bootstrap admin).
func Routes(svc *instance.Service, az Authorizer, governingScope string) []route.Route {
	governingScope = strings.TrimRight(governingScope, "/")
	h := &handlers{svc: svc, az: az, governing: governingScope, scopeRoot: governingScope + "/providers/Microsoft.Attestation/attestationProviders"}
	pub := func(method, pattern string, versions azure.APIVersions, fn route.HandlerFunc) route.Route {
		return route.Route{Method: method, Pattern: pattern, Auth: route.Public, Service: route.Attestation, APIVersions: versions, Handler: fn}
	}
	admin := func(method, pattern string, fn route.HandlerFunc) route.Route {
		return route.Route{Method: method, Pattern: pattern, Auth: route.Bearer, Service: route.ARM, APIVersions: APIVersions, Handler: fn}
	}
	const inst = "/attestation/{instance}"
	return []route.Route{
		pub("POST", inst+"/attest/SevSnpVm", APIVersions, h.attest(instance.TypeSevSnpVM, svc.AttestSevSnpVM)),
		pub("POST", inst+"/attest/TdxVm", APIVersions, h.attest(instance.TypeTdxVM, svc.AttestTdxVM)),
		pub("GET", inst+"/certs", azure.APIVersions{}, h.certs),
		pub("GET", inst+"/.well-known/openid-configuration", azure.APIVersions{}, h.metadata),
		admin("GET", "/attestation", h.list),
		admin("GET", inst, h.get),
		admin("PUT", inst, h.put),
		admin("POST", inst+"/rotateKey", h.rotate),
	}
}

type tokenResponse struct {
	Token string `json:"token"`
}

func (h *handlers) attest(typ string, fn func(context.Context, string, []byte) (string, error)) route.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		body, err := io.ReadAll(io.LimitReader(r.Body, azure.MaxBody+1))
		if err != nil {
			return azure.Errorf(http.StatusBadRequest, azure.CodeBadRequest, "The request body could not be read.").Wrap(err)
		}
		if len(body) > azure.MaxBody {
			return azure.Errorf(http.StatusRequestEntityTooLarge, azure.CodeRequestTooLarge, "The request body is larger than the limit of %d bytes.", azure.MaxBody)
		}
		tok, err := fn(r.Context(), r.PathValue("instance"), body)
		if err != nil {
			return mapError(err, r.PathValue("instance"))
		}
		azure.WriteJSON(w, http.StatusOK, tokenResponse{Token: tok})
		return nil
	}
}

func (h *handlers) certs(w http.ResponseWriter, r *http.Request) error {
	b, err := h.svc.JWKS(r.Context(), r.PathValue("instance"))
	if err != nil {
		return mapError(err, r.PathValue("instance"))
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, err = w.Write(b)
	return err
}

func (h *handlers) metadata(w http.ResponseWriter, r *http.Request) error {
	md, err := h.svc.Metadata(r.Context(), r.PathValue("instance"))
	if err != nil {
		return mapError(err, r.PathValue("instance"))
	}
	azure.WriteJSON(w, http.StatusOK, md)
	return nil
}

// instanceJSON is an instance on the admin routes.
type instanceJSON struct {
	instance.Instance
	AttestURI string `json:"attestUri"`
}

type instanceList struct {
	Value []instanceJSON `json:"value"`
}

// settingsJSON is the PUT body; absent fields keep their value (create: strict policy, 8 h).
type settingsJSON struct {
	Policy               *instance.Policy `json:"policy"`
	TokenLifetimeSeconds int64            `json:"tokenLifetimeSeconds"`
}

func (h *handlers) render(inst instance.Instance) instanceJSON {
	return instanceJSON{Instance: inst, AttestURI: h.svc.Issuer(inst.Name)}
}

func (h *handlers) authorize(r *http.Request, action, scope string) error {
	p, ok := authn.FromContext(r.Context())
	if !ok {
		return azure.Errorf(http.StatusUnauthorized, azure.CodeAuthenticationFailed, "Authentication failed.")
	}
	if err := h.az.Check(r.Context(), p, action, scope); err != nil {
		var ae *azure.Error
		if errors.As(err, &ae) {
			return ae
		}
		return (&azure.Error{Status: http.StatusForbidden, Code: azure.CodeAuthorizationFailed,
			Message: fmt.Sprintf("The client '%s' with object id '%s' does not have authorization to perform action '%s' over scope '%s' or the scope is invalid.",
				p.ObjectID, p.ObjectID, action, scope)}).Wrap(err)
	}
	return nil
}

func (h *handlers) list(w http.ResponseWriter, r *http.Request) error {
	if err := h.authorize(r, ActionRead, h.governing); err != nil {
		return err
	}
	all, err := h.svc.List(r.Context())
	if err != nil {
		return err
	}
	out := instanceList{Value: make([]instanceJSON, 0, len(all))}
	for _, inst := range all {
		out.Value = append(out.Value, h.render(inst))
	}
	azure.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (h *handlers) get(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("instance")
	if err := h.authorize(r, ActionRead, h.scopeRoot+"/"+name); err != nil {
		return err
	}
	inst, err := h.svc.Get(r.Context(), name)
	if err != nil {
		return mapError(err, name)
	}
	azure.WriteJSON(w, http.StatusOK, h.render(inst))
	return nil
}

func (h *handlers) put(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("instance")
	if err := h.authorize(r, ActionWrite, h.scopeRoot+"/"+name); err != nil {
		return err
	}
	var body settingsJSON
	if err := azure.DecodeJSON(r, 0, azure.CodeBadRequest, true, &body); err != nil {
		return err
	}
	set := instance.Settings{Policy: body.Policy, TokenLifetime: time.Duration(body.TokenLifetimeSeconds) * time.Second}
	status := http.StatusOK
	inst, err := h.svc.Update(r.Context(), name, set)
	if errors.Is(err, instance.ErrNotFound) {
		status = http.StatusCreated
		inst, err = h.svc.Create(r.Context(), name, set)
		if errors.Is(err, instance.ErrExists) { // created concurrently
			status = http.StatusOK
			inst, err = h.svc.Update(r.Context(), name, set)
		}
	}
	if err != nil {
		return mapError(err, name)
	}
	azure.WriteJSON(w, status, h.render(inst))
	return nil
}

func (h *handlers) rotate(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("instance")
	if err := h.authorize(r, ActionWrite, h.scopeRoot+"/"+name); err != nil {
		return err
	}
	inst, err := h.svc.RotateKey(r.Context(), name)
	if err != nil {
		return mapError(err, name)
	}
	azure.WriteJSON(w, http.StatusOK, h.render(inst))
	return nil
}

// mapError turns the service's errors into responses.
func mapError(err error, name string) error {
	var re *instance.RefusedError
	switch {
	case errors.As(err, &re):
		code := CodeEvidence
		if re.Policy {
			code = CodePolicy
		}
		e := azure.Errorf(http.StatusBadRequest, code, "%s", re.Error()).Wrap(err)
		if len(re.Failures) > 0 {
			e.InnerCode = re.Failures[0].Check
		}
		return e
	case errors.Is(err, instance.ErrNotFound):
		return azure.Errorf(http.StatusNotFound, azure.CodeNotFound, "Attestation instance '%s' was not found.", name).Wrap(err)
	case errors.Is(err, instance.ErrMalformed), errors.Is(err, instance.ErrInvalid):
		return azure.Errorf(http.StatusBadRequest, azure.CodeBadRequest, "%s", err.Error()).Wrap(err)
	}
	return err
}
