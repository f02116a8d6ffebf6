// Package diskhttp serves a managed disk's signed URL (beginGetAccess) as
// the page-blob subset that azblob's pageblob.Client uses on it: GET/HEAD
// with Range or x-ms-range (GetProperties, DownloadStream, DownloadBuffer)
// and PUT ?comp=page with x-ms-page-write update|clear (UploadPages,
// ClearPages). The signature in the URL is the credential (route.Secret),
// and failures answer in Azure Storage's XML error shape
// <Error><Code>…</Code><Message>…</Message></Error>, with x-ms-error-code.
// It serves the data in/out step of seed 003.
package diskhttp

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cvault/cvault/internal/compute/diskcrypt"
	"github.com/cvault/cvault/internal/compute/diskdata"
	"github.com/cvault/cvault/internal/route"
)

// MaxPutPage is the most one Put Page may carry (Azure's 4 MiB).
const MaxPutPage = 4 << 20

// chunk is how much a GET decrypts before writing it out.
const chunk = 1 << 20

// Routes returns the data-path routes.
func Routes(svc *diskdata.Service) []route.Route {
	h := handler{svc: svc}
	return []route.Route{
		{Method: http.MethodGet, Pattern: "/disks-data/{disk}", Auth: route.Secret, Service: route.Disk, Handler: storage(h.get)},
		{Method: http.MethodPut, Pattern: "/disks-data/{disk}", Auth: route.Secret, Service: route.Disk, Handler: storage(h.put)},
	}
}

type handler struct{ svc *diskdata.Service }

// get serves GET (DownloadStream) and HEAD (GetProperties; the server
// routes HEAD to GET).
func (h handler) get(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	id := r.PathValue("disk")
	route.AddLogAttrs(ctx, slog.String("disk", id))
	d, err := h.svc.AuthorizeIO(ctx, id, r.URL.Query(), false)
	if err != nil {
		return err
	}
	size := d.Size()
	hdr := w.Header()
	if raw, ok := d.(*diskdata.RawDisk); ok {
		// Guest-keyed: ciphertext records, and how to open them.
		for k, v := range raw.Metadata() {
			hdr.Set("x-ms-meta-"+k, v)
		}
	}
	hdr.Set("x-ms-blob-type", "PageBlob")
	hdr.Set("x-ms-blob-sequence-number", "0")
	hdr.Set("x-ms-server-encrypted", "true")
	hdr.Set("Accept-Ranges", "bytes")
	hdr.Set("Content-Type", "application/octet-stream")
	setVersion(w, r)
	if r.Method == http.MethodHead {
		hdr.Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusOK)
		return nil
	}
	off, n, ranged, err := readRange(r, size)
	if err != nil {
		return err
	}
	buf := make([]byte, min(n, chunk))
	first := buf[:min(n, chunk)]
	if err := d.ReadAt(ctx, first, off); err != nil {
		return err // nothing written yet: a proper error response
	}
	hdr.Set("Content-Length", strconv.FormatInt(n, 10))
	status := http.StatusOK
	if ranged {
		hdr.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, size))
		status = http.StatusPartialContent
	}
	w.WriteHeader(status)
	for done := int64(0); ; {
		if _, err := w.Write(first); err != nil {
			return nil // client went away
		}
		done += int64(len(first))
		if done == n {
			return nil
		}
		first = buf[:min(n-done, chunk)]
		if err := d.ReadAt(ctx, first, off+done); err != nil {
			// Headers are out: end the body short, so the client sees a
			// truncated response instead of error text as disk data.
			route.AddLogAttrs(ctx, slog.String("error", err.Error()))
			return nil
		}
	}
}

