// Package pyclient carries the Python client (the fdp package beside this
// file) inside Go programs, so that a binary such as modrunner can run a
// Python module without a checkout: Install writes the package into a
// private cache directory, Command builds the interpreter's command line.
// It imports nothing of FDP (docs/ARCHITECTURE.md, "Layers").
package pyclient

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

//go:embed fdp/*.py
var files embed.FS

// DefaultPython is the interpreter Command uses unless $FDP_PYTHON names
// another: the distribution's, whose numpy (python3-numpy) the client
// uses when it is installed.
const DefaultPython = "/usr/bin/python3"

// Files is the embedded package, rooted at the directory that holds fdp/.
func Files() fs.FS { return files }

// digest names a version of the embedded package: its directory in the
// cache, so that two builds never share one.
func digest() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(files, "fdp", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(b))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:16], err
}

// cacheRoot is a directory only this uid can write: the user's cache
// directory, else one of its own under the temporary directory (mode 0700,
// owned by this uid, not a symlink; anything else is refused).
func cacheRoot() (string, error) {
	if d, err := os.UserCacheDir(); err == nil {
		root := filepath.Join(d, "fdp", "python")
		if err := os.MkdirAll(root, 0o700); err == nil {
			return root, nil
		}
	}
	root := filepath.Join(os.TempDir(), fmt.Sprintf("fdp-python-%d", os.Getuid()))
	if err := os.Mkdir(root, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	fi, err := os.Lstat(root)
	if err != nil {
		return "", err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 || !ok || int(st.Uid) != os.Getuid() {
		return "", fmt.Errorf("%s is not a private directory of uid %d (mode 0700, not a symlink)", root, os.Getuid())
	}
	return root, nil
}

// Install writes the embedded package into the cache (once per version:
// into a temporary directory renamed into place, so that a concurrent
// Install or a killed one never leaves a partial package) and returns the
// directory to put on PYTHONPATH.
func Install() (string, error) {
	root, err := cacheRoot()
	if err != nil {
		return "", fmt.Errorf("python client cache: %w", err)
	}
	sum, err := digest()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, sum)
	if _, err := os.Stat(filepath.Join(dir, "fdp", "__init__.py")); err == nil {
		return dir, nil
	}
	tmp, err := os.MkdirTemp(root, ".tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := os.CopyFS(tmp, files); err != nil {
		return "", fmt.Errorf("python client cache: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, "fdp", "__init__.py")); serr == nil {
			return dir, nil // another process installed the same version first
		}
		return "", fmt.Errorf("python client cache: %w", err)
	}
	return dir, nil
}

// Interpreter is $FDP_PYTHON, else DefaultPython, else python3 from PATH.
func Interpreter() (string, error) {
	if p := os.Getenv("FDP_PYTHON"); p != "" {
		path, err := exec.LookPath(p)
		if err != nil {
			return "", fmt.Errorf("$FDP_PYTHON=%s: %w", p, err)
		}
		return path, nil
	}
	if _, err := os.Stat(DefaultPython); err == nil {
		return DefaultPython, nil
	}
	p, err := exec.LookPath("python3")
	if err != nil {
		return "", fmt.Errorf("no Python interpreter: neither %s nor python3 in PATH (set $FDP_PYTHON)", DefaultPython)
	}
	return p, nil
}

// Command returns the argv and environment that run the Python module mod
// (a dotted name, e.g. fdp.analysis) of the installed package with the
// interpreter: env is os.Environ() with the package's directory first on
// PYTHONPATH.
func Command(dir, python, mod string) (argv, env []string) {
	path := dir
	if old := os.Getenv("PYTHONPATH"); old != "" {
		path += string(os.PathListSeparator) + old
	}
	env = append(os.Environ(), "PYTHONPATH="+path, "PYTHONDONTWRITEBYTECODE=1")
	return []string{python, "-m", mod}, env
}
