package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/treatyhq/treaty/internal/adminwire"
	"github.com/treatyhq/treaty/internal/pgtest"
)

// The replicas section: the same 10,000 partners polled by one treaty on
// SQLite, then by three replicas of one trust domain sharing a PostgreSQL,
// each partner on the partner side counting who fetched it and when.
const (
	haTrustDomain = "ha.test"
	haPartners    = 10000
	haReplicas    = 3
	// haInterval is the partners' refresh hint and federation.min_refresh
	// (its default, the shortest interval treaty polls at unless told
	// otherwise): short, so that several intervals fit in the window.
	haInterval = 30 * time.Second
	// haSettle follows the first full sync: the first polls of a new
	// relationship are taken before its hint is known.
	haSettle = haInterval + haInterval/2
	haWindow = 3 * haInterval
	// haTwice: two polls of one partner closer than this are two polls in
	// one interval, as one poller's jitter keeps its polls at least 0.9
	// intervals apart.
	haTwice = haInterval * 8 / 10
)

// haSetup is the measurement of one setup over the window.
type haSetup struct {
	Setup     string        `json:"setup"`
	Partners  int           `json:"partners"`
	FirstSync time.Duration `json:"first_sync_ns"`
	// Synced counts the partners whose bundle was stored at FirstSync,
	// fewer than Partners if the sync reached syncLimit.
	Synced   int           `json:"synced"`
	Window   time.Duration `json:"window_ns"`
	Interval time.Duration `json:"interval_ns"`
	pollTally
	Processes []haProcess `json:"processes"`
	DB        *haDB       `json:"db,omitempty"`
}

// pollTally is what the partners saw in the window.
type pollTally struct {
	// Polls counts the bundle fetches the partners answered.
	Polls int `json:"polls"`
	// PerInterval is Polls per partner per refresh interval.
	PerInterval float64 `json:"polls_per_partner_per_interval"`
	// MaxClose is the most polls of one partner within haTwice;
	// PolledTwice counts the partners polled more than once within it.
	MaxClose    int `json:"max_polls_of_one_partner_within_0_8_interval"`
	PolledTwice int `json:"partners_polled_twice_within_0_8_interval"`
	// Gaps are the times between two polls of one partner: shortest,
	// median, 99th percentile and longest.
	Gaps [4]time.Duration `json:"gaps_min_p50_p99_max_ns"`
	// Unpolled counts the partners nobody polled in the window.
	Unpolled int `json:"unpolled"`
	// ByProcess counts the polls per server process; Unknown those whose
	// connection was not traced to one.
	ByProcess []int `json:"polls_by_process"`
	Unknown   int   `json:"polls_unattributed"`
}

// haProcess is one server process over the window.
type haProcess struct {
	Name  string  `json:"name"`
	Polls int     `json:"polls"`
	CPU   float64 `json:"cpu_percent_of_one_core"`
	RSSKB int     `json:"rss_kb"`
	// Overdue counts the partners whose next poll or read of the stored
	// bundle was more than overdueAfter late at the end of the window.
	Overdue int `json:"overdue_at_end"`
}

// haDB is the database work over the window, all replicas together.
type haDB struct {
	// Statements counts executions (pg_stat_statements calls, BEGIN and
	// COMMIT included); Transactions counts commits and rollbacks
	// (pg_stat_database).
	Statements   int64 `json:"statements"`
	Transactions int64 `json:"transactions"`
	// ToDB and FromDB count the bytes on the replicas' connections to
	// PostgreSQL (its wire protocol, without TLS), as a forwarding proxy
	// between each replica and the database counts them.
	ToDB        int64         `json:"bytes_to_db"`
	FromDB      int64         `json:"bytes_from_db"`
	ConnsOpened int64         `json:"connections_opened"`
	CPU         float64       `json:"postgres_cpu_percent_of_one_core"`
	Top         []haStatement `json:"top_statements"`
}

// haStatement is one statement of pg_stat_statements.
type haStatement struct {
	Query string `json:"query"`
	Calls int64  `json:"calls"`
	Rows  int64  `json:"rows"`
}

