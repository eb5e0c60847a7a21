package ondisk

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/kmodvm/kmodvm/images/userns"
)

// RemoveTree removes dir recursively, but refuses when anything is mounted at or below it:
// a build killed at the wrong moment could leave /proc or a bind mount of the host's /dev
// inside a root, and RemoveAll would then delete host files.
func RemoveTree(dir string) error {
	real, err := filepath.EvalSymlinks(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	mounts, err := MountsUnder(real)
	if err != nil {
		return err
	}
	if len(mounts) > 0 {
		return fmt.Errorf("refusing to remove %s: %s is mounted inside it; hint: umount -R %s, then retry", dir, mounts[0], mounts[0])
	}
	err = os.RemoveAll(dir)
	if err == nil || !errors.Is(err, fs.ErrPermission) || !userns.Needed() {
		return err
	}
	// An ordinary user's roots and stages hold directories of subordinate ids (apt's
	// partial/ is _apt's, 0700): only root of the user namespace that made them can
	// empty them.
	rm := []string{"rm", "-rf", "--one-file-system", "--", dir}
	if out, rmErr := userns.Command(context.Background(), rm...).CombinedOutput(); rmErr != nil {
		return fmt.Errorf("remove %s: %w; in the user namespace: %v: %s; hint: run `%s` yourself",
			dir, err, rmErr, strings.TrimSpace(string(out)), strings.Join(userns.Argv(os.Geteuid(), rm), " "))
	}
	return nil
}

// MountsUnder lists the mount points at or below dir (read from /proc/self/mountinfo).
func MountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	return parseMountsUnder(f, dir)
}

func parseMountsUnder(r io.Reader, dir string) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

// unescapeMount decodes mountinfo's octal escapes (\040 for a space, ...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range []byte(s[i+1 : i+4]) {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + (c - '0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
