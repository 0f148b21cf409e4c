package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/apply"
	"github.com/cairn-kv/cairn/internal/membership"
	"github.com/cairn-kv/cairn/internal/snapshot"
	"github.com/cairn-kv/cairn/internal/storage"
	"github.com/cairn-kv/cairn/internal/version"
)

// writeSnapshot writes one consistent state (a pebble snapshot) as an
// etcd-format snapshot to w: the bbolt file is built in the data dir's tmp
// folder, then streamed with its sha256 trailer.
func (s *Server) writeSnapshot(ctx context.Context, w io.Writer) (int64, error) {
	snap := s.eng.DB().NewSnapshot()
	defer snap.Close()
	tmp := filepath.Join(s.cfg.MemberDataDir(), "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return 0, err
	}
	sw, err := snapshot.NewWriter(tmp)
	if err != nil {
		return 0, err
	}
	defer sw.Close()
	if err := fillSnapshot(ctx, snap, sw); err != nil {
		return 0, err
	}
	if err := sw.Finish(); err != nil {
		return 0, err
	}
	s.lg.Info("sending database snapshot to client", zap.Int64("total-bytes", sw.Size()))
	n, err := sw.WriteTo(w)
	if err == nil {
		s.lg.Info("sent database snapshot to client", zap.Int64("total-bytes", n))
	}
	return n, err
}

func fillSnapshot(ctx context.Context, r pebble.Reader, sw *snapshot.Writer) error {
	scan := func(lo, hi []byte, fn func(k, v []byte) error) error {
		it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return err
		}
		defer it.Close()
		n := 0
		for it.First(); it.Valid(); it.Next() {
			if n++; n%4096 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			if err := fn(it.Key(), it.Value()); err != nil {
				return err
			}
		}
		return it.Error()
	}
	lo, hi := storage.KVSpan()
	if err := scan(lo, hi, func(k, v []byte) error {
		main, sub, tomb, ok := storage.ParseKVKey(k)
		if !ok {
			return fmt.Errorf("%w: bad revision key %x", storage.ErrCorrupt, k)
		}
		return sw.PutKV(snapshot.Revision{Main: main, Sub: sub}, tomb, v)
	}); err != nil {
		return err
	}
	lo, hi = storage.LeaseSpan()
	if err := scan(lo, hi, func(_, v []byte) error {
		rec, err := apply.DecodeLease(v)
		if err != nil {
			return err
		}
		return sw.PutLease(snapshot.Lease{ID: int64(rec.ID), TTL: rec.TTL, RemainingTTL: rec.RemainingTTL})
	}); err != nil {
		return err
	}
	lo, hi = storage.MemberSpan()
	if err := scan(lo, hi, func(_, v []byte) error {
		var m membership.Member
		if err := json.Unmarshal(v, &m); err != nil {
			return err
		}
		return sw.PutMember(snapshot.Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner})
	}); err != nil {
		return err
	}
	lo, hi = storage.AlarmSpan()
	if err := scan(lo, hi, func(k, _ []byte) error {
		if m, a, ok := storage.ParseAlarmKey(k); ok {
			return sw.PutAlarm(m, pb.AlarmType(a))
		}
		return nil
	}); err != nil {
		return err
	}
	meta := snapshot.Meta{ClusterVersion: version.EtcdCluster}
	if v, ok, err := storage.GetMeta(r, storage.MetaApplied); err != nil {
		return err
	} else if ok {
		meta.ConsistentIndex = storage.U64(v)
		if len(v) >= 16 {
			meta.Term = storage.U64(v[8:])
		}
	}
	if v, ok, err := storage.GetMeta(r, storage.MetaScheduledCompact); err != nil {
		return err
	} else if ok {
		meta.ScheduledCompactRev = int64(storage.U64(v))
	}
	if v, ok, err := storage.GetMeta(r, storage.MetaFinishedCompact); err != nil {
		return err
	} else if ok {
		meta.FinishedCompactRev = int64(storage.U64(v))
	}
	if v, ok, err := storage.GetMeta(r, storage.MetaConfState); err != nil {
		return err
	} else if ok {
		cs := &raftpb.ConfState{}
		if err := proto.Unmarshal(v, cs); err != nil {
			return err
		}
		meta.ConfState = cs
	}
	return sw.SetMeta(meta)
}