func (h *harness) replicaRuns(ctx context.Context) error {
	pki, err := newWebPKI(h.dir("ha-fleet"))
	if err != nil {
		return err
	}
	single, err := h.haSQLite(ctx, pki)
	if err != nil {
		return fmt.Errorf("one node on SQLite: %w", err)
	}
	multi, err := h.haPostgres(ctx, pki)
	if err != nil {
		return fmt.Errorf("%d replicas on PostgreSQL: %w", haReplicas, err)
	}
	h.haReport(single, multi)
	return nil
}

func (h *harness) haReport(single, multi haSetup) {
	sec := h.res.section(fmt.Sprintf("9. Several replicas on PostgreSQL: polling (%d partners, refresh hint %s)", haPartners, haInterval),
		"setup", "first full sync", fmt.Sprintf("polls in %s", haWindow), "polls per partner per interval",
		"time between two polls of one partner (min / median / p99 / max)", "partners polled twice within 0.8 interval (max polls)",
		"DB statements per poll", "DB transactions per poll", "DB bytes per poll (to / from)", "DB connections opened")
	sec.Note = haNote()
	procs := h.res.section("10. Several replicas on PostgreSQL: processes over the same window",
		"setup", "process", "share of polls", "CPU (% of one core)", "RSS", fmt.Sprintf("partners overdue > %s at the end", overdueAfter))
	for _, s := range []haSetup{single, multi} {
		db := []string{"—", "—", "—", "—"}
		if s.DB != nil && s.Polls > 0 {
			polls := float64(s.Polls)
			db = []string{fmt.Sprintf("%.1f", float64(s.DB.Statements)/polls), fmt.Sprintf("%.2f", float64(s.DB.Transactions)/polls),
				fmt.Sprintf("%.0f / %.0f", float64(s.DB.ToDB)/polls, float64(s.DB.FromDB)/polls), fmt.Sprint(s.DB.ConnsOpened)}
		}
		gaps := make([]string, len(s.Gaps))
		for i, g := range s.Gaps {
			gaps[i] = fmt.Sprintf("%.1f s", g.Seconds())
		}
		sync := s.FirstSync.Round(100 * time.Millisecond).String()
		if s.Synced < s.Partners {
			sync = fmt.Sprintf("> %s (%d of %d)", s.FirstSync.Round(time.Second), s.Synced, s.Partners)
		}
		sec.row(append([]string{s.Setup, sync, fmt.Sprint(s.Polls),
			fmt.Sprintf("%.3f", s.PerInterval), strings.Join(gaps, " / "), fmt.Sprintf("%d (%d)", s.PolledTwice, s.MaxClose)}, db...)...)
		for _, p := range s.Processes {
			share := "—"
			if s.Polls > 0 {
				share = fmt.Sprintf("%.1f %%", 100*float64(p.Polls)/float64(s.Polls))
			}
			procs.row(s.Setup, p.Name, share, fmt.Sprintf("%.1f %%", p.CPU), fmt.Sprintf("%.1f MiB", float64(p.RSSKB)/1024), fmt.Sprint(p.Overdue))
		}
		if s.DB != nil {
			procs.row(s.Setup, "PostgreSQL (all its processes)", "—", fmt.Sprintf("%.1f %%", s.DB.CPU), "—", "—")
		}
	}
	sec.check(fmt.Sprintf("%d replicas: polls per partner per interval within 2 %% of one SQLite node's", haReplicas),
		multi.PerInterval, "%.3f", single.PerInterval > 0 && haAbs(multi.PerInterval/single.PerInterval-1) <= 0.02)
	sec.check(fmt.Sprintf("%d replicas: no partner polled twice within 0.8 interval", haReplicas),
		float64(multi.PolledTwice), "%.0f partners", multi.PolledTwice == 0)
	sec.check(fmt.Sprintf("%d replicas: every partner polled in the window", haReplicas),
		float64(multi.Unpolled), "%.0f unpolled", multi.Unpolled == 0)
	sec.Data["setups"] = []haSetup{single, multi}
}

