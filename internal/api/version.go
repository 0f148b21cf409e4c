package api

import "github.com/cairn-kv/cairn/internal/version"

// versionForSnapshot is the storage version a snapshot stream reports.
var versionForSnapshot = version.EtcdVersion
