package api

// The v3lock service (etcdctl lock, clientv3's v3lockpb users), served as
// etcd serves it: a thin layer over go.etcd.io/etcd/client/v3/concurrency
// running against this server's own client port.
//
//	Lock(name, lease)  waits for a concurrency.Mutex on prefix name, held by
//	                   the key "<name>/<lease hex>" attached to the caller's
//	                   lease; returns that key. With lease 0 a fresh 60s lease
//	                   is granted and never kept alive (etcd does the same).
//	Unlock(key)        deletes key.
//
// The caller keeps its lease alive; the server never does (sessions are
// orphaned at once). Lock and election keys are ordinary keys, so they obey
// the caller's permissions: the caller's auth token is forwarded.

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"google.golang.org/grpc/metadata"
)

// NewLockServer returns the Lock service over c, a client of this server
// that carries no credentials of its own.
func NewLockServer(c *clientv3.Client) v3lockpb.LockServer {
	return &lockServer{c: c}
}

type lockServer struct {
	v3lockpb.UnimplementedLockServer
	c *clientv3.Client
}

func (s *lockServer) Lock(ctx context.Context, req *v3lockpb.LockRequest) (*v3lockpb.LockResponse, error) {
	ctx = forwardCallerMetadata(ctx)
	sess, err := orphanedSession(ctx, s.c, req.Lease)
	if err != nil {
		return nil, err
	}
	m := concurrency.NewMutex(sess, string(req.Name))
	if err := m.Lock(ctx); err != nil {
		return nil, err
	}
	return &v3lockpb.LockResponse{Header: m.Header(), Key: []byte(m.Key())}, nil
}

func (s *lockServer) Unlock(ctx context.Context, req *v3lockpb.UnlockRequest) (*v3lockpb.UnlockResponse, error) {
	resp, err := s.c.Delete(forwardCallerMetadata(ctx), string(req.Key))
	if err != nil {
		return nil, err
	}
	return &v3lockpb.UnlockResponse{Header: resp.Header}, nil
}

// orphanedSession is a concurrency.Session on lease (granted with the
// default TTL if lease is 0) whose keep-alive is stopped at once: the lease
// belongs to the caller, who keeps it alive.
func orphanedSession(ctx context.Context, c *clientv3.Client, lease int64) (*concurrency.Session, error) {
	s, err := concurrency.NewSession(c,
		concurrency.WithLease(clientv3.LeaseID(lease)),
		concurrency.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	s.Orphan()
	return s, nil
}

// callerMetadataKeys are the request metadata etcd's server reads from a
// client: the auth token (gRPC and gateway spellings) and the
// require-leader flag. etcd runs these services in-process, so the caller's
// metadata reaches its KV and Watch handlers; here it has to be forwarded.
var callerMetadataKeys = []string{"token", "authorization", "hasleader"}

// forwardCallerMetadata copies the caller's callerMetadataKeys from ctx's
// incoming metadata to its outgoing metadata.
func forwardCallerMetadata(ctx context.Context) context.Context {
	in, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return ctx
	}
	var kv []string
	for _, k := range callerMetadataKeys {
		for _, v := range in.Get(k) {
			kv = append(kv, k, v)
		}
	}
	if len(kv) == 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}
