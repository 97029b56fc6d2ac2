package workloadapi

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/socket"
)

// SelectorType is the only selector type treaty's attestor produces.
const SelectorType = "unix"

// errExited means the workload exited while it was being attested.
var errExited = errors.New("the calling process exited during attestation")

// attestor turns a connection's kernel credentials into unix selectors.
type attestor struct {
	// procDir is /proc; tests may point elsewhere.
	procDir string
	hashes  hashCache
}

// attest returns the selectors of the process behind info: unix:uid,
// unix:user, unix:gid and unix:group for the primary and supplementary
// groups, and, when the server may read the process's executable,
// unix:path and unix:sha256. It fails if the process exited meanwhile, so
// a recycled pid never lends its identity to another program.
func (a *attestor) attest(info socket.PeerInfo) ([]datastore.Selector, error) {
	sel := newSelectorSet()
	sel.add("uid:" + strconv.Itoa(info.UID))
	if u, err := user.LookupId(strconv.Itoa(info.UID)); err == nil {
		sel.add("user:" + u.Username)
	}
	gids := []int{info.GID}
	supplementary, err := a.groups(info.PID)
	if err != nil {
		return nil, err
	}
	for _, gid := range append(gids, supplementary...) {
		sel.add("gid:" + strconv.Itoa(gid))
		if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
			sel.add("group:" + g.Name)
		}
	}
	if path, sum, ok := a.executable(info.PID); ok {
		sel.add("path:" + path)
		sel.add("sha256:" + sum)
	}
	if !info.Alive() {
		return nil, errExited
	}
	return sel.list(), nil
}

// groups reads the supplementary groups from /proc/<pid>/status. Where
// there is no /proc at all (macOS) there are none to read: the workload is
// attested by its uid and primary gid only.
func (a *attestor) groups(pid int) ([]int, error) {
	data, err := os.ReadFile(fmt.Sprintf("%s/%d/status", a.procDir, pid))
	if errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(a.procDir); errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, errExited
	}
	if err != nil {
		return nil, fmt.Errorf("read process status: %w", err)
	}
	return parseGroups(data), nil
}

// parseGroups returns the supplementary groups of a /proc/<pid>/status
// document; numbers that do not parse are skipped.
func parseGroups(status []byte) []int {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Groups:")
		if !ok {
			continue
		}
		var gids []int
		for f := range strings.FieldsSeq(rest) {
			if gid, err := strconv.Atoi(f); err == nil && gid >= 0 {
				gids = append(gids, gid)
			}
		}
		return gids
	}
	return nil
}

// executable returns the path and SHA-256 of the process's executable, or
// ok=false when the server may not read it (another user's process and no
// CAP_SYS_PTRACE): those selectors are then simply absent.
func (a *attestor) executable(pid int) (path, sum string, ok bool) {
	link := fmt.Sprintf("%s/%d/exe", a.procDir, pid)
	path, err := os.Readlink(link)
	if err != nil {
		return "", "", false
	}
	// Opening the link opens the very file the process runs, even if the
	// path was replaced since.
	f, err := os.Open(link)
	if err != nil {
		return "", "", false
	}
	defer f.Close()
	sum, err = a.hashes.sum(f)
	if err != nil {
		return "", "", false
	}
	return path, sum, true
}

// hashCache remembers executables' hashes by device, inode, size and
// modification time, so a busy workload is not re-hashed on every call.
type hashCache struct {
	mu     sync.Mutex
	hashes map[fileKey]string
}

type fileKey struct {
	dev, ino    uint64
	size, mtime int64 // mtime in Unix nanoseconds
}

// maxHashCache bounds the cache; it is cleared when full.
const maxHashCache = 1024

func (c *hashCache) sum(f *os.File) (string, error) {
	info, err := f.Stat()
	if err != nil {
		return "", err
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	var key fileKey
	if ok {
		key = fileKey{dev: uint64(st.Dev), ino: st.Ino, size: info.Size(), mtime: info.ModTime().UnixNano()} //nolint:unconvert,gosec // Dev is an int32 on macOS
		c.mu.Lock()
		sum, hit := c.hashes[key]
		c.mu.Unlock()
		if hit {
			return sum, nil
		}
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if ok {
		c.mu.Lock()
		if c.hashes == nil || len(c.hashes) >= maxHashCache {
			c.hashes = map[fileKey]string{}
		}
		c.hashes[key] = sum
		c.mu.Unlock()
	}
	return sum, nil
}

// selectorSet collects unique unix selectors in order.
type selectorSet struct {
	seen map[string]bool
	out  []datastore.Selector
}

func newSelectorSet() *selectorSet { return &selectorSet{seen: map[string]bool{}} }

func (s *selectorSet) add(value string) {
	if !s.seen[value] {
		s.seen[value] = true
		s.out = append(s.out, datastore.Selector{Type: SelectorType, Value: value})
	}
}

func (s *selectorSet) list() []datastore.Selector {
	return slices.Clip(s.out)
}
