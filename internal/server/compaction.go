package server

import (
	"context"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/failpoint"
	"github.com/cairn-kv/cairn/internal/storage"
)

func (s *Server) kickCompaction() {
	select {
	case s.compactKick <- struct{}{}:
	default:
	}
}

func (s *Server) finishedCompaction() int64 {
	v, ok, err := storage.GetMeta(s.eng.DB(), storage.MetaFinishedCompact)
	if err != nil || !ok {
		return 0
	}
	return int64(storage.U64(v))
}

// compactionLoop removes the records that scheduled compactions made
// unreachable, beside the apply loop.
func (s *Server) compactionLoop() {
	limit := s.cfg.CompactionBatchLimit
	for {
		select {
		case <-s.stopC:
			return
		case <-s.compactKick:
		}
		start := time.Now()
		failpoint.Hit("compact-before-physical")
		rev, err := s.kv.CompactPhysical(limit)
		failpoint.Hit("compact-after-physical")
		if err != nil {
			s.lg.Error("physical compaction failed", zap.Error(err))
			continue
		}
		if rev <= 0 {
			continue
		}
		s.compactMu.Lock()
		if rev > s.compactDone {
			s.compactDone = rev
			s.lg.Info("finished scheduled compaction", zap.Int64("compact-revision", rev), zap.Duration("took", time.Since(start)))
		}
		s.compactMu.Unlock()
		s.compactCond.Broadcast()
	}
}

// WaitPhysicalCompaction returns once the compaction at rev (or a later
// one) has removed its records.
func (s *Server) WaitPhysicalCompaction(ctx context.Context, rev int64) error {
	done := make(chan struct{})
	go func() {
		s.compactMu.Lock()
		for s.compactDone < rev && ctx.Err() == nil {
			select {
			case <-s.stopC:
				s.compactMu.Unlock()
				close(done)
				return
			default:
			}
			s.compactCond.Wait()
		}
		s.compactMu.Unlock()
		close(done)
	}()
	select {
	case <-done:
		return ctx.Err()
	case <-ctx.Done():
		s.compactCond.Broadcast()
		<-done
		return ctx.Err()
	}
}

// autoCompactLoop compacts on the leader as --auto-compaction-mode says:
// periodic keeps the history of the last period; revision keeps the last
// revs revisions.
func (s *Server) autoCompactLoop(mode string, period time.Duration, revs int64) {
	interval := time.Minute
	if mode == "periodic" {
		// etcd checks every period/10 (at most an hour) and compacts to
		// the revision seen one period ago.
		interval = period / 10
		if period < time.Hour {
			interval = period
		}
		if interval > time.Hour {
			interval = time.Hour
		}
		if interval < time.Second {
			interval = time.Second
		}
	} else {
		interval = 5 * time.Minute
		if testInterval := s.cfg.HeartbeatInterval * 10; testInterval < interval && revs < 100 {
			interval = testInterval
		}
	}
	type sample struct {
		at  time.Time
		rev int64
	}
	var hist []sample
	s.every(interval, func() {
		if !s.lessor.IsPrimary() {
			hist = hist[:0]
			return
		}
		now := time.Now()
		cur := s.kv.Rev()
		hist = append(hist, sample{now, cur})
		var target int64
		switch mode {
		case "periodic":
			for len(hist) > 0 && now.Sub(hist[0].at) >= period {
				target = hist[0].rev
				hist = hist[1:]
			}
		default:
			target = cur - revs
			hist = hist[:0]
		}
		if target <= 0 || target <= s.kv.CompactRev() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := s.Propose(ctx, &pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: target}})
		cancel()
		if err != nil {
			s.lg.Warn("auto compaction failed", zap.Int64("revision", target), zap.Error(err))
		} else {
			s.lg.Info("auto compaction", zap.String("mode", mode), zap.Int64("revision", target))
		}
	})
}
