package federation

import (
	"context"
	"time"

	"github.com/treatyhq/treaty/internal/datastore"
)

// PollRecords keeps what polling each partner last found across restarts
// (datastore.Store has it), so that a server restarted during a partner's
// outage still knows when the partner last answered, and says so.
type PollRecords interface {
	SavePollRecords(ctx context.Context, records []datastore.PollRecord) error
	ListPollRecords(ctx context.Context) ([]datastore.PollRecord, error)
}

// savePollsEvery is how often the polls of the last while are written: one
// transaction for all of them, not one per poll.
const savePollsEvery = 10 * time.Second

// restorePolls gives the entries the poll records stored before; the
// caller holds r.mu. Records of partners without a relationship are left.
func (r *Refresher) restorePolls(records []datastore.PollRecord) {
	now := r.cfg.Now()
	for _, p := range records {
		e, ok := r.entries[p.TrustDomain]
		if !ok || !e.status.LastAttempt.IsZero() {
			continue
		}
		st := &e.status
		st.LastAttempt, st.LastSuccess, st.ConsecutiveFailures = p.LastAttempt, p.LastSuccess, p.ConsecutiveFailures
		st.LastError, st.LastReason = p.LastError, p.LastReason
		st.State = st.state(now, r.interval(st.RefreshHint))
	}
}

// savePolls writes the records of the partners polled since the last save.
func (r *Refresher) savePolls(ctx context.Context) {
	if r.cfg.Polls == nil {
		return
	}
	r.mu.Lock()
	var records []datastore.PollRecord
	for td := range r.unsaved {
		if e, ok := r.entries[td]; ok {
			st := e.status
			records = append(records, datastore.PollRecord{TrustDomain: td, LastAttempt: st.LastAttempt, LastSuccess: st.LastSuccess,
				ConsecutiveFailures: st.ConsecutiveFailures, LastError: st.LastError, LastReason: st.LastReason})
		}
	}
	clear(r.unsaved)
	r.mu.Unlock()
	if err := r.cfg.Polls.SavePollRecords(ctx, records); err != nil {
		r.log.Warn("could not save when partners were last polled; a restart would forget it", attrError, err)
	}
}