func haNote() string {
	return fmt.Sprintf("The same %d partners (one HTTPS listener, one URL path per partner, profile https_web, refresh hint %s, federation.min_refresh %s), "+
		"first polled by one treaty on SQLite, then by %d replicas of one trust domain on one PostgreSQL 15 (pgtest's cluster, on this machine), "+
		"one after the other in the same run. Relationships are created through the admin API of one node (the first replica). "+
		"After the first full sync and %s to settle, a %s window: polls are counted on the partner side, per partner and per server process "+
		"(the process is found from the connection's socket in /proc). Polls per partner per interval = polls / (partners × window / interval); "+
		"one poller's jitter spreads its polls 0.9–1.1 intervals apart, so two polls of one partner less than 0.8 intervals apart are two polls in one interval, "+
		"and times between polls well past 1.1 intervals mean the pollers fell behind. Overdue: partners whose next poll, or read of the bundle another replica stored, "+
		"was more than %s late at the end of the window (the federation status of that process's admin API). "+
		"Database figures cover all replicas, followers' reads of the bundle a poller stored included, divided by the polls: "+
		"statements are pg_stat_statements calls in treaty's database (BEGIN and COMMIT count), transactions are pg_stat_database commits and rollbacks, "+
		"bytes are counted by a forwarding proxy between each replica and PostgreSQL (the wire protocol, LISTEN/NOTIFY included, without TLS), "+
		"connections opened are those the replicas opened through it in the window. PostgreSQL's CPU is its postmaster's and all its processes', exited ones included. "+
		"Everything shares one machine with the harness and the partners' server.",
		haPartners, haInterval, haInterval, haReplicas, haSettle, haWindow, overdueAfter)
}

func haAbs(x float64) float64 { return max(x, -x) }

// haSQLite measures one treaty on SQLite.
func (h *harness) haSQLite(ctx context.Context, pki *webPKI) (haSetup, error) {
	logf("   one node on SQLite, %d partners", haPartners)
	fleet, err := startPollLog(ctx, pki, haPartners)
	if err != nil {
		return haSetup{}, err
	}
	defer fleet.stop() //nolint:contextcheck // stopping must work after ctx is cancelled
	p, err := h.startHANode(ctx, "sqlite", pki.caFile, "")
	if err != nil {
		return haSetup{}, err
	}
	defer p.stop()
	return h.haMeasure(ctx, "1 node, SQLite", []*proc{p}, fleet, nil)
}

// haPostgres measures haReplicas replicas on one PostgreSQL, each reaching
// it through its own counting proxy.
func (h *harness) haPostgres(ctx context.Context, pki *webPKI) (haSetup, error) {
	logf("   %d replicas on PostgreSQL, %d partners", haReplicas, haPartners)
	db, err := startHADatabase(ctx, h.dir("ha-pg"))
	if err != nil {
		return haSetup{}, err
	}
	defer db.stop() //nolint:contextcheck // stopping must work after ctx is cancelled
	fleet, err := startPollLog(ctx, pki, haPartners)
	if err != nil {
		return haSetup{}, err
	}
	defer fleet.stop() //nolint:contextcheck // stopping must work after ctx is cancelled
	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	for i := range haReplicas {
		proxy, err := db.proxy(ctx)
		if err != nil {
			return haSetup{}, err
		}
		p, err := h.startHANode(ctx, fmt.Sprintf("replica-%d", i+1), pki.caFile, db.config(proxy))
		if err != nil {
			return haSetup{}, err
		}
		procs = append(procs, p)
	}
	return h.haMeasure(ctx, fmt.Sprintf("%d replicas, PostgreSQL", haReplicas), procs, fleet, db)
}

// startHANode starts one treaty of the trust domain haTrustDomain; extra
// is appended to its configuration.
func (h *harness) startHANode(ctx context.Context, name, caFile, extra string) (*proc, error) {
	d := h.dir(name)
	port, err := freePort(ctx)
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, socket: filepath.Join(d, "admin.sock"), wlSock: filepath.Join(d, "wl.sock"), addr: fmt.Sprintf("127.0.0.1:%d", port)}
	yaml := fmt.Sprintf("trust_domain: %s\ndata_dir: %s\nadmin_socket: %s\nworkload_socket: %s\nlog_level: warn\n"+
		"bundle_endpoint:\n  address: %s\nfederation:\n  ca_file: %s\n  min_refresh: %s\n",
		haTrustDomain, filepath.Join(d, "data"), p.socket, p.wlSock, p.addr, caFile, haInterval) + extra
	conf := filepath.Join(d, "treaty.yaml")
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		return nil, err
	}
	return p, h.start(ctx, p, d, nil, h.cfg.treaty, "server", "run", "-config", conf)
}

