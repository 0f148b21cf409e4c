package ctl

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// printer writes command results in one of etcdctl's output formats
// (-w simple|json|fields|table|protobuf). Every method mirrors what etcdctl
// prints for the same response, byte for byte for simple, json and fields.
type printer struct {
	w         io.Writer
	format    string
	hex       bool
	valueOnly bool
}

func (r *Root) printer() *printer {
	return &printer{w: r.stdout, format: r.g.writeOut, hex: r.g.hex}
}

// unsupported is etcdctl's answer for a format a command cannot print.
func (p *printer) unsupported() error {
	return exitf(ExitBadFeature, "%s not supported as output format", p.format)
}

func (p *printer) printf(format string, a ...any) { fmt.Fprintf(p.w, format, a...) }
func (p *printer) println(a ...any)               { fmt.Fprintln(p.w, a...) }

// json prints v as one line of JSON (encoding/json, as etcdctl does: the
// API types carry snake_case tags, 64-bit numbers stay numbers, bytes are
// base64).
func (p *printer) json(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return exitErr(ExitError, err)
	}
	p.println(string(b))
	return nil
}

type marshaler = proto.Message

// protobuf prints the wire encoding of m.
func (p *printer) protobuf(m marshaler) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return exitErr(ExitError, err)
	}
	_, err = p.w.Write(b)
	return err
}

// hexBytes renders b as \x-escaped hex pairs, etcdctl's --hex.
func hexBytes(b []byte) string {
	h := hex.EncodeToString(b)
	var sb strings.Builder
	for i := 0; i < len(h); i += 2 {
		sb.WriteString(`\x`)
		sb.WriteString(h[i : i+2])
	}
	return sb.String()
}

func (p *printer) simpleKV(kv *mvccpb.KeyValue) {
	k, v := string(kv.Key), string(kv.Value)
	if p.hex {
		k, v = hexBytes(kv.Key), hexBytes(kv.Value)
	}
	if !p.valueOnly {
		p.println(k)
	}
	p.println(v)
}

func (p *printer) fieldsHeader(h *pb.ResponseHeader) {
	if h == nil {
		h = &pb.ResponseHeader{}
	}
	p.println(`"ClusterID" :`, h.ClusterId)
	p.println(`"MemberID" :`, h.MemberId)
	p.println(`"Revision" :`, h.Revision)
	p.println(`"RaftTerm" :`, h.RaftTerm)
}

func (p *printer) fieldsKV(prefix string, kv *mvccpb.KeyValue) {
	p.printf("\"%sKey\" : %q\n", prefix, string(kv.Key))
	p.printf("\"%sCreateRevision\" : %d\n", prefix, kv.CreateRevision)
	p.printf("\"%sModRevision\" : %d\n", prefix, kv.ModRevision)
	p.printf("\"%sVersion\" : %d\n", prefix, kv.Version)
	p.printf("\"%sValue\" : %q\n", prefix, string(kv.Value))
	p.printf("\"%sLease\" : %d\n", prefix, kv.Lease)
}

// Get prints a range response. countOnly prints only the count (simple).
func (p *printer) Get(r *pb.RangeResponse, countOnly bool) error {
	switch p.format {
	case "simple":
		if countOnly {
			p.println(r.Count)
			return nil
		}
		for _, kv := range r.Kvs {
			p.simpleKV(kv)
		}
	case "json":
		return p.json(r)
	case "fields":
		p.fieldsHeader(r.Header)
		for _, kv := range r.Kvs {
			p.fieldsKV("", kv)
		}
		p.println(`"More" :`, r.More)
		p.println(`"Count" :`, r.Count)
	case "protobuf":
		return p.protobuf(r)
	default:
		return p.unsupported()
	}
	return nil
}

func (p *printer) Put(r *pb.PutResponse) error {
	switch p.format {
	case "simple":
		p.println("OK")
		if r.PrevKv != nil {
			p.simpleKV(r.PrevKv)
		}
	case "json":
		return p.json(r)
	case "fields":
		p.fieldsHeader(r.Header)
		if r.PrevKv != nil {
			p.fieldsKV("Prev", r.PrevKv)
		}
	case "protobuf":
		return p.protobuf(r)
	default:
		return p.unsupported()
	}
	return nil
}

