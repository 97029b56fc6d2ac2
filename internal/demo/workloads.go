package demo

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/treatyhq/treaty/examples/mtls/service"
)

// IDs of the demo's workloads.
var (
	provisioningID = spiffeid.RequireFromString("spiffe://alpha.test/svc/provisioning")
	reportingID    = spiffeid.RequireFromString("spiffe://alpha.test/svc/reporting")
	firmwareID     = spiffeid.RequireFromString("spiffe://beta.test/svc/firmware")
	beta           = spiffeid.RequireTrustDomainFromString("beta.test")
)

// workloads are the demo's three workloads. They run inside the demo
// process and reach the servers over the real Workload API sockets; the
// process's uid is the selector that identifies them.
type workloads struct {
	provisioning, reporting, firmware *workloadapi.X509Source
	firmwareURL                       string
	refusals                          *lineBuffer
	stop                              context.CancelFunc
	done                              chan error
}

// register creates the registration entries.
func (r *run) register(ctx context.Context) error {
	r.heading("Register the workloads (selector: this process's uid, %d)", os.Getuid())
	uid := "unix:uid:" + strconv.Itoa(os.Getuid())
	entries := []struct {
		d        *domain
		id, hint string
		partner  string
	}{
		{r.alpha, provisioningID.String(), "provisioning", "beta.test"},
		{r.alpha, reportingID.String(), "reporting", "beta.test"},
		{r.beta, firmwareID.String(), "firmware", "alpha.test"},
	}
	for _, e := range entries {
		if _, err := r.treaty(ctx, false, "entry", "create", "-socketPath", e.d.adminSocket, "-spiffeID", e.id,
			"-selector", uid, "-federatesWith", e.partner, "-hint", e.hint); err != nil {
			return err
		}
	}
	return nil
}

// fetchSVIDs opens the workloads' X509Sources and shows what they got.
func (r *run) fetchSVIDs(ctx context.Context) error {
	r.heading("The workloads get X509-SVIDs and bundles over the SPIFFE Workload API")
	if _, err := r.treaty(ctx, true, "x509", "fetch", "-socketPath", r.alpha.workloadSocket); err != nil {
		return err
	}
	w := &workloads{refusals: &lineBuffer{}}
	var err error
	open := func(d *domain, hint string) (*workloadapi.X509Source, error) {
		return workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+d.workloadSocket)),
			workloadapi.WithDefaultX509SVIDPicker(service.PickByHint(hint)))
	}
	if w.provisioning, err = open(r.alpha, "provisioning"); err != nil {
		return err
	}
	if w.reporting, err = open(r.alpha, "reporting"); err != nil {
		return err
	}
	if w.firmware, err = open(r.beta, "firmware"); err != nil {
		return err
	}
	r.workloads = w
	for _, s := range []*workloadapi.X509Source{w.provisioning, w.reporting} {
		svid, _ := s.GetX509SVID()
		r.res.AlphaSVIDs = append(r.res.AlphaSVIDs, svid.ID.String())
	}
	svid, _ := w.firmware.GetX509SVID()
	r.res.BetaSVIDs = append(r.res.BetaSVIDs, svid.ID.String())
	r.say("    beta.test's workload holds %s and trusts alpha.test's authorities too", svid.ID)
	return nil
}

// mtls starts the firmware service in beta.test and calls it from alpha.test twice.
func (r *run) mtls(ctx context.Context) error {
	w := r.workloads
	r.heading("Cross-domain mTLS, authorised by SPIFFE ID")
	p, err := pickPort(ctx, r.cfg.ServicePort)
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		return fmt.Errorf("listen for the mTLS service (-servicePort): %w", err)
	}
	w.firmwareURL = "https://" + l.Addr().String() + "/"
	r.res.ServiceURL = w.firmwareURL
	srv := &service.Server{Source: w.firmware, Allowed: []spiffeid.ID{provisioningID}, Logger: slog.New(slog.NewTextHandler(w.refusals, nil))}
	svcCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	w.stop, w.done = stop, make(chan error, 1)
	go func() { w.done <- srv.Serve(svcCtx, l) }()
	r.say("    beta.test runs %s at %s; it allows only %s", firmwareID, w.firmwareURL, provisioningID)

	body, err := service.Call(ctx, w.provisioning, w.provisioning, w.firmwareURL, firmwareID)
	if err != nil {
		return fmt.Errorf("the allowed call failed: %w", err)
	}
	r.res.AllowedCall = strings.TrimSpace(body)
	r.say("    %s -> %s: allowed, answer %q", provisioningID, firmwareID, r.res.AllowedCall)

	_, err = service.Call(ctx, w.reporting, w.reporting, w.firmwareURL, firmwareID)
	if err == nil {
		return fmt.Errorf("%s was let in although only %s is allowed", reportingID, provisioningID)
	}
	r.res.RefusedCall = "refused"
	r.say("    %s -> %s: refused during the TLS handshake", reportingID, firmwareID)
	if line := w.refusals.find("caller refused"); line != "" {
		r.say("      beta's log: %s", line)
	}
	return nil
}