// haMeasure creates the relationships through procs[0], waits for the
// first full sync, lets the polling settle and measures one window.
func (h *harness) haMeasure(ctx context.Context, setup string, procs []*proc, fleet *pollLog, db *haDatabase) (haSetup, error) {
	res := haSetup{Setup: setup, Partners: haPartners, Window: haWindow, Interval: haInterval}
	pids := make([]int, len(procs))
	for i, p := range procs {
		if _, err := waitReady(ctx, "https://"+p.addr, time.Minute); err != nil {
			return res, fmt.Errorf("%s: %w", p.name, err)
		}
		pids[i] = p.cmd.Process.Pid
	}
	fleet.trace(pids)
	conn, err := procs[0].dial()
	if err != nil {
		return res, err
	}
	defer conn.Close()
	start := time.Now()
	if err := createRelationships(ctx, trustdomainv1.NewTrustDomainClient(conn), fleet.url, haPartners); err != nil {
		return res, err
	}
	// A first sync past syncLimit is reported, and the window measured
	// all the same: the steady state is what this section is about.
	if res.Synced, err = waitSynced(ctx, conn, haPartners); err != nil {
		return res, err
	}
	res.FirstSync = time.Since(start)
	logf("   %s: first sync of %d partners in %s; settling for %s", setup, res.Synced, res.FirstSync.Round(100*time.Millisecond), haSettle)
	if err := haSleep(ctx, haSettle); err != nil {
		return res, err
	}
	return res, h.haWindow(ctx, &res, procs, fleet, db)
}

// haWindow measures the window: the partners' polls, the processes and the
// database.
func (h *harness) haWindow(ctx context.Context, res *haSetup, procs []*proc, fleet *pollLog, db *haDatabase) error {
	cpu0 := make([]time.Duration, len(procs))
	for i, p := range procs {
		var err error
		if cpu0[i], err = p.cpuTime(); err != nil {
			return err
		}
	}
	if db != nil {
		if err := db.begin(ctx); err != nil {
			return err
		}
	}
	from := time.Now()
	if err := haSleep(ctx, haWindow); err != nil {
		return err
	}
	to := time.Now()
	res.pollTally = fleet.tally(from, to, len(procs))
	for i, p := range procs {
		cpu1, err := p.cpuTime()
		if err != nil {
			return err
		}
		rss, err := p.rssKB()
		if err != nil {
			return err
		}
		res.Processes = append(res.Processes, haProcess{Name: p.name, Polls: res.ByProcess[i],
			CPU: 100 * float64(cpu1-cpu0[i]) / float64(to.Sub(from)), RSSKB: rss})
	}
	if db != nil {
		var err error
		if res.DB, err = db.end(ctx, to.Sub(from)); err != nil {
			return err
		}
		for i, s := range res.DB.Top[:min(5, len(res.DB.Top))] {
			logf("   statement %d: %d calls, %d rows: %s", i+1, s.Calls, s.Rows, s.Query)
		}
	}
	for i, p := range procs {
		n, err := overdue(ctx, p)
		if err != nil {
			logf("   %v", err)
			n = -1
		}
		res.Processes[i].Overdue = n
	}
	logf("   %s: %d polls, %.3f per partner per interval, %d partners polled twice, split %v", res.Setup, res.Polls, res.PerInterval, res.PolledTwice, res.ByProcess)
	return nil
}

// overdueAfter is how late a partner's next poll (or read of the bundle
// another replica stored) must be to count as overdue: its node has fallen
// behind.
const overdueAfter = 2 * time.Second