func (p *printer) Del(r *pb.DeleteRangeResponse) error {
	switch p.format {
	case "simple":
		p.println(r.Deleted)
		for _, kv := range r.PrevKvs {
			p.simpleKV(kv)
		}
	case "json":
		return p.json(r)
	case "fields":
		p.fieldsHeader(r.Header)
		p.println(`"Deleted" :`, r.Deleted)
		for _, kv := range r.PrevKvs {
			p.fieldsKV("Prev", kv)
		}
	case "protobuf":
		return p.protobuf(r)
	default:
		return p.unsupported()
	}
	return nil
}

func (p *printer) Txn(r *pb.TxnResponse) error {
	switch p.format {
	case "simple":
		if r.Succeeded {
			p.println("SUCCESS")
		} else {
			p.println("FAILURE")
		}
		for _, op := range r.Responses {
			p.println("")
			if err := p.txnOp(op); err != nil {
				return err
			}
		}
	case "json":
		return p.json(r)
	case "fields":
		p.fieldsHeader(r.Header)
		p.println(`"Succeeded" :`, r.Succeeded)
		for _, op := range r.Responses {
			if err := p.txnOp(op); err != nil {
				return err
			}
		}
	case "protobuf":
		return p.protobuf(r)
	default:
		return p.unsupported()
	}
	return nil
}

func (p *printer) txnOp(op *pb.ResponseOp) error {
	switch v := op.Response.(type) {
	case *pb.ResponseOp_ResponseRange:
		return p.Get(v.ResponseRange, false)
	case *pb.ResponseOp_ResponsePut:
		return p.Put(v.ResponsePut)
	case *pb.ResponseOp_ResponseDeleteRange:
		return p.Del(v.ResponseDeleteRange)
	case *pb.ResponseOp_ResponseTxn:
		return p.Txn(v.ResponseTxn)
	default:
		p.printf("unexpected response %+v\n", op)
	}
	return nil
}

// watchJSON is the shape etcdctl 3.4 marshals for a watch response.
type watchJSON struct {
	Header          *pb.ResponseHeader
	Events          []*mvccpb.Event
	CompactRevision int64
	Canceled        bool
	Created         bool
}

func (p *printer) Watch(r clientv3.WatchResponse) error {
	switch p.format {
	case "simple":
		for _, e := range r.Events {
			p.println(e.Type)
			if e.PrevKv != nil {
				p.simpleKV(e.PrevKv)
			}
			p.simpleKV(e.Kv)
		}
	case "json":
		w := watchJSON{Header: r.Header, CompactRevision: r.CompactRevision, Canceled: r.Canceled, Created: r.Created}
		if w.Header == nil {
			w.Header = &pb.ResponseHeader{}
		}
		for _, e := range r.Events {
			w.Events = append(w.Events, (*mvccpb.Event)(e))
		}
		return p.json(w)
	case "fields":
		p.fieldsHeader(r.Header)
		for _, e := range r.Events {
			p.println(`"Type" :`, e.Type)
			if e.PrevKv != nil {
				p.fieldsKV("Prev", e.PrevKv)
			}
			p.fieldsKV("", e.Kv)
		}
	case "protobuf":
		wr := &pb.WatchResponse{Header: r.Header, CompactRevision: r.CompactRevision, Canceled: r.Canceled, Created: r.Created}
		for _, e := range r.Events {
			wr.Events = append(wr.Events, (*mvccpb.Event)(e))
		}
		return p.protobuf(wr)
	default:
		return p.unsupported()
	}
	return nil
}

func (p *printer) Grant(r *clientv3.LeaseGrantResponse) error {
	switch p.format {
	case "simple":
		p.printf("lease %016x granted with TTL(%ds)\n", r.ID, r.TTL)
	case "json":
		return p.json(r)
	case "fields":
		p.fieldsHeader(r.ResponseHeader)
		p.println(`"ID" :`, r.ID)
		p.println(`"TTL" :`, r.TTL)
	default:
		return p.unsupported()
	}
	return nil
}

func (p *printer) Revoke(id clientv3.LeaseID, r *clientv3.LeaseRevokeResponse) error {
	switch p.format {
	case "simple":
		p.printf("lease %016x revoked\n", id)
	case "json":
		return p.json(r)
	case "fields":
		p.fieldsHeader(r.Header)
	default:
		return p.unsupported()
	}
	return nil
}

func (p *printer) KeepAlive(r *clientv3.LeaseKeepAliveResponse) error {
	switch p.format {
	case "simple":
		p.printf("lease %016x keepalived with TTL(%d)\n", r.ID, r.TTL)
	case "json":
		return p.json(r)
	case "fields":
		p.fieldsHeader(r.ResponseHeader)
		p.println(`"ID" :`, r.ID)
		p.println(`"TTL" :`, r.TTL)
	default:
		return p.unsupported()
	}
	return nil
}

