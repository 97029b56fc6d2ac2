package onboarding

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/dirstamp"
	"github.com/treatyhq/treaty/internal/federation"
	"github.com/treatyhq/treaty/internal/yamldoc"
)

// DefaultInterval is how often Run checks the directory for changes.
const DefaultInterval = 5 * time.Second

// Store is the persistence the reconciler needs.
type Store interface {
	ListRelationships(ctx context.Context) ([]datastore.Relationship, error)
	CreateRelationship(ctx context.Context, r datastore.Relationship, bootstrap *datastore.Bundle) (bool, error)
	UpdateRelationship(ctx context.Context, r datastore.Relationship, bootstrap *datastore.Bundle) (bool, error)
	DeleteRelationship(ctx context.Context, td spiffeid.TrustDomain) error
	PutBootstrapBundle(ctx context.Context, b datastore.Bundle) (bool, error)
	FederatedBundle(ctx context.Context, td spiffeid.TrustDomain) (datastore.Bundle, error)
}

// Reloader is told when relationships changed (the refresher).
type Reloader interface {
	Reload(ctx context.Context) error
}

// ReconcilerConfig configures a Reconciler.
type ReconcilerConfig struct {
	Dir       string
	ClassName string
	// Local is our own trust domain: a directory shared by a federation
	// holds every member's file, ours included, which is skipped.
	Local    spiffeid.TrustDomain
	Store    Store
	Reloader Reloader
	// Interval between directory checks; default DefaultInterval.
	Interval time.Duration
	Now      func() time.Time
	Logger   *slog.Logger
}

// Reconciler makes the relationships it manages match the onboarding
// directory: it creates, updates and deletes relationships whose
// ManagedBy starts with ManagedByPrefix, and never touches relationships
// created through the API or CLI. A file that does not parse never causes
// a deletion.
type Reconciler struct {
	cfg      ReconcilerConfig
	log      *slog.Logger
	stamp    string
	reported map[string]bool
}

// NewReconciler returns a reconciler for cfg.
func NewReconciler(cfg ReconcilerConfig) *Reconciler {
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{cfg: cfg, log: log, reported: map[string]bool{}}
}

// Run reconciles at start and whenever the directory changes, until ctx
// is done.
func (r *Reconciler) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		if stamp := dirstamp.Of(r.cfg.Dir); stamp != r.stamp {
			if err := r.Reconcile(ctx); err != nil && ctx.Err() == nil {
				r.log.Error("onboarding directory not applied; relationships unchanged", attrError, err)
			} else {
				r.stamp = stamp
			}
		}
		timer.Reset(r.cfg.Interval)
	}
}

// Reconcile applies the directory once.
func (r *Reconciler) Reconcile(ctx context.Context) error {
	files, problems, err := LoadDir(r.cfg.Dir, r.cfg.ClassName)
	if err != nil {
		return err
	}
	r.report(problems)
	broken := map[string]bool{}
	for _, p := range problems {
		broken[filepath.Base(p.File)] = true
	}
	existing, err := r.cfg.Store.ListRelationships(ctx)
	if err != nil {
		return err
	}
	changed, err := r.apply(ctx, r.desired(files), existing, broken)
	if changed {
		if rerr := r.cfg.Reloader.Reload(ctx); rerr != nil && err == nil {
			err = rerr
		}
	}
	return err
}

// desired returns the files by trust domain, without our own.
func (r *Reconciler) desired(files []File) map[spiffeid.TrustDomain]File {
	out := map[spiffeid.TrustDomain]File{}
	for _, f := range files {
		if f.Relationship.TrustDomain == r.cfg.Local {
			continue
		}
		out[f.Relationship.TrustDomain] = f
	}
	return out
}

