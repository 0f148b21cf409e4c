package robustness

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cairn-kv/cairn/tests/e2e"
)

func TestZZWatchCompacted(t *testing.T) {
	m := e2e.StartMember(t, e2e.MemberConfig{})
	cli := m.Client()
	ctx := context.Background()
	for i := 0; i < 60; i++ {
		if i%3 == 0 {
			cli.Delete(ctx, fmt.Sprintf("key%d", (i+9)%10))
		} else {
			cli.Put(ctx, fmt.Sprintf("key%d", i%10), fmt.Sprint(i))
		}
	}
	r, _ := cli.Get(ctx, "key", clientv3.WithPrefix())
	t.Logf("rev %d", r.Header.Revision)
	if _, err := cli.Compact(ctx, 30); err != nil {
		t.Fatal(err)
	}
	for _, opts := range [][]clientv3.OpOption{
		{clientv3.WithPrefix(), clientv3.WithRev(20)},
		{clientv3.WithPrefix(), clientv3.WithRev(20), clientv3.WithFilterPut()},
		{clientv3.WithPrefix(), clientv3.WithRev(20), clientv3.WithFilterPut(), clientv3.WithProgressNotify()},
		{clientv3.WithPrefix(), clientv3.WithRev(30), clientv3.WithFilterPut()},
	} {
		wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		ch := cli.Watch(wctx, "key", opts...)
		select {
		case wr := <-ch:
			var first string
			if len(wr.Events) > 0 {
				first = fmt.Sprintf("%s %s@%d", wr.Events[0].Type, wr.Events[0].Kv.Key, wr.Events[0].Kv.ModRevision)
			}
			t.Logf("canceled %v compact %d events %d first %s err %v", wr.Canceled, wr.CompactRevision, len(wr.Events), first, wr.Err())
		case <-wctx.Done():
			t.Logf("nothing")
		}
		cancel()
	}
}