// overdue counts p's partners whose next poll or read is overdue, from
// the federation status of its admin API (as treaty federation status
// reads it, with room for 10,000 partners' status in one answer).
func overdue(ctx context.Context, p *proc) (int, error) {
	conn, err := p.dial()
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	raw := &structpb.Struct{}
	if err := conn.Invoke(ctx, adminwire.StatusMethod, &emptypb.Empty{}, raw, grpc.MaxCallRecvMsgSize(64<<20)); err != nil {
		return 0, fmt.Errorf("federation status of %s: %w", p.name, err)
	}
	var st adminwire.StatusResponse
	if err := adminwire.FromStruct(raw, &st); err != nil {
		return 0, fmt.Errorf("federation status of %s: %w", p.name, err)
	}
	now, n := time.Now(), 0
	for _, r := range st.Relationships {
		if next, err := time.Parse(time.RFC3339, r.NextAttempt); err == nil && now.Sub(next) > overdueAfter {
			n++
		}
	}
	return n, nil
}

// waitSynced waits until the store behind conn holds a bundle of every
// partner, or syncLimit has passed, and returns how many it holds.
func waitSynced(ctx context.Context, conn *grpc.ClientConn, n int) (int, error) {
	bundles := bundlev1.NewBundleClient(conn)
	deadline := time.Now().Add(syncLimit)
	for {
		count, err := bundles.CountBundles(ctx, &bundlev1.CountBundlesRequest{})
		if err != nil {
			return 0, err
		}
		synced := int(count.GetCount()) - 1
		if synced >= n || time.Now().After(deadline) {
			return synced, nil
		}
		if err := haSleep(ctx, 200*time.Millisecond); err != nil {
			return synced, err
		}
	}
}

func haSleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// pollLog is the partners: one HTTPS listener serving every partner's
// bundle (refresh hint haInterval) at /p<i>, as in the scale section, that
// records when each partner was fetched and by which server process.
type pollLog struct {
	url  string
	port int
	srv  *http.Server
	doc  []byte

	mu    sync.Mutex
	pids  []int
	conns map[string]int // client address → index in pids, -1 unknown
	polls [][]haPoll     // by partner
}

// haPoll is one fetch of a partner's bundle.
type haPoll struct {
	at time.Time
	by int
}

func startPollLog(ctx context.Context, pki *webPKI, n int) (*pollLog, error) {
	doc, err := haBundle(pki)
	if err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().(*net.TCPAddr) //nolint:forcetypeassert // a TCP listener's address
	f := &pollLog{url: "https://" + addr.String(), port: addr.Port, doc: doc, conns: map[string]int{}, polls: make([][]haPoll, n)}
	f.srv = &http.Server{Handler: f, ReadHeaderTimeout: 5 * time.Second, ErrorLog: quietLog, ConnState: f.connState,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pki.cert}, MinVersion: tls.VersionTLS12}}
	go func() { _ = f.srv.ServeTLS(l, "", "") }()
	return f, nil
}

// haBundle is the fleet's bundle with the refresh hint haInterval.
func haBundle(pki *webPKI) ([]byte, error) {
	doc, err := fleetBundle(pki.caCert)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(doc, &m); err != nil {
		return nil, err
	}
	m["spiffe_refresh_hint"] = json.RawMessage(strconv.Itoa(int(haInterval / time.Second)))
	return json.Marshal(m)
}

func (f *pollLog) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = f.srv.Shutdown(ctx)
}

// trace sets the server processes whose polls are told apart.
func (f *pollLog) trace(pids []int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pids = pids
}

func (f *pollLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/p"))
	if err != nil || i < 0 || i >= len(f.polls) {
		http.NotFound(w, r)
		return
	}
	now := time.Now()
	f.mu.Lock()
	by, ok := f.conns[r.RemoteAddr]
	if !ok {
		by = -1
	}
	f.polls[i] = append(f.polls[i], haPoll{at: now, by: by})
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(f.doc)
}

// connState finds the process of each new connection (before any request
// on it is served) and forgets it when the connection closes.
func (f *pollLog) connState(c net.Conn, state http.ConnState) {
	addr := c.RemoteAddr().String()
	switch state {
	case http.StateNew:
		f.mu.Lock()
		pids := f.pids
		f.mu.Unlock()
		by := connOwner(addr, f.port, pids)
		f.mu.Lock()
		f.conns[addr] = by
		f.mu.Unlock()
	case http.StateClosed, http.StateHijacked:
		f.mu.Lock()
		delete(f.conns, addr)
		f.mu.Unlock()
	default:
	}
}

