package ctl_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
)

// seqNorm normalizes the output of a write sequence run under prefix from
// a starting revision base, so that two runs of the same sequence (etcdctl
// under one prefix, then cairnctl under another, on the same server)
// compare equal. What it changes, and why it must:
//   - revisions (header, create, mod) become relative to base: the second
//     run necessarily starts where the first ended;
//   - the prefix becomes "P/": the two runs use disjoint keys so that
//     neither sees the other's writes.
//
// Values, versions, counts, flags, the cluster and member ids and the raft
// term are compared as they are.
func seqNorm(prefix string, base int64) func(string) string {
	fieldsRev := regexp.MustCompile(`(?m)^("(?:Prev)?(?:Revision|CreateRevision|ModRevision)" : )(\d+)$`)
	compacted := regexp.MustCompile(`compacted revision (\d+)`)
	return func(s string) string {
		var out []string
		for _, line := range strings.SplitAfter(s, "\n") {
			trimmed := strings.TrimSpace(line)
			if strings.HasPrefix(trimmed, "{") || strings.HasPrefix(trimmed, "[") {
				if j, ok := normJSON(trimmed, prefix, base); ok {
					out = append(out, j+"\n")
					continue
				}
			}
			line = compacted.ReplaceAllStringFunc(line, func(m string) string {
				return "compacted revision " + relRev(compacted.FindStringSubmatch(m)[1], base)
			})
			line = fieldsRev.ReplaceAllStringFunc(line, func(m string) string {
				sub := fieldsRev.FindStringSubmatch(m)
				return sub[1] + relRev(sub[2], base)
			})
			out = append(out, strings.ReplaceAll(line, prefix, "P/"))
		}
		return strings.Join(out, "")
	}
}

func relRev(s string, base int64) string {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n == 0 {
		return s
	}
	return "base+" + strconv.FormatInt(n-base, 10)
}

// normJSON rewrites revisions, base64 keys and range ends, and the prefix
// in other strings (role and user names) of one JSON document. ok is false
// when s is not JSON.
func normJSON(s, prefix string, base int64) (string, bool) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return s, false
	}
	var walk func(v any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				switch k {
				case "revision", "create_revision", "mod_revision":
					if n, ok := e.(json.Number); ok {
						x[k] = relRev(n.String(), base)
						continue
					}
				case "key", "range_end":
					if str, ok := e.(string); ok {
						if b, err := base64.StdEncoding.DecodeString(str); err == nil {
							x[k] = strings.ReplaceAll(string(b), prefix, "P/")
							continue
						}
					}
				}
				x[k] = walk(e)
			}
		case []any:
			for i := range x {
				x[i] = walk(x[i])
			}
		case string:
			return strings.ReplaceAll(x, prefix, "P/")
		}
		return v
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(walk(v)); err != nil {
		return s, false
	}
	return strings.TrimSpace(buf.String()), true
}

// replaceAll applies old→new pairs.
func replaceAll(pairs ...string) func(string) string {
	return func(s string) string { return strings.NewReplacer(pairs...).Replace(s) }
}

// chain composes normalizers left to right.
func chain(fs ...func(string) string) func(string) string {
	return func(s string) string {
		for _, f := range fs {
			s = f(s)
		}
		return s
	}
}