func (p *printer) TimeToLive(r *clientv3.LeaseTimeToLiveResponse, keys bool) error {
	switch p.format {
	case "simple":
		if r.GrantedTTL == 0 && r.TTL == -1 {
			p.printf("lease %016x already expired\n", r.ID)
			return nil
		}
		txt := fmt.Sprintf("lease %016x granted with TTL(%ds), remaining(%ds)", r.ID, r.GrantedTTL, r.TTL)
		if keys {
			ks := make([]string, len(r.Keys))
			for i := range r.Keys {
				ks[i] = string(r.Keys[i])
			}
			txt += fmt.Sprintf(", attached keys(%v)", ks)
		}
		p.println(txt)
	case "json":
		return p.json(r)
	case "fields":
		p.fieldsHeader(r.ResponseHeader)
		p.println(`"ID" :`, r.ID)
		p.println(`"TTL" :`, r.TTL)
		p.println(`"GrantedTTL" :`, r.GrantedTTL)
		for _, k := range r.Keys {
			p.printf("\"Key\" : %q\n", string(k))
		}
	default:
		return p.unsupported()
	}
	return nil
}

func (p *printer) Leases(r *clientv3.LeaseLeasesResponse) error {
	switch p.format {
	case "simple":
		p.printf("found %d leases\n", len(r.Leases))
		for _, l := range r.Leases {
			p.printf("%016x\n", l.ID)
		}
	case "json":
		return p.json(r)
	case "fields":
		p.fieldsHeader(r.ResponseHeader)
		for _, l := range r.Leases {
			p.println(`"ID" :`, l.ID)
		}
	default:
		return p.unsupported()
	}
	return nil
}

func (p *printer) Alarm(r *pb.AlarmResponse) error {
	switch p.format {
	case "simple":
		for _, a := range r.Alarms {
			p.printf("memberID:%d alarm:%s \n", a.MemberID, a.Alarm)
		}
	case "json":
		return p.json(r)
	case "fields":
		p.fieldsHeader(r.Header)
		for _, a := range r.Alarms {
			p.println(`"MemberID" :`, a.MemberID)
			p.println(`"AlarmType" :`, a.Alarm)
			p.println()
		}
	case "protobuf":
		return p.protobuf(r)
	default:
		return p.unsupported()
	}
	return nil
}

func memberRows(members []*pb.Member) (hdr []string, rows [][]string) {
	hdr = []string{"ID", "Status", "Name", "Peer Addrs", "Client Addrs", "Is Learner"}
	for _, m := range members {
		status := "started"
		if m.Name == "" {
			status = "unstarted"
		}
		rows = append(rows, []string{
			fmt.Sprintf("%x", m.ID), status, m.Name,
			strings.Join(m.PeerURLs, ","), strings.Join(m.ClientURLs, ","),
			strconv.FormatBool(m.IsLearner),
		})
	}
	return hdr, rows
}

func (p *printer) MemberList(r *pb.MemberListResponse) error {
	switch p.format {
	case "simple":
		_, rows := memberRows(r.Members)
		p.rows(rows)
	case "json":
		return p.json(r)
	case "fields":
		p.fieldsHeader(r.Header)
		for _, m := range r.Members {
			p.println(`"ID" :`, m.ID)
			p.printf("\"Name\" : %q\n", m.Name)
			for _, u := range m.PeerURLs {
				p.printf("\"PeerURL\" : %q\n", u)
			}
			for _, u := range m.ClientURLs {
				p.printf("\"ClientURL\" : %q\n", u)
			}
			p.println(`"IsLearner" :`, m.IsLearner)
			p.println()
		}
	case "table":
		p.table(memberRows(r.Members))
	case "protobuf":
		return p.protobuf(r)
	}
	return nil
}

// memberChange prints member add/remove/update/promote results.
func (p *printer) memberChange(verb string, id uint64, learner bool, h *pb.ResponseHeader, resp marshaler) error {
	switch p.format {
	case "simple":
		var cid uint64
		if h != nil {
			cid = h.ClusterId
		}
		switch verb {
		case "added":
			// etcdctl 3.4 says the same for a learner.
			p.printf("Member %16x added to cluster %16x\n", id, cid)
		case "removed":
			p.printf("Member %16x removed from cluster %16x\n", id, cid)
		case "updated":
			p.printf("Member %16x updated in cluster %16x\n", id, cid)
		case "promoted":
			p.printf("Member %16x promoted in cluster %16x\n", id, cid)
		}
	case "json":
		return p.json(resp)
	// fields: etcdctl 3.4 has no fields output for membership changes
	// (the change is made, then it exits 4).
	case "protobuf":
		return p.protobuf(resp)
	default:
		return p.unsupported()
	}
	return nil
}

