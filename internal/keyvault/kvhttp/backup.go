package kvhttp

import (
	"log/slog"
	"net/http"

	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/jwk"
	"github.com/cvault/cvault/internal/keyvault"
	"github.com/cvault/cvault/internal/route"
)

// maxRestoreBody bounds a restore request: a backup of a key with many
// large versions is well past Key Vault's usual 1 MiB of JSON.
const maxRestoreBody = 8 << 20

type backupJSON struct {
	Value jwk.Bytes `json:"value"`
}

// backupKey serves POST /keys/{name}/backup: {"value": base64url(blob)}.
func (h *handlers) backupKey(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	vault, err := h.begin(w, r, name, keyvault.OpBackup)
	if err != nil {
		return err
	}
	blob, err := h.svc.BackupKey(r.Context(), vault, name)
	if err != nil {
		return mapErr(err)
	}
	azure.WriteJSON(w, http.StatusOK, backupJSON{Value: blob})
	return nil
}

// restoreKey serves POST /keys/restore. The key's name is inside the
// sealed blob, so the restore data action is checked at the vault.
func (h *handlers) restoreKey(w http.ResponseWriter, r *http.Request) error {
	vault, err := h.begin(w, r, "", keyvault.OpRestore)
	if err != nil {
		return err
	}
	var b backupJSON
	if err := azure.DecodeJSON(r, maxRestoreBody, azure.CodeBadParameter, false, &b); err != nil {
		return err
	}
	if len(b.Value) == 0 {
		return azure.Errorf(http.StatusBadRequest, azure.CodeBadParameter, "The backup blob (value) is required.")
	}
	v, err := h.svc.RestoreKey(r.Context(), vault, b.Value)
	if err != nil {
		return mapErr(err)
	}
	route.AddLogAttrs(r.Context(), slog.String("key", v.Name), slog.String("version", v.Version))
	azure.WriteJSON(w, http.StatusOK, h.bundle(vault, v))
	return nil
}
