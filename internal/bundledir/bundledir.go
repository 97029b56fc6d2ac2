// Package bundledir keeps partners' bundles current from a directory of
// signed bundle files (internal/signedbundle), such as a git checkout that
// partners publish to: federation without a bundle endpoint, where each
// rotation reaches us without anyone copying a bundle by hand.
//
// A file is applied only if it verifies against the bundle held for its
// trust domain, or, when none is held, has the fingerprint pinned for it,
// and only if its sequence is not lower than the held one's; anything else
// is refused with the reason, logged once and kept in Status.
package bundledir

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/dirstamp"
	"github.com/treatyhq/treaty/internal/signedbundle"
)

// Defaults of Config.
const (
	// DefaultCheckInterval is how often Run looks whether the directory
	// changed (names, sizes and times of its files).
	DefaultCheckInterval = time.Second
	// DefaultInterval is how often Run reads the directory even when it
	// did not change, so that a file refused for want of a bundle held is
	// applied once one is.
	DefaultInterval = 30 * time.Second
)

// Results of a file, in FileStatus.Result.
const (
	ResultApplied    = "applied"
	ResultUnchanged  = "unchanged"
	ResultRefused    = "refused"
	ResultUnreadable = "unreadable"
	ResultFailed     = "failed"
	ResultSkipped    = "skipped"
)

// Log attribute keys.
const (
	attrFile        = "file"
	attrTrustDomain = "trust_domain"
	attrSequence    = "sequence"
	attrKeyID       = "kid"
	attrReason      = "reason"
	attrError       = "error"
)

// Store holds partners' bundles (datastore.Store).
type Store interface {
	FederatedBundle(ctx context.Context, td spiffeid.TrustDomain) (datastore.Bundle, error)
	// PutBootstrapBundle stores b unless a bundle with a sequence as high
	// is held, and reports whether it did.
	PutBootstrapBundle(ctx context.Context, b datastore.Bundle) (bool, error)
}

// Notifier is told when a partner's bundle was stored (the refresher, whose
// Changed subscribers serve it to workloads).
type Notifier interface {
	BundleChanged(ctx context.Context, td spiffeid.TrustDomain) error
}

// Config configures a Dir.
type Config struct {
	// Dir holds the signed bundle files (*.json); other files,
	// subdirectories and hidden entries (.git) are skipped.
	Dir string
	// Pins are the fingerprints (bundle.Fingerprint) a partner's first
	// file must have, by trust domain, when no bundle is held for it.
	Pins map[spiffeid.TrustDomain]string
	// Local is our trust domain, whose file in a shared directory is
	// skipped.
	Local    spiffeid.TrustDomain
	Store    Store
	Notifier Notifier
	// CheckInterval between looks whether the directory changed, and
	// Interval between reads when it did not; defaults
	// DefaultCheckInterval and DefaultInterval.
	CheckInterval time.Duration
	Interval      time.Duration
	// Now returns the current time; default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// FileStatus is what became of one file at the last read.
type FileStatus struct {
	File        string
	TrustDomain string
	Sequence    uint64
	// Result is one of the Result constants.
	Result string
	// Reason says why a file was refused, unreadable, skipped or failed.
	Reason string
	// KeyID is the JWT authority whose signature verified.
	KeyID string
	At    time.Time
}

// Dir applies a directory of signed bundle files. It is safe for
// concurrent use.
type Dir struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	status map[string]FileStatus
}

// New returns a Dir for cfg.
func New(cfg Config) *Dir {
	cfg.Interval = cmp.Or(cfg.Interval, DefaultInterval)
	cfg.CheckInterval = cmp.Or(cfg.CheckInterval, DefaultCheckInterval)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Dir{cfg: cfg, log: log, status: map[string]FileStatus{}}
}

// Run applies the directory at start, whenever it changes and every
// Interval, until ctx is done.
func (d *Dir) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var stamp string
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		now := d.cfg.Now()
		if next := dirstamp.Of(d.cfg.Dir); next != stamp || now.Sub(last) >= d.cfg.Interval {
			if err := d.Sync(ctx); err != nil && ctx.Err() == nil {
				d.log.Error("signed bundles directory not read", attrError, err)
			}
			stamp, last = next, now
		}
		timer.Reset(d.cfg.CheckInterval)
	}
}

// Status returns what became of each file at the last read, by file name.
func (d *Dir) Status() []FileStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]FileStatus, 0, len(d.status))
	for _, st := range d.status {
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b FileStatus) int { return strings.Compare(a.File, b.File) })
	return out
}

// Sync reads the directory once and applies its files: each trust domain's
// in ascending sequence, so that a directory keeping every version walks
// the chain from the bundle held to the newest.
func (d *Dir) Sync(ctx context.Context) error {
	names, err := d.files()
	if err != nil {
		return err
	}
	var files []file
	seen := map[string]FileStatus{}
	for _, name := range names {
		f, st := d.read(name)
		if st.Result != "" {
			seen[name] = st
			continue
		}
		files = append(files, f)
	}
	slices.SortFunc(files, func(a, b file) int {
		return cmp.Or(strings.Compare(a.signed.TrustDomain.Name(), b.signed.TrustDomain.Name()), cmp.Compare(a.signed.Sequence, b.signed.Sequence))
	})
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		seen[f.name] = d.apply(ctx, f)
	}
	d.record(seen)
	return nil
}