type epHealth struct {
	Ep     string `json:"endpoint"`
	Health bool   `json:"health"`
	Took   string `json:"took"`
	Error  string `json:"error,omitempty"`
}

type epStatus struct {
	Ep   string             `json:"Endpoint"`
	Resp *pb.StatusResponse `json:"Status"`
}

type epHashKV struct {
	Ep   string             `json:"Endpoint"`
	Resp *pb.HashKVResponse `json:"HashKV"`
}

func (p *printer) EndpointHealth(hs []epHealth, stderr io.Writer) error {
	switch p.format {
	case "simple":
		for _, h := range hs {
			if h.Error == "" {
				fmt.Fprintf(stderr, "%s is healthy: successfully committed proposal: took = %v\n", h.Ep, h.Took)
			} else {
				fmt.Fprintf(stderr, "%s is unhealthy: failed to commit proposal: %v\n", h.Ep, h.Error)
			}
		}
	case "json":
		return p.json(hs)
	case "fields":
		for _, h := range hs {
			p.printf("\"Endpoint\" : %q\n", h.Ep)
			p.println(`"Health" :`, h.Health)
			p.println(`"Took" :`, h.Took)
			p.println(`"Error" :`, h.Error)
			p.println()
		}
	case "table":
		rows := [][]string{}
		for _, h := range hs {
			rows = append(rows, []string{h.Ep, strconv.FormatBool(h.Health), h.Took, h.Error})
		}
		p.table([]string{"endpoint", "health", "took", "error"}, rows)
	default:
		return p.unsupported()
	}
	return nil
}

func statusRows(eps []epStatus) (hdr []string, rows [][]string) {
	hdr = []string{"endpoint", "ID", "version", "db size", "is leader", "is learner", "raft term", "raft index", "raft applied index", "errors"}
	for _, s := range eps {
		h := s.Resp.Header
		if h == nil {
			h = &pb.ResponseHeader{}
		}
		rows = append(rows, []string{
			s.Ep,
			fmt.Sprintf("%x", h.MemberId),
			s.Resp.Version,
			humanBytes(uint64(s.Resp.DbSize)),
			strconv.FormatBool(s.Resp.Leader == h.MemberId),
			strconv.FormatBool(s.Resp.IsLearner),
			strconv.FormatUint(s.Resp.RaftTerm, 10),
			strconv.FormatUint(s.Resp.RaftIndex, 10),
			strconv.FormatUint(s.Resp.RaftAppliedIndex, 10),
			strings.Join(s.Resp.Errors, ", "),
		})
	}
	return hdr, rows
}

func (p *printer) EndpointStatus(eps []epStatus) error {
	switch p.format {
	case "simple":
		_, rows := statusRows(eps)
		p.rows(rows)
	case "json":
		// The fields etcdctl 3.4 knows; newer servers' extras
		// (storageVersion, dbSizeQuota, downgradeInfo) are left out so
		// the output matches it byte for byte.
		type status struct {
			Header           *pb.ResponseHeader `json:"header,omitempty"`
			Version          string             `json:"version,omitempty"`
			DbSize           int64              `json:"dbSize,omitempty"`
			Leader           uint64             `json:"leader,omitempty"`
			RaftIndex        uint64             `json:"raftIndex,omitempty"`
			RaftTerm         uint64             `json:"raftTerm,omitempty"`
			RaftAppliedIndex uint64             `json:"raftAppliedIndex,omitempty"`
			Errors           []string           `json:"errors,omitempty"`
			DbSizeInUse      int64              `json:"dbSizeInUse,omitempty"`
			IsLearner        bool               `json:"isLearner,omitempty"`
		}
		type ep struct {
			Ep   string  `json:"Endpoint"`
			Resp *status `json:"Status"`
		}
		out := make([]ep, 0, len(eps))
		for _, e := range eps {
			r := e.Resp
			out = append(out, ep{e.Ep, &status{r.Header, r.Version, r.DbSize, r.Leader, r.RaftIndex, r.RaftTerm, r.RaftAppliedIndex, r.Errors, r.DbSizeInUse, r.IsLearner}})
		}
		return p.json(out)
	case "fields":
		for _, s := range eps {
			p.fieldsHeader(s.Resp.Header)
			p.printf("\"Version\" : %q\n", s.Resp.Version)
			p.println(`"DBSize" :`, s.Resp.DbSize)
			p.println(`"Leader" :`, s.Resp.Leader)
			p.println(`"IsLearner" :`, s.Resp.IsLearner)
			p.println(`"RaftIndex" :`, s.Resp.RaftIndex)
			p.println(`"RaftTerm" :`, s.Resp.RaftTerm)
			p.println(`"RaftAppliedIndex" :`, s.Resp.RaftAppliedIndex)
			p.println(`"Errors" :`, s.Resp.Errors)
			p.printf("\"Endpoint\" : %q\n", s.Ep)
			p.println()
		}
	case "table":
		p.table(statusRows(eps))
	default:
		return p.unsupported()
	}
	return nil
}