// connOwner returns the index in pids of the process holding the client end
// of a connection from client to the local port server, or -1: the
// socket's inode from /proc/net/tcp, then the process whose descriptors
// hold it.
func connOwner(client string, server int, pids []int) int {
	if len(pids) == 1 {
		return 0
	}
	_, port, err := net.SplitHostPort(client)
	if err != nil {
		return -1
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return -1
	}
	inode := socketInode(p, server)
	if inode == "" {
		return -1
	}
	for i, pid := range pids {
		if holdsSocket(pid, inode) {
			return i
		}
	}
	return -1
}

// socketInode returns the inode of the IPv4 socket whose local port is
// local and remote port remote.
func socketInode(local, remote int) string {
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return ""
	}
	l, r := fmt.Sprintf(":%04X", local), fmt.Sprintf(":%04X", remote)
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 9 && strings.HasSuffix(f[1], l) && strings.HasSuffix(f[2], r) {
			return f[9]
		}
	}
	return ""
}

// holdsSocket reports whether process pid has the socket inode open.
func holdsSocket(pid int, inode string) bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	want := "socket:[" + inode + "]"
	for _, e := range entries {
		if link, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && link == want {
			return true
		}
	}
	return false
}

// tally counts the polls between from and to for nproc processes.
func (f *pollLog) tally(from, to time.Time, nproc int) pollTally {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := pollTally{ByProcess: make([]int, nproc)}
	var gaps []time.Duration
	for _, polls := range f.polls {
		var at []time.Time
		for _, p := range polls {
			if p.at.Before(from) || !p.at.Before(to) {
				continue
			}
			at = append(at, p.at)
			if p.by >= 0 && p.by < nproc {
				t.ByProcess[p.by]++
			} else {
				t.Unknown++
			}
		}
		gaps = t.add(at, gaps)
	}
	if len(gaps) > 0 {
		slices.Sort(gaps)
		t.Gaps = [4]time.Duration{gaps[0], gaps[len(gaps)/2], gaps[len(gaps)*99/100], gaps[len(gaps)-1]}
	}
	intervals := float64(to.Sub(from)) / float64(haInterval)
	t.PerInterval = float64(t.Polls) / (float64(len(f.polls)) * intervals)
	return t
}

// add counts one partner's polls, in order of arrival, and returns gaps
// with the times between them appended.
func (t *pollTally) add(at []time.Time, gaps []time.Duration) []time.Duration {
	t.Polls += len(at)
	if len(at) == 0 {
		t.Unpolled++
		return gaps
	}
	most := 0
	for i := range at {
		n := 1
		for j := i + 1; j < len(at) && at[j].Sub(at[i]) < haTwice; j++ {
			n++
		}
		most = max(most, n)
		if i > 0 {
			gaps = append(gaps, at[i].Sub(at[i-1]))
		}
	}
	t.MaxClose = max(t.MaxClose, most)
	if most > 1 {
		t.PolledTwice++
	}
	return gaps
}

// haDatabase is the PostgreSQL of the replicas: pgtest's cluster with
// pg_stat_statements, one database, and one counting proxy per replica.
type haDatabase struct {
	c        *pgtest.Cluster
	name     string
	pwFile   string
	sealFile string
	stats    *pgx.Conn // to the postgres database, so the harness's own queries are not counted
	proxies  []*pgProxy

	xact0  int64
	bytes0 [2]int64
	conns0 int64
	cpu0   time.Duration
}

