package ctl

import (
	"fmt"

	"github.com/cairn-kv/cairn/internal/version"
)

// versionText is `cairnctl version`: etcdctl's two lines (the etcd release
// and API cairn implements, so scripts that parse them keep working), then
// cairnctl's own release.
func versionText() string {
	return fmt.Sprintf("etcdctl version: %s\nAPI version: %s\ncairnctl version: %s\n",
		version.EtcdVersion, version.APIVersion, version.Cairn)
}

func versionLine() string {
	return fmt.Sprintf("%s (cairnctl %s)\n\nAPI VERSION:\n\t%s", version.EtcdVersion, version.Cairn, version.APIVersion)
}
