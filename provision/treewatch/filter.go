package treewatch

import (
	"path"
	"strconv"
	"strings"

	"github.com/kmodvm/kmodvm/provision/treesync"
)

// skip reports whether a change to rel (slash-separated, relative to the root; isDir: it is,
// or was, a directory) is none of a sync's business: the sync leaves it alone (a build
// output, .git/, target/, a .kmodvmignore pattern, a name the sync reserves, or anything
// inside an ignored directory), or an editor wrote it on the way to saving another file.
func skip(m *treesync.Matcher, rel string, isDir bool) bool {
	parts := strings.Split(rel, "/")
	for i := range parts {
		sub := strings.Join(parts[:i+1], "/")
		last := i == len(parts)-1
		if treesync.Reserved(sub) || m.Ignored(sub, !last || isDir) {
			return true
		}
	}
	return !isDir && EditorTemp(path.Base(rel))
}

// EditorTemp reports whether base names a file an editor writes around a save, or keeps
// beside the file it edits, and that is no part of the module: vim's probe file (4913, or
// 5036, 5159, ... when that name is taken) and swap files (.x.swp, .x.swo, ... .x.swa,
// x.swx), emacs's lock links (.#x), auto-save files (#x#) and backups (x~), the safe-write
// files of JetBrains IDEs (x___jb_tmp___, x___jb_old___), gedit's (.goutputstream-XXXXXX)
// and kate's swap files (.x.kate-swp).
func EditorTemp(base string) bool {
	switch {
	case vimProbe(base), vimSwap(base):
	case strings.HasSuffix(base, "~"):
	case strings.HasPrefix(base, ".#"):
	case len(base) > 2 && strings.HasPrefix(base, "#") && strings.HasSuffix(base, "#"):
	case strings.HasSuffix(base, "___jb_tmp___"), strings.HasSuffix(base, "___jb_old___"):
	case strings.HasPrefix(base, ".goutputstream-"):
	case strings.HasSuffix(base, ".kate-swp"):
	default:
		return false
	}
	return true
}

// vimProbe: before it writes a file, vim creates and deletes "4913" in its directory to learn
// whether it may; when that name is taken it tries 4913+123, 4913+246, ...
func vimProbe(base string) bool {
	n, err := strconv.Atoi(base)
	return err == nil && strconv.Itoa(n) == base && n >= 4913 && (n-4913)%123 == 0
}

// vimSwap: vim's swap file of x is .x.swp; when that is taken, .x.swo, .x.swn, ... .x.swa.
func vimSwap(base string) bool {
	ext := path.Ext(base)
	return len(ext) == 4 && strings.HasPrefix(ext, ".sw") && ext[3] >= 'a' && ext[3] <= 'z' && len(base) > len(ext)
}