func startHADatabase(ctx context.Context, dir string) (db *haDatabase, err error) {
	c, err := pgtest.StartCluster() //nolint:contextcheck // pgtest bounds its commands itself
	if err != nil {
		return nil, err
	}
	db = &haDatabase{c: c, pwFile: filepath.Join(dir, "db-password"), sealFile: filepath.Join(dir, "seal.key")}
	defer func() { //nolint:contextcheck // stopping must work after ctx is cancelled
		if err != nil {
			db.stop()
		}
	}()
	if err := c.Exec(ctx, "postgres", "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"); err != nil {
		return db, err
	}
	// Restarted to load pg_stat_statements; pgtest bounds its commands itself.
	if err := c.Stop(); err != nil { //nolint:contextcheck // see above
		return db, err
	}
	if err := c.Restart(); err != nil { //nolint:contextcheck // see above
		return db, err
	}
	if err := c.Exec(ctx, "postgres", "CREATE EXTENSION pg_stat_statements"); err != nil {
		return db, err
	}
	dsn, err := c.CreateDatabase(ctx)
	if err != nil {
		return db, err
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return db, err
	}
	db.name = strings.TrimPrefix(u.Path, "/")
	seal := make([]byte, 32)
	_, _ = rand.Read(seal)
	if err := os.WriteFile(db.sealFile, []byte(hex.EncodeToString(seal)+"\n"), 0o600); err != nil {
		return db, err
	}
	if err := os.WriteFile(db.pwFile, []byte(c.Password+"\n"), 0o600); err != nil {
		return db, err
	}
	cfg, err := pgx.ParseConfig(c.DSN("postgres"))
	if err != nil {
		return db, err
	}
	cfg.Password = c.Password
	db.stats, err = pgx.ConnectConfig(ctx, cfg)
	return db, err
}

func (db *haDatabase) stop() {
	if db.stats != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = db.stats.Close(ctx)
		cancel()
	}
	for _, p := range db.proxies {
		p.stop()
	}
	if err := db.c.Stop(); err != nil {
		logf("   stop PostgreSQL: %v", err)
		return
	}
	_ = db.c.Remove()
}

// proxy starts a counting proxy to the cluster for one replica.
func (db *haDatabase) proxy(ctx context.Context) (*pgProxy, error) {
	p, err := startPGProxy(ctx, fmt.Sprintf("127.0.0.1:%d", db.c.Port))
	if err != nil {
		return nil, err
	}
	db.proxies = append(db.proxies, p)
	return p, nil
}

// config is the configuration a replica reaching the database through p
// adds to its own.
func (db *haDatabase) config(p *pgProxy) string {
	u := url.URL{Scheme: "postgres", User: url.User(pgtest.SuperUser), Host: p.addr(), Path: "/" + db.name, RawQuery: "sslmode=disable"}
	return fmt.Sprintf("ca:\n  key_seal_file: %s\ndatastore:\n  driver: postgres\n  dsn: %s\n  password_file: %s\n",
		db.sealFile, u.String(), db.pwFile)
}

// begin starts the window: it resets pg_stat_statements and notes the
// counters.
func (db *haDatabase) begin(ctx context.Context) error {
	if _, err := db.stats.Exec(ctx, "SELECT pg_stat_statements_reset()"); err != nil {
		return fmt.Errorf("reset pg_stat_statements: %w", err)
	}
	var err error
	if db.xact0, err = db.transactions(ctx); err != nil {
		return err
	}
	db.bytes0, db.conns0 = db.traffic()
	db.cpu0, err = db.cpuTime()
	return err
}

// end returns the database work since begin.
func (db *haDatabase) end(ctx context.Context, window time.Duration) (*haDB, error) {
	cpu, err := db.cpuTime()
	if err != nil {
		return nil, err
	}
	bytes, conns := db.traffic()
	xact, err := db.transactions(ctx)
	if err != nil {
		return nil, err
	}
	res := &haDB{Transactions: xact - db.xact0, ToDB: bytes[0] - db.bytes0[0], FromDB: bytes[1] - db.bytes0[1],
		ConnsOpened: conns - db.conns0, CPU: 100 * float64(cpu-db.cpu0) / float64(window)}
	rows, err := db.stats.Query(ctx, `SELECT s.query, s.calls, s.rows FROM pg_stat_statements s
		JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1 ORDER BY s.calls DESC`, db.name)
	if err != nil {
		return nil, fmt.Errorf("read pg_stat_statements: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var s haStatement
		if err := rows.Scan(&s.Query, &s.Calls, &s.Rows); err != nil {
			return nil, err
		}
		res.Statements += s.Calls
		if len(res.Top) < 12 {
			s.Query = strings.Join(strings.Fields(s.Query), " ")
			if len(s.Query) > 160 {
				s.Query = s.Query[:160] + "…"
			}
			res.Top = append(res.Top, s)
		}
	}
	return res, rows.Err()
}

func (db *haDatabase) transactions(ctx context.Context) (int64, error) {
	var n int64
	err := db.stats.QueryRow(ctx, "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1", db.name).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("read pg_stat_database: %w", err)
	}
	return n, nil
}

