package rustproject

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kmodvm/kmodvm/images/ondisk"
	"github.com/kmodvm/kmodvm/vm/shellquote"
)

// NotOursError is Write refusing to replace a file kmodvm did not write.
type NotOursError struct {
	Path  string
	Why   string
	Aside string // a name beside Path that is free, for the hint
}

func (e *NotOursError) Error() string {
	return fmt.Sprintf("%s %s: kmodvm ide does not replace it, so that nothing of yours is lost; hint: move it away (mv %s %s) and run kmodvm ide again, then merge what you need of yours into the new one",
		e.Path, e.Why, shellquote.Quote(e.Path), shellquote.Quote(e.Aside))
}

func notOurs(path, why string) *NotOursError {
	aside := path + ".orig"
	for i := 2; ; i++ {
		if _, err := os.Lstat(aside); errors.Is(err, fs.ErrNotExist) {
			break
		}
		aside = fmt.Sprintf("%s.orig.%d", path, i)
	}
	return &NotOursError{Path: path, Why: why, Aside: aside}
}

// record is what Write remembers of a file it wrote.
type record struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// Write writes data to path (a module's rust-project.json) unless a file there is not one
// Write wrote: then it returns a *NotOursError and leaves it alone. A file is Write's when
// its content is what Write last wrote there, as remembered in the directory records (one
// small file per path); a file written by hand, by `make rust-analyzer`, or kmodvm's and
// edited since, is not. A file with data's content already is left as it is. It returns
// whether the file changed.
func Write(path string, data []byte, records string) (changed bool, err error) {
	path, err = filepath.Abs(path)
	if err != nil {
		return false, err
	}
	recPath := filepath.Join(records, recordName(path))
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return false, err
	case !fi.Mode().IsRegular():
		return false, notOurs(path, "is not a regular file")
	default:
		old, err := os.ReadFile(path)
		if err != nil {
			return false, err
		}
		if bytes.Equal(old, data) {
			return false, remember(recPath, path, data)
		}
		if !wrote(recPath, path, old) {
			return false, notOurs(path, "was not written by kmodvm ide, or was changed since")
		}
	}
	if err := ondisk.WriteFileAtomic(path, data, 0o644); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	return true, remember(recPath, path, data)
}

// wrote says whether the record at recPath says Write wrote content to path.
func wrote(recPath, path string, content []byte) bool {
	data, err := os.ReadFile(recPath)
	if err != nil {
		return false
	}
	var r record
	return json.Unmarshal(data, &r) == nil && r.Path == path && r.SHA256 == sum(content)
}

func remember(recPath, path string, content []byte) error {
	data, _ := json.Marshal(record{Path: path, SHA256: sum(content)})
	if err := os.MkdirAll(filepath.Dir(recPath), 0o700); err != nil {
		return fmt.Errorf("remember that kmodvm wrote %s: %w", path, err)
	}
	if err := ondisk.WriteFileAtomic(recPath, data, 0o600); err != nil {
		return fmt.Errorf("remember that kmodvm wrote %s: %w", path, err)
	}
	return nil
}

// recordName names the record of path: a hash of the path, which may be long or odd.
func recordName(path string) string {
	h := sha256.Sum256([]byte(path))
	return hex.EncodeToString(h[:12]) + ".json"
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