// rotate rotates beta.test's X.509 authority the safe way and shows that
// alpha.test learns the new authority before beta signs with it.
func (r *run) rotate(ctx context.Context) error {
	w := r.workloads
	r.heading("beta.test rotates its X.509 authority while the calls go on")
	out, err := r.treaty(ctx, false, "localauthority", "x509", "prepare", "-socketPath", r.beta.adminSocket, "-output", "json")
	if err != nil {
		return err
	}
	var prepared struct {
		Authority struct {
			ID string `json:"authority_id"`
		} `json:"prepared_authority"`
	}
	if err := json.Unmarshal([]byte(out), &prepared); err != nil {
		return fmt.Errorf("read the prepared authority from %q: %w", out, err)
	}
	if prepared.Authority.ID == "" {
		return fmt.Errorf("no prepared authority in %q", out)
	}
	id := prepared.Authority.ID
	r.res.RotatedAuthority = id
	r.say("      prepared authority %s: published in beta's bundle, not signing yet", id)
	start := time.Now()
	err = poll(ctx, 30*time.Second, func() (bool, error) { return bundleHas(w.provisioning, id), nil })
	if err != nil {
		return fmt.Errorf("alpha.test's workloads never received beta's prepared authority: %w", err)
	}
	r.res.RotationPropagation = time.Since(start)
	r.say("    alpha.test fetched it and its workloads trust it after %s", r.res.RotationPropagation.Round(100*time.Millisecond))
	if _, err := r.treaty(ctx, false, "localauthority", "x509", "activate", "-socketPath", r.beta.adminSocket, "-authorityID", id); err != nil {
		return err
	}
	err = poll(ctx, 30*time.Second, func() (bool, error) {
		svid, err := w.firmware.GetX509SVID()
		return err == nil && hex.EncodeToString(svid.Certificates[0].AuthorityKeyId) == id, nil
	})
	if err != nil {
		return fmt.Errorf("beta's service never received an SVID from the new authority: %w", err)
	}
	r.say("    beta's service received an SVID signed by the new authority over the Workload API")
	body, err := service.Call(ctx, w.provisioning, w.provisioning, w.firmwareURL, firmwareID)
	if err != nil {
		return fmt.Errorf("the call after the rotation failed: %w", err)
	}
	r.res.CallAfterRotation = strings.TrimSpace(body)
	r.say("    %s -> %s after the rotation: allowed, answer %q", provisioningID, firmwareID, r.res.CallAfterRotation)
	return nil
}

// bundleHas reports whether the source trusts beta's authority id.
func bundleHas(source *workloadapi.X509Source, id string) bool {
	b, err := source.GetX509BundleForTrustDomain(beta)
	if err != nil {
		return false
	}
	for _, c := range b.X509Authorities() {
		if hex.EncodeToString(c.SubjectKeyId) == id {
			return true
		}
	}
	return false
}

// status prints both sides' federation status.
func (r *run) status(ctx context.Context) error {
	r.heading("Federation status on both sides")
	for _, d := range []*domain{r.alpha, r.beta} {
		if _, err := r.treaty(ctx, true, "federation", "status", "-socketPath", d.adminSocket); err != nil {
			return err
		}
	}
	return nil
}

// close stops the service and the sources, returning the service's error.
func (w *workloads) close() error {
	if w == nil {
		return nil
	}
	var err error
	if w.stop != nil {
		w.stop()
		err = <-w.done
	}
	for _, s := range []*workloadapi.X509Source{w.provisioning, w.reporting, w.firmware} {
		if s != nil {
			_ = s.Close()
		}
	}
	return err
}

// lineBuffer collects log lines safely.
type lineBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lineBuffer) find(substr string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	for line := range strings.SplitSeq(b.buf.String(), "\n") {
		if strings.Contains(line, substr) {
			return line
		}
	}
	return ""
}