func (p *printer) EndpointHashKV(hs []epHashKV) error {
	rows := [][]string{}
	for _, h := range hs {
		rows = append(rows, []string{h.Ep, strconv.FormatUint(uint64(h.Resp.Hash), 10)})
	}
	switch p.format {
	case "simple":
		p.rows(rows)
	case "json":
		// etcdctl 3.4's fields (no hash_revision).
		type hashKV struct {
			Header          *pb.ResponseHeader `json:"header,omitempty"`
			Hash            uint32             `json:"hash,omitempty"`
			CompactRevision int64              `json:"compact_revision,omitempty"`
		}
		type ep struct {
			Ep   string  `json:"Endpoint"`
			Resp *hashKV `json:"HashKV"`
		}
		out := make([]ep, 0, len(hs))
		for _, h := range hs {
			out = append(out, ep{h.Ep, &hashKV{h.Resp.Header, h.Resp.Hash, h.Resp.CompactRevision}})
		}
		return p.json(out)
	case "fields":
		for _, h := range hs {
			p.fieldsHeader(h.Resp.Header)
			p.printf("\"Endpoint\" : %q\n", h.Ep)
			p.println(`"Hash" :`, h.Resp.Hash)
			p.println()
		}
	case "table":
		p.table([]string{"endpoint", "hash"}, rows)
	default:
		return p.unsupported()
	}
	return nil
}

// dbStatus is `snapshot status`'s result, with etcdctl's JSON names.
type dbStatus struct {
	Hash      uint32 `json:"hash"`
	Revision  int64  `json:"revision"`
	TotalKey  int    `json:"totalKey"`
	TotalSize int64  `json:"totalSize"`
}

func (p *printer) DBStatus(s dbStatus) error {
	hdr := []string{"hash", "revision", "total keys", "total size"}
	rows := [][]string{{fmt.Sprintf("%x", s.Hash), strconv.FormatInt(s.Revision, 10), strconv.Itoa(s.TotalKey), humanBytes(uint64(s.TotalSize))}}
	switch p.format {
	case "simple":
		p.rows(rows)
	case "json":
		return p.json(s)
	case "fields":
		p.println(`"Hash" :`, s.Hash)
		p.println(`"Revision" :`, s.Revision)
		p.println(`"Keys" :`, s.TotalKey)
		p.println(`"Size" :`, s.TotalSize)
	case "table":
		p.table(hdr, rows)
	default:
		return p.unsupported()
	}
	return nil
}

func (p *printer) MoveLeader(from, to uint64, r *pb.MoveLeaderResponse) error {
	switch p.format {
	case "simple":
		p.printf("Leadership transferred from %s to %s\n", strconv.FormatUint(from, 16), strconv.FormatUint(to, 16))
	case "json":
		return p.json(r)
	case "fields":
		p.fieldsHeader(r.Header)
	case "protobuf":
		return p.protobuf(r)
	default:
		return p.unsupported()
	}
	return nil
}

// rows prints rows joined by ", " (the simple format of table results).
func (p *printer) rows(rows [][]string) {
	for _, r := range rows {
		p.println(strings.Join(r, ", "))
	}
}

// humanBytes formats n in SI units as etcdctl does ("25 kB").
func humanBytes(n uint64) string {
	if n < 10 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"B", "kB", "MB", "GB", "TB", "PB", "EB"}
	e := math.Floor(math.Log(float64(n)) / math.Log(1000))
	val := math.Floor(float64(n)/math.Pow(1000, e)*10+0.5) / 10
	f := "%.0f %s"
	if val < 10 {
		f = "%.1f %s"
	}
	return fmt.Sprintf(f, val, units[int(e)])
}