// traffic sums the proxies' bytes (to, from the database) and connections.
func (db *haDatabase) traffic() ([2]int64, int64) {
	var bytes [2]int64
	var conns int64
	for _, p := range db.proxies {
		bytes[0] += p.toDB.Load()
		bytes[1] += p.fromDB.Load()
		conns += p.conns.Load()
	}
	return bytes, conns
}

// cpuTime is the CPU time of the postmaster and all its processes: its
// own, its reaped children's and its live children's.
func (db *haDatabase) cpuTime() (time.Duration, error) {
	data, err := os.ReadFile(filepath.Join(db.c.Dir, "data", "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	first, _, _ := strings.Cut(string(data), "\n")
	pm, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return 0, fmt.Errorf("postmaster.pid: %w", err)
	}
	own, err := procTicks(pm, true)
	if err != nil {
		return 0, err
	}
	total := own
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == pm || parentOf(pid) != pm {
			continue
		}
		if n, err := procTicks(pid, false); err == nil {
			total += n
		}
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(total) * time.Second / ticks, nil
}

// statFields returns the fields of /proc/<pid>/stat after the command name.
func statFields(pid int) ([]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 || i+2 > len(data) {
		return nil, errors.New("unexpected /proc stat")
	}
	return strings.Fields(string(data[i+2:])), nil
}

func parentOf(pid int) int {
	f, err := statFields(pid)
	if err != nil || len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// procTicks is a process's user+system clock ticks, with its reaped
// children's when children is set.
func procTicks(pid int, children bool) (int64, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	if len(f) < 15 {
		return 0, errors.New("unexpected /proc stat")
	}
	fields := f[11:13]
	if children {
		fields = f[11:15]
	}
	var total int64
	for _, s := range fields {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// pgProxy forwards one replica's connections to PostgreSQL and counts the
// bytes each way and the connections opened.
type pgProxy struct {
	l        net.Listener
	upstream string
	toDB     atomic.Int64
	fromDB   atomic.Int64
	conns    atomic.Int64

	mu   sync.Mutex
	open map[net.Conn]struct{}
	wg   sync.WaitGroup
}

func startPGProxy(ctx context.Context, upstream string) (*pgProxy, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &pgProxy{l: l, upstream: upstream, open: map[net.Conn]struct{}{}}
	p.wg.Go(func() { p.serve(context.WithoutCancel(ctx)) })
	return p, nil
}

func (p *pgProxy) addr() string { return p.l.Addr().String() }

func (p *pgProxy) serve(ctx context.Context) {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.conns.Add(1)
		p.wg.Go(func() { p.forward(ctx, c) })
	}
}

// forward copies between c and a new connection to the database until
// either side closes.
func (p *pgProxy) forward(ctx context.Context, c net.Conn) {
	var d net.Dialer
	up, err := d.DialContext(ctx, "tcp", p.upstream)
	if err != nil {
		_ = c.Close()
		return
	}
	if !p.track(c, up) {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, countedReader{c, &p.toDB}); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, countedReader{up, &p.fromDB}); done <- struct{}{} }()
	<-done
	_, _ = c.Close(), up.Close()
	<-done
	p.mu.Lock()
	delete(p.open, c)
	delete(p.open, up)
	p.mu.Unlock()
}

// track records an open pair, or closes it if the proxy is stopping.
func (p *pgProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open == nil {
		for _, c := range conns {
			_ = c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.open[c] = struct{}{}
	}
	return true
}

func (p *pgProxy) stop() {
	_ = p.l.Close()
	p.mu.Lock()
	open := p.open
	p.open = nil
	p.mu.Unlock()
	for c := range open {
		_ = c.Close()
	}
	p.wg.Wait()
}

// countedReader counts what is read through it.
type countedReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countedReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}
