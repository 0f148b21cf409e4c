// Package version names cairn's own version and the etcd version whose API
// cairn implements. Clients (etcdctl, Kubernetes) read EtcdVersion from
// Maintenance.Status and /version and gate features on it, so it must be an
// etcd release whose API cairn serves in full.
package version

const (
	// Cairn is cairn's release.
	Cairn = "0.1.0"
	// EtcdVersion is the etcd server version cairn reports to clients.
	EtcdVersion = "3.7.0"
	// EtcdCluster is the cluster version reported to clients (major.minor.0).
	EtcdCluster = "3.7.0"
	// APIVersion is the etcd API version (major.minor).
	APIVersion = "3.7"
)