// put serves Put Page (UploadPages with x-ms-page-write: update, ClearPages with clear).
func (h handler) put(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	id := r.PathValue("disk")
	route.AddLogAttrs(ctx, slog.String("disk", id))
	d, err := h.svc.AuthorizeIO(ctx, id, r.URL.Query(), true)
	if err != nil {
		return err
	}
	if comp := r.URL.Query().Get("comp"); comp != "page" {
		return &storageError{http.StatusBadRequest, "InvalidQueryParameterValue",
			fmt.Sprintf("Value for one of the query parameters specified in the request URI is invalid: comp=%q (only comp=page is served on a disk).", comp)}
	}
	mode := strings.ToLower(r.Header.Get("x-ms-page-write"))
	if mode == "" {
		return &storageError{http.StatusBadRequest, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified: x-ms-page-write."}
	}
	if mode != "update" && mode != "clear" {
		return &storageError{http.StatusBadRequest, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: x-ms-page-write."}
	}
	spec := rangeHeader(r)
	if spec == "" {
		return &storageError{http.StatusBadRequest, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified: x-ms-range."}
	}
	off, end, ok := parseRange(spec)
	if !ok || end < 0 {
		return &storageError{http.StatusBadRequest, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: x-ms-range."}
	}
	n := end - off + 1
	_, raw := d.(*diskdata.RawDisk) // raw records align to records, not pages
	if !raw && (off%diskdata.PageSize != 0 || n%diskdata.PageSize != 0) || end >= d.Size() {
		return &storageError{http.StatusRequestedRangeNotSatisfiable, "InvalidPageRange", "The page range specified is invalid."}
	}
	switch mode {
	case "clear":
		if err := d.Zero(ctx, off, n); err != nil {
			return err
		}
	case "update":
		if n > MaxPutPage {
			return &storageError{http.StatusRequestEntityTooLarge, "RequestBodyTooLarge", "The request body is too large and exceeds the maximum permissible limit (4 MiB)."}
		}
		if r.ContentLength != n {
			return &storageError{http.StatusBadRequest, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: Content-Length must equal the range length."}
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return &storageError{http.StatusBadRequest, "InvalidInput", "The request body is shorter than Content-Length."}
		}
		if err := d.WriteAt(ctx, body, off); err != nil {
			return err
		}
	}
	w.Header().Set("x-ms-blob-sequence-number", "0")
	w.Header().Set("x-ms-request-server-encrypted", "true")
	setVersion(w, r)
	w.WriteHeader(http.StatusCreated)
	return nil
}

func setVersion(w http.ResponseWriter, r *http.Request) {
	if v := r.Header.Get("x-ms-version"); v != "" && len(v) <= 32 {
		w.Header().Set("x-ms-version", v)
	}
}

// rangeHeader is x-ms-range, which wins over Range (as in Azure Storage).
func rangeHeader(r *http.Request) string {
	if v := r.Header.Get("x-ms-range"); v != "" {
		return v
	}
	return r.Header.Get("Range")
}

// parseRange reads "bytes=a-b" or "bytes=a-" (end -1).
func parseRange(s string) (off, end int64, ok bool) {
	spec, ok := strings.CutPrefix(strings.TrimSpace(s), "bytes=")
	if !ok {
		return 0, 0, false
	}
	a, b, ok := strings.Cut(spec, "-")
	if !ok {
		return 0, 0, false
	}
	off, err := strconv.ParseInt(a, 10, 64)
	if err != nil || off < 0 {
		return 0, 0, false
	}
	if b == "" {
		return off, -1, true
	}
	end, err = strconv.ParseInt(b, 10, 64)
	if err != nil || end < off {
		return 0, 0, false
	}
	return off, end, true
}

// readRange resolves a GET's range against the disk size: reads may be
// any byte range; an end past the disk is clamped, a start past it is 416.
func readRange(r *http.Request, size int64) (off, n int64, ranged bool, err error) {
	spec := rangeHeader(r)
	if spec == "" {
		return 0, size, false, nil
	}
	off, end, ok := parseRange(spec)
	if !ok {
		return 0, 0, false, &storageError{http.StatusBadRequest, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: Range."}
	}
	if off >= size {
		return 0, 0, false, &storageError{http.StatusRequestedRangeNotSatisfiable, "InvalidRange", "The range specified is invalid for the current size of the resource."}
	}
	if end < 0 || end >= size {
		end = size - 1
	}
	return off, end - off + 1, true, nil
}

// storageError is an Azure Storage error response.
type storageError struct {
	Status  int
	Code    string
	Message string
}

func (e *storageError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// toStorage maps the service's errors to Azure Storage errors; the second
// result is false for errors the server should render as a 500.
func toStorage(err error) (*storageError, bool) {
	var se *storageError
	switch {
	case errors.As(err, &se):
		return se, true
	case errors.Is(err, diskdata.ErrAccessDenied):
		return &storageError{http.StatusForbidden, "AuthenticationFailed",
			"Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature."}, true
	case errors.Is(err, diskdata.ErrPermission):
		return &storageError{http.StatusForbidden, "AuthorizationPermissionMismatch",
			"This request is not authorized to perform this operation using this permission."}, true
	case errors.Is(err, diskdata.ErrUnaligned):
		return &storageError{http.StatusRequestedRangeNotSatisfiable, "InvalidPageRange", "The page range specified is invalid: a confidential disk's raw data is written in whole sector records."}, true
	case errors.Is(err, diskcrypt.ErrRange):
		return &storageError{http.StatusRequestedRangeNotSatisfiable, "InvalidRange", "The range specified is invalid for the current size of the resource."}, true
	case errors.Is(err, diskdata.ErrKeyUnavailable):
		// Azure fails disk I/O once the customer's key is disabled or revoked.
		return &storageError{http.StatusForbidden, "KeyVaultAccessForbidden",
			"The disk's encryption key cannot be accessed: it is disabled, deleted or no longer permitted."}, true
	}
	return nil, false
}

type xmlError struct {
	XMLName xml.Name `xml:"Error"`
	Code    string   `xml:"Code"`
	Message string   `xml:"Message"`
}

// storage adapts a handler so its errors render as Azure Storage XML.
// Unrecognised errors go back to the server (500 with request id, logged).
func storage(h route.HandlerFunc) route.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		err := h(w, r)
		if err == nil {
			return nil
		}
		se, ok := toStorage(err)
		if !ok {
			return err
		}
		route.AddLogAttrs(r.Context(), slog.String("error_code", se.Code), slog.String("error", err.Error()))
		rid := w.Header().Get("x-ms-request-id")
		body, _ := xml.Marshal(xmlError{Code: se.Code,
			Message: se.Message + "\nRequestId:" + rid + "\nTime:" + time.Now().UTC().Format("2006-01-02T15:04:05.0000000Z")})
		w.Header().Set("Content-Type", "application/xml")
		w.Header().Set("x-ms-error-code", se.Code)
		w.Header().Set("Content-Length", strconv.Itoa(len(xml.Header)+len(body)))
		w.WriteHeader(se.Status)
		if r.Method != http.MethodHead {
			_, _ = io.WriteString(w, xml.Header)
			_, _ = w.Write(body)
		}
		return nil
	}
}