func (r *Reconciler) apply(ctx context.Context, want map[spiffeid.TrustDomain]File, existing []datastore.Relationship, broken map[string]bool) (bool, error) {
	have := map[spiffeid.TrustDomain]datastore.Relationship{}
	for _, rec := range existing {
		have[rec.TrustDomain] = rec
	}
	changed := false
	for _, td := range sortedKeys(want) {
		did, err := r.upsert(ctx, want[td], have)
		changed = changed || did
		if err != nil {
			return changed, err
		}
	}
	for _, rec := range existing {
		if _, ok := want[rec.TrustDomain]; ok || !strings.HasPrefix(rec.ManagedBy, ManagedByPrefix) {
			continue
		}
		if file := strings.TrimPrefix(rec.ManagedBy, ManagedByPrefix); broken[file] {
			continue // its file is there but does not parse: keep the relationship
		}
		if err := r.cfg.Store.DeleteRelationship(ctx, rec.TrustDomain); err != nil {
			return changed, err
		}
		changed = true
		r.log.Info("relationship removed: its onboarding file is gone", attrTrustDomain, rec.TrustDomain.Name(), attrFile, rec.ManagedBy)
	}
	return changed, nil
}

// upsert creates or updates the relationship of one file.
func (r *Reconciler) upsert(ctx context.Context, f File, have map[spiffeid.TrustDomain]datastore.Relationship) (bool, error) {
	rel := f.Relationship
	rec := rel.Record(r.cfg.Now())
	boot, err := r.bootstrap(rel)
	if err == nil && f.signed != nil {
		boot, err = r.verifySigned(ctx, f, boot)
	}
	if err != nil {
		return false, err
	}
	old, exists := have[rel.TrustDomain]
	switch {
	case exists && !strings.HasPrefix(old.ManagedBy, ManagedByPrefix):
		if r.first("api:" + rel.TrustDomain.Name()) {
			r.log.Warn("onboarding file ignored: a relationship with this trust domain was created through the API or CLI; delete it there to let the file manage it",
				attrTrustDomain, rel.TrustDomain.Name(), attrFile, f.Path)
		}
		return false, nil
	case exists && sameRecord(old, rec):
		if boot != nil {
			_, err := r.cfg.Store.PutBootstrapBundle(ctx, *boot)
			return false, err
		}
		return false, nil
	case exists:
		_, err = r.cfg.Store.UpdateRelationship(ctx, rec, boot)
		r.log.Info("relationship updated from onboarding file", attrTrustDomain, rel.TrustDomain.Name(), attrFile, f.Path)
	default:
		_, err = r.cfg.Store.CreateRelationship(ctx, rec, boot)
		r.log.Info("relationship created from onboarding file", attrTrustDomain, rel.TrustDomain.Name(), attrFile, f.Path)
	}
	return err == nil, err
}

func (r *Reconciler) bootstrap(rel federation.Relationship) (*datastore.Bundle, error) {
	if rel.TrustDomainBundle == nil {
		return nil, nil //nolint:nilnil // no bootstrap bundle is a normal case
	}
	doc, err := bundle.Marshal(rel.TrustDomainBundle)
	if err != nil {
		return nil, fmt.Errorf("encode bootstrap bundle of %q: %w", rel.TrustDomain.Name(), err)
	}
	seq, _ := rel.TrustDomainBundle.SequenceNumber()
	return &datastore.Bundle{TrustDomain: rel.TrustDomain, Document: doc, Sequence: seq, UpdatedAt: r.cfg.Now()}, nil
}

func sameRecord(a, b datastore.Relationship) bool {
	return a.Profile == b.Profile && a.EndpointSPIFFEID == b.EndpointSPIFFEID && a.ManagedBy == b.ManagedBy &&
		strings.Join(a.EndpointURLs, " ") == strings.Join(b.EndpointURLs, " ")
}

// report logs each problem once per distinct message.
func (r *Reconciler) report(problems []yamldoc.Problem) {
	for _, p := range problems {
		if r.first(p.String()) {
			r.log.Warn("onboarding file skipped", attrProblem, p.String())
		}
	}
}

// first reports whether key is seen for the first time, so that a
// problem is logged once, not at every check.
func (r *Reconciler) first(key string) bool {
	if r.reported[key] {
		return false
	}
	r.reported[key] = true
	return true
}

func sortedKeys(m map[spiffeid.TrustDomain]File) []spiffeid.TrustDomain {
	out := make([]spiffeid.TrustDomain, 0, len(m))
	for td := range m {
		out = append(out, td)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}

// Log attribute keys.
const (
	attrTrustDomain = "partner"
	attrFile        = "file"
	attrProblem     = "problem"
	attrError       = "error"
)
