package e2e

import (
	"fmt"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// kvDataset writes, into a fresh member (revision 1), keys whose key,
// create, mod, value and version orders all differ, and returns the
// revision after the last write (8):
//
//	key1 = val5  create 2  mod 7  version 3
//	key2 = val1  create 3  mod 3  version 1
//	key3 = val0  create 4  mod 6  version 2
//	other = x    create 8  mod 8  version 1
func kvDataset(t *testing.T, m *Member) int64 {
	t.Helper()
	for _, kv := range [][2]string{
		{"key1", "val3"}, {"key2", "val1"}, {"key3", "val2"}, {"key1", "val4"},
		{"key3", "val0"}, {"key1", "val5"}, {"other", "x"},
	} {
		m.ExpectCtl(t, "OK\n", "put", kv[0], kv[1])
	}
	return 8
}

// simpleKVs is etcdctl's simple output for a list of key, value pairs.
func simpleKVs(kvs ...string) string {
	var b strings.Builder
	for _, s := range kvs {
		b.WriteString(s + "\n")
	}
	return b.String()
}

func TestKVEtcdctl(t *testing.T) {
	t.Parallel()
	m := StartMember(t, MemberConfig{})
	requireEtcdctl(t)

	// A fresh member starts at revision 1 and every write adds one.
	m.ExpectCtlJSON(t, `{"header":{"revision":1}}`, "get", "key1")
	rev := kvDataset(t, m)
	if rev != 8 {
		t.Fatal(rev)
	}

	t.Run("get", func(t *testing.T) {
		m.ExpectCtl(t, "key1\nval5\n", "get", "key1")
		m.ExpectCtl(t, "key1\nval5\n", "get", "key1", "--consistency=s")
		m.ExpectCtl(t, "", "get", "missing")
		m.ExpectCtl(t, simpleKVs("key1", "val5", "key2", "val1", "key3", "val0"), "get", "key", "--prefix")
		// A range end argument: [key1, key3).
		m.ExpectCtl(t, simpleKVs("key1", "val5", "key2", "val1"), "get", "key1", "key3")
		m.ExpectCtl(t, simpleKVs("key2", "val1", "key3", "val0", "other", "x"), "get", "key2", "--from-key")
		// --keys-only prints each key followed by an empty value line.
		m.ExpectCtl(t, "key1\n\nkey2\n\nkey3\n\n", "get", "key", "--prefix", "--keys-only")
		m.ExpectCtl(t, "val5\nval1\nval0\n", "get", "key", "--prefix", "--print-value-only")
		m.ExpectCtl(t, simpleKVs("key1", "val5", "key2", "val1"), "get", "key", "--prefix", "--limit", "2")
		m.ExpectCtl(t, simpleKVs("key1", "val5", "key2", "val1"), "get", "", "--from-key", "--limit", "2")
	})

	t.Run("rev", func(t *testing.T) {
		m.ExpectCtl(t, "key1\nval3\n", "get", "key1", "--rev", "2")
		m.ExpectCtl(t, "key1\nval4\n", "get", "key1", "--rev", "5")
		m.ExpectCtl(t, simpleKVs("key1", "val3", "key2", "val1"), "get", "key", "--prefix", "--rev", "3")
		m.ExpectCtl(t, "", "get", "key1", "--rev", "1")
		// The header of a read at an old revision still carries the
		// current revision.
		m.ExpectCtlJSON(t, fmt.Sprintf(`{"header":{"revision":8},"kvs":[{"key":%q,"create_revision":2,"mod_revision":2,"version":1,"value":%q}],"count":1}`,
			b64("key1"), b64("val3")), "get", "key1", "--rev", "2")
	})

	t.Run("sort", func(t *testing.T) {
		k1, k2, k3 := []string{"key1", "val5"}, []string{"key2", "val1"}, []string{"key3", "val0"}
		order := func(kvs ...[]string) string {
			var all []string
			for _, kv := range kvs {
				all = append(all, kv...)
			}
			return simpleKVs(all...)
		}
		for _, c := range []struct {
			sortBy, order string
			want          string
		}{
			{"KEY", "ASCEND", order(k1, k2, k3)},
			{"KEY", "DESCEND", order(k3, k2, k1)},
			{"CREATE", "ASCEND", order(k1, k2, k3)},
			{"CREATE", "DESCEND", order(k3, k2, k1)},
			{"MODIFY", "ASCEND", order(k2, k3, k1)},
			{"MODIFY", "DESCEND", order(k1, k3, k2)},
			{"VALUE", "ASCEND", order(k3, k2, k1)},
			{"VALUE", "DESCEND", order(k1, k2, k3)},
			{"VERSION", "ASCEND", order(k2, k3, k1)},
			{"VERSION", "DESCEND", order(k1, k3, k2)},
			// --sort-by alone ascends; --order alone sorts by key.
			{"MODIFY", "", order(k2, k3, k1)},
			{"", "DESCEND", order(k3, k2, k1)},
		} {
			args := []string{"get", "key", "--prefix"}
			if c.sortBy != "" {
				args = append(args, "--sort-by", c.sortBy)
			}
			if c.order != "" {
				args = append(args, "--order", c.order)
			}
			m.ExpectCtl(t, c.want, args...)
		}
		// Sorting applies before the limit.
		m.ExpectCtl(t, order(k1), "get", "key", "--prefix", "--sort-by", "MODIFY", "--order", "DESCEND", "--limit", "1")
		m.ExpectCtl(t, "val0\nval1\n", "get", "key", "--prefix", "--sort-by", "VALUE", "--limit", "2", "--print-value-only")
	})

	t.Run("json", func(t *testing.T) {
		kv := func(k string, c, mod, ver int64, v string) string {
			return fmt.Sprintf(`{"key":%q,"create_revision":%d,"mod_revision":%d,"version":%d,"value":%q}`, b64(k), c, mod, ver, b64(v))
		}
		m.ExpectCtlJSON(t, `{"header":{"revision":8},"kvs":[`+kv("key1", 2, 7, 3, "val5")+`],"count":1}`, "get", "key1")
		// No match: kvs and count are zero and so omitted.
		m.ExpectCtlJSON(t, `{"header":{"revision":8}}`, "get", "missing")
		// more and count with a limit: count is the whole range.
		m.ExpectCtlJSON(t, `{"header":{"revision":8},"kvs":[`+kv("key1", 2, 7, 3, "val5")+`,`+kv("key2", 3, 3, 1, "val1")+`],"more":true,"count":3}`,
			"get", "key", "--prefix", "--limit", "2")
		m.ExpectCtlJSON(t, `{"header":{"revision":8},"kvs":[`+kv("key1", 2, 7, 3, "val5")+`,`+kv("key2", 3, 3, 1, "val1")+`,`+kv("key3", 4, 6, 2, "val0")+`],"count":3}`,
			"get", "key", "--prefix", "--limit", "3")
		m.ExpectCtlJSON(t, `{"header":{"revision":8},"kvs":[{"key":"`+b64("key1")+`","create_revision":2,"mod_revision":7,"version":3}],"count":1}`,
			"get", "key1", "--keys-only")

		var r ctlRange
		m.CtlJSON(t, &r, "get", "key", "--prefix", "--sort-by", "VERSION", "--order", "DESCEND")
		if len(r.Kvs) != 3 || string(r.Kvs[0].Key) != "key1" || r.Kvs[0].Version != 3 || r.Count != 3 || r.More {
			t.Errorf("sorted json range: %+v", r)
		}
	})

	t.Run("count-only", func(t *testing.T) {
		resp, err := m.Client().Get(tctx(t), "key", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count != 3 || len(resp.Kvs) != 0 || resp.More {
			t.Errorf("count-only: count %d, %d kvs, more %v; want 3, 0, false", resp.Count, len(resp.Kvs), resp.More)
		}
		if resp.Header.Revision != 8 {
			t.Errorf("count-only header revision %d, want 8", resp.Header.Revision)
		}
		// etcdctl learned --count-only in 3.5; the Debian 3.4 one lacks it.
		if help, _, _ := m.Etcdctl("get", "--help"); strings.Contains(help, "--count-only") {
			m.ExpectCtl(t, "3\n", "get", "key", "--prefix", "--count-only")
		} else {
			t.Log("etcdctl has no get --count-only; checked through clientv3 only")
		}
	})

	t.Run("put-prev-kv", func(t *testing.T) {
		m.ExpectCtl(t, "OK\nkey2\nval1\n", "put", "key2", "val9", "--prev-kv") // rev 9
		m.ExpectCtl(t, "OK\n", "put", "new", "n1", "--prev-kv")                // rev 10: no previous
		m.ExpectCtlJSON(t, `{"header":{"revision":11},"prev_kv":{"key":"`+b64("new")+`","create_revision":10,"mod_revision":10,"version":1,"value":"`+b64("n1")+`"}}`,
			"put", "new", "n2", "--prev-kv")
		m.ExpectCtlJSON(t, `{"header":{"revision":12}}`, "put", "new", "n3")
		// An empty value is legal; JSON omits it.
		m.ExpectCtl(t, "OK\n", "put", "empty", "") // rev 13
		m.ExpectCtl(t, "empty\n\n", "get", "empty")
		m.ExpectCtlJSON(t, `{"header":{"revision":13},"kvs":[{"key":"`+b64("empty")+`","create_revision":13,"mod_revision":13,"version":1}],"count":1}`, "get", "empty")
		// --ignore-value keeps the value and needs the key to exist.
		m.ExpectCtl(t, "OK\n", "put", "new", "--ignore-value") // rev 14
		m.ExpectCtl(t, "new\nn3\n", "get", "new")
		m.ExpectCtlError(t, "etcdserver: key not found", "put", "absent", "--ignore-value")
	})

	t.Run("del", func(t *testing.T) {
		m.ExpectCtl(t, "0\n", "del", "absent")
		m.ExpectCtlJSON(t, `{"header":{"revision":14}}`, "del", "absent")
		m.ExpectCtl(t, "1\nkey2\nval9\n", "del", "key2", "--prev-kv") // rev 15
		m.ExpectCtlJSON(t, `{"header":{"revision":16},"deleted":2,"prev_kvs":[`+
			`{"key":"`+b64("key1")+`","create_revision":2,"mod_revision":7,"version":3,"value":"`+b64("val5")+`"},`+
			`{"key":"`+b64("key3")+`","create_revision":4,"mod_revision":6,"version":2,"value":"`+b64("val0")+`"}]}`,
			"del", "key", "--prefix", "--prev-kv")
		m.ExpectCtl(t, "", "get", "key", "--prefix")
		// Deleted keys are still visible at older revisions.
		m.ExpectCtl(t, "key1\nval5\n", "get", "key1", "--rev", "15")
		// empty, new, other remain; --from-key "n" removes new and other.
		m.ExpectCtl(t, "2\n", "del", "n", "--from-key") // rev 17
		m.ExpectCtl(t, "empty\n\n", "get", "", "--from-key")
		// A key deleted and put again starts a new life: version 1.
		m.ExpectCtl(t, "OK\n", "put", "key1", "again") // rev 18
		m.ExpectCtlJSON(t, `{"header":{"revision":18},"kvs":[{"key":"`+b64("key1")+`","create_revision":18,"mod_revision":18,"version":1,"value":"`+b64("again")+`"}],"count":1}`,
			"get", "key1")
	})
}

func TestKVClient(t *testing.T) {
	t.Parallel()
	m := StartMember(t, MemberConfig{})
	cli := m.Client()

	p1, err := cli.Put(tctx(t), "a", "1")
	if err != nil {
		t.Fatal(err)
	}
	if p1.Header.Revision != 2 || p1.PrevKv != nil {
		t.Errorf("first put: revision %d, prev %v; want 2, nil", p1.Header.Revision, p1.PrevKv)
	}
	p2, err := cli.Put(tctx(t), "a", "2", clientv3.WithPrevKV())
	if err != nil {
		t.Fatal(err)
	}
	if p2.Header.Revision != 3 || p2.PrevKv == nil || string(p2.PrevKv.Value) != "1" || p2.PrevKv.ModRevision != 2 {
		t.Errorf("second put: %+v", p2)
	}
	for _, k := range []string{"b", "c", "d"} {
		if _, err := cli.Put(tctx(t), k, k); err != nil {
			t.Fatal(err)
		}
	}
	// Revision 6 now; a, b, c, d.
	g, err := cli.Get(tctx(t), "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Kvs) != 1 {
		t.Fatalf("get a: %+v", g)
	}
	kv := g.Kvs[0]
	if string(kv.Value) != "2" || kv.CreateRevision != 2 || kv.ModRevision != 3 || kv.Version != 2 || kv.Lease != 0 || g.Header.Revision != 6 {
		t.Errorf("get a: %+v header %+v", kv, g.Header)
	}

	keys := func(r *clientv3.GetResponse) string {
		var s []string
		for _, kv := range r.Kvs {
			s = append(s, string(kv.Key))
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		name string
		key  string
		opts []clientv3.OpOption
		want string
		more bool
	}{
		{"range", "b", []clientv3.OpOption{clientv3.WithRange("d")}, "b,c", false},
		{"from-key", "b", []clientv3.OpOption{clientv3.WithFromKey()}, "b,c,d", false},
		{"limit", "", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithLimit(3)}, "a,b,c", true},
		{"sort-desc-limit", "", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(2)}, "d,c", true},
		{"min-mod-rev", "", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithMinModRev(4)}, "b,c,d", false},
		{"max-create-rev", "", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithMaxCreateRev(4)}, "a,b", false},
		{"rev", "", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithRev(4)}, "a,b", false},
		{"serializable", "", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSerializable()}, "a,b,c,d", false},
	} {
		r, err := cli.Get(tctx(t), tc.key, tc.opts...)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := keys(r); got != tc.want || r.More != tc.more {
			t.Errorf("%s: keys %q more %v, want %q more %v", tc.name, got, r.More, tc.want, tc.more)
		}
	}

	d, err := cli.Delete(tctx(t), "b", clientv3.WithRange("d"), clientv3.WithPrevKV())
	if err != nil {
		t.Fatal(err)
	}
	if d.Deleted != 2 || len(d.PrevKvs) != 2 || string(d.PrevKvs[0].Key) != "b" || string(d.PrevKvs[1].Key) != "c" || d.Header.Revision != 7 {
		t.Errorf("delete [b, d): %+v", d)
	}
	// A delete that matches nothing does not add a revision.
	d, err = cli.Delete(tctx(t), "zzz")
	if err != nil {
		t.Fatal(err)
	}
	if d.Deleted != 0 || d.Header.Revision != 7 {
		t.Errorf("empty delete: deleted %d revision %d, want 0, 7", d.Deleted, d.Header.Revision)
	}
}
