package adminapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"regexp"
	"sync"
	"time"

	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/treatyhq/treaty/internal/socket"
)

// AuditRecord is one admin API change: who asked for what, on what, and
// how it ended.
type AuditRecord struct {
	Time      time.Time `json:"time"`
	CallerUID int       `json:"caller_uid"`
	CallerPID int       `json:"caller_pid"`
	Operation string    `json:"operation"`
	// Target is the request, in protobuf JSON, cut at maxAuditTarget bytes.
	Target string `json:"target"`
	// Result is "ok" or the gRPC code; Message says why it failed.
	Result  string `json:"result"`
	Message string `json:"message,omitempty"`
	// ItemFailures counts the failed items of a batch call that succeeded
	// as a whole.
	ItemFailures int `json:"item_failures,omitempty"`
}

// maxAuditTarget bounds the request text kept in a record.
const maxAuditTarget = 512

// userinfo matches the userinfo of any URL in a request's text: a bundle
// endpoint URL may arrive with a password, which is refused but must not
// be recorded either.
var userinfo = regexp.MustCompile(`://[^/?#@"\s]*@`)

// auditor writes audit records to the log and, when set, a JSON-lines
// file opened for appending.
type auditor struct {
	log  *slog.Logger
	mu   sync.Mutex
	file io.Writer
	now  func() time.Time
}

// intercept records every mutating call after it ran.
func (a *auditor) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	if !mutates(info.FullMethod) {
		return resp, err
	}
	rec := AuditRecord{Time: a.now().UTC(), Operation: info.FullMethod, Result: "ok", CallerUID: -1, CallerPID: -1}
	if p, ok := socket.Peer(ctx); ok {
		rec.CallerUID, rec.CallerPID = p.UID, p.PID
	}
	if m, ok := req.(proto.Message); ok {
		if js, jerr := protojson.Marshal(withoutSecrets(m)); jerr == nil {
			js = userinfo.ReplaceAll(js, []byte("://xxxxx@"))
			rec.Target = string(js[:min(len(js), maxAuditTarget)])
		}
	}
	if err != nil {
		st := status.Convert(err)
		rec.Result, rec.Message = st.Code().String(), st.Message()
	} else if m, ok := resp.(proto.Message); ok {
		rec.ItemFailures = itemFailures(m)
	}
	a.write(rec)
	return resp, err
}

func (a *auditor) write(rec AuditRecord) {
	a.log.Info("audit", "audit", true, "operation", rec.Operation, "caller_uid", rec.CallerUID, "caller_pid", rec.CallerPID,
		"target", rec.Target, "result", rec.Result, "message", rec.Message, "item_failures", rec.ItemFailures)
	if a.file == nil {
		return
	}
	line, err := json.Marshal(rec)
	if err != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.file.Write(append(line, '\n')); err != nil {
		a.log.Error("cannot append to the audit log", attrError, err)
	}
}

// withoutSecrets returns m, or a copy of it without the secrets a request
// may carry: the join token a caller chose (CreateJoinToken), which admits
// an agent until it is used.
func withoutSecrets(m proto.Message) proto.Message {
	r, ok := m.(*agentv1.CreateJoinTokenRequest)
	if !ok || r.GetToken() == "" {
		return m
	}
	c := proto.CloneOf(r)
	c.Token = "xxxxx"
	return c
}

// itemFailures counts results[].status.code != 0 in a batch response.
func itemFailures(m proto.Message) int {
	r := m.ProtoReflect()
	fd := r.Descriptor().Fields().ByName("results")
	if fd == nil || !fd.IsList() || fd.Message() == nil {
		return 0
	}
	list, n := r.Get(fd).List(), 0
	for i := range list.Len() {
		item := list.Get(i).Message()
		sfd := item.Descriptor().Fields().ByName("status")
		if sfd == nil || sfd.Message() == nil {
			continue
		}
		st := item.Get(sfd).Message()
		if cfd := st.Descriptor().Fields().ByName("code"); cfd != nil && st.Get(cfd).Int() != 0 {
			n++
		}
	}
	return n
}