// file is a parsed signed bundle file.
type file struct {
	name   string
	signed *signedbundle.Signed
}

// files lists the directory's signed bundle files.
func (d *Dir) files() ([]string, error) {
	entries, err := os.ReadDir(d.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("read signed bundles directory: %w", err)
	}
	var names []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || e.IsDir() || !strings.HasSuffix(name, ".json") {
			continue
		}
		names = append(names, name)
	}
	return names, nil
}

// read parses one file; a status with a Result says it goes no further.
func (d *Dir) read(name string) (file, FileStatus) {
	st := FileStatus{File: name, At: d.cfg.Now()}
	raw, err := readLimited(filepath.Join(d.cfg.Dir, name))
	if err == nil {
		var s *signedbundle.Signed
		if s, err = signedbundle.Parse(raw); err == nil {
			if s.TrustDomain == d.cfg.Local {
				st.TrustDomain, st.Sequence, st.Result, st.Reason = s.TrustDomain.Name(), s.Sequence, ResultSkipped, "our own trust domain"
				return file{}, st
			}
			return file{name: name, signed: s}, st
		}
	}
	st.Result, st.Reason = ResultUnreadable, err.Error()
	return file{}, st
}

// readLimited reads a file of at most signedbundle.MaxFileBytes.
func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	return io.ReadAll(io.LimitReader(f, signedbundle.MaxFileBytes+1))
}

// apply verifies one file against the bundle held and stores it if newer.
func (d *Dir) apply(ctx context.Context, f file) FileStatus {
	s := f.signed
	st := FileStatus{File: f.name, TrustDomain: s.TrustDomain.Name(), Sequence: s.Sequence, At: d.cfg.Now()}
	held, err := d.held(ctx, s.TrustDomain)
	if errors.Is(err, datastore.ErrNotFound) {
		held = nil // the first file: Accept asks for its pin
	} else if err != nil {
		st.Result, st.Reason = ResultFailed, err.Error()
		return st
	}
	decision, kid, err := s.Accept(held, d.cfg.Pins[s.TrustDomain])
	if err != nil {
		st.Result, st.Reason = ResultRefused, err.Error()
		return st
	}
	st.KeyID, st.Result = kid, ResultUnchanged
	if decision == signedbundle.Newer {
		if err := d.store(ctx, s); err != nil {
			st.Result, st.Reason = ResultFailed, err.Error()
			return st
		}
		st.Result = ResultApplied
	}
	return st
}

// held returns the bundle held for td; datastore.ErrNotFound when none is.
func (d *Dir) held(ctx context.Context, td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	rec, err := d.cfg.Store.FederatedBundle(ctx, td)
	if err != nil {
		return nil, fmt.Errorf("read the bundle held for %s: %w", td.Name(), err)
	}
	res, err := bundle.Parse(td, rec.Document, bundle.Options{})
	if err != nil {
		return nil, fmt.Errorf("the bundle held for %s: %w", td.Name(), err)
	}
	return res.Bundle, nil
}

// store saves a verified bundle and tells the notifier.
func (d *Dir) store(ctx context.Context, s *signedbundle.Signed) error {
	doc, err := bundle.Marshal(s.Bundle)
	if err != nil {
		return err
	}
	stored, err := d.cfg.Store.PutBootstrapBundle(ctx, datastore.Bundle{TrustDomain: s.TrustDomain, Document: doc, Sequence: s.Sequence, UpdatedAt: d.cfg.Now()})
	if err != nil {
		return fmt.Errorf("store the bundle of %s: %w", s.TrustDomain.Name(), err)
	}
	if !stored {
		return fmt.Errorf("store the bundle of %s: a bundle at least as new was stored meanwhile", s.TrustDomain.Name())
	}
	if d.cfg.Notifier != nil {
		_ = d.cfg.Notifier.BundleChanged(ctx, s.TrustDomain) // stored; the refresher logs a failure to re-read it
	}
	return nil
}

// record keeps the statuses of this read and logs each file whose outcome
// changed since the last one.
func (d *Dir) record(seen map[string]FileStatus) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, st := range seen {
		if prev, ok := d.status[name]; !ok || prev.Result != st.Result || prev.Reason != st.Reason || prev.Sequence != st.Sequence {
			d.logStatus(st)
		}
	}
	d.status = seen
}

func (d *Dir) logStatus(st FileStatus) {
	attrs := []any{attrFile, st.File, attrTrustDomain, st.TrustDomain, attrSequence, st.Sequence}
	switch st.Result {
	case ResultApplied:
		d.log.Info("signed bundle applied", append(attrs, attrKeyID, st.KeyID)...)
	case ResultRefused, ResultUnreadable:
		d.log.Warn("signed bundle refused", append(attrs, attrReason, st.Reason)...)
	case ResultFailed:
		d.log.Error("signed bundle not applied", append(attrs, attrReason, st.Reason)...)
	case ResultUnchanged, ResultSkipped:
		d.log.Debug("signed bundle unchanged", append(attrs, attrReason, st.Reason)...)
	}
}
