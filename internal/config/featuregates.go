package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Feature gate stages, as etcd names them in --help.
const (
	stageAlpha = "ALPHA"
	stageBeta  = "BETA"
)

// Special gates that switch every gate of a stage, as in etcd's feature gate
// library; a gate named explicitly overrides them.
const (
	gateAllAlpha = "AllAlpha"
	gateAllBeta  = "AllBeta"
)

type gateSpec struct {
	def   bool
	stage string
	// note says what the gate means in cairn.
	note string
}

// knownGates are etcd 3.7's server feature gates (server/features). cairn
// accepts every one so that etcd command lines keep working; FeatureGates
// records the values for the packages that act on them.
var knownGates = map[string]gateSpec{
	"CompactHashCheck":             {false, stageAlpha, "leader periodically compares followers' compaction hashes"},
	"FastLeaseKeepAlive":           {true, stageBeta, "lease keep-alive answers without waiting for the applied index"},
	"InitialCorruptCheck":          {false, stageAlpha, "check data against peers before serving"},
	"LeaseCheckpoint":              {false, stageAlpha, "leader checkpoints remaining lease TTLs (cairn always does)"},
	"LeaseCheckpointPersist":       {false, stageAlpha, "checkpointed TTLs are persisted (cairn always does); requires LeaseCheckpoint"},
	"PriorityRequest":              {false, stageAlpha, "lease revokes and similar requests go first under overload"},
	"SetMemberLocalAddr":           {false, stageAlpha, "dial peers from the first non-loopback advertised peer address"},
	"StopGRPCServiceOnDefrag":      {false, stageAlpha, "stop serving gRPC during defragmentation (cairn never stops to defragment)"},
	"TxnModeWriteWithSharedBuffer": {true, stageBeta, "write transactions share the read buffer"},
}

// KnownFeatureGates lists the feature gate names --feature-gates accepts,
// sorted, without the AllAlpha/AllBeta switches.
func KnownFeatureGates() []string {
	names := make([]string, 0, len(knownGates))
	for n := range knownGates {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func defaultFeatureGates() map[string]bool {
	m := make(map[string]bool, len(knownGates))
	for n, s := range knownGates {
		m[n] = s.def
	}
	return m
}

func featureGateDefault(name string) bool { return knownGates[name].def }

// gateList is the value of --feature-gates: the gates named explicitly, in
// the order given. Repeating the flag adds to the list, as in etcd.
type gateList struct {
	set map[string]bool
	raw []string
}

// Set parses "Name=bool,Name=bool". The error texts are etcd's.
func (g *gateList) Set(value string) error {
	parsed := map[string]bool{}
	for _, item := range strings.Split(value, ",") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		k, v, found := strings.Cut(item, "=")
		k = strings.TrimSpace(k)
		if !found {
			return fmt.Errorf("missing bool value for %s", k)
		}
		v = strings.TrimSpace(v)
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("invalid value of %s=%s, err: %v", k, v, err)
		}
		if _, ok := knownGates[k]; !ok && k != gateAllAlpha && k != gateAllBeta {
			return fmt.Errorf("unrecognized feature gate: %s", k)
		}
		parsed[k] = b
	}
	if g.set == nil {
		g.set = map[string]bool{}
	}
	for k, b := range parsed {
		g.set[k] = b
	}
	g.raw = append(g.raw, value)
	return nil
}

func (g *gateList) String() string {
	if g == nil {
		return ""
	}
	return strings.Join(g.raw, ",")
}

// resolveGates returns every known gate's value: the default, then the
// AllAlpha/AllBeta switches, then the gates set by --experimental-* flags,
// then the gates named in --feature-gates. A gate set both by an
// experimental flag and by --feature-gates is an error, as in etcd 3.6.
func resolveGates(explicit, fromFlags map[string]bool, flagOf map[string]string) (map[string]bool, error) {
	flagged := make([]string, 0, len(fromFlags))
	for gate := range fromFlags {
		flagged = append(flagged, gate)
	}
	sort.Strings(flagged)
	for _, gate := range flagged {
		v := fromFlags[gate]
		if fv, ok := explicit[gate]; ok {
			return nil, fmt.Errorf("cannot specify both flags: --%s=%v and --feature-gates=%s=%v at the same time, please just use --feature-gates=%s=%v",
				flagOf[gate], v, gate, fv, gate, fv)
		}
	}
	m := defaultFeatureGates()
	for _, sw := range []struct{ name, stage string }{{gateAllAlpha, stageAlpha}, {gateAllBeta, stageBeta}} {
		if v, ok := explicit[sw.name]; ok {
			for n, s := range knownGates {
				if s.stage == sw.stage {
					m[n] = v
				}
			}
		}
	}
	for gate, v := range fromFlags {
		m[gate] = v
	}
	for gate, v := range explicit {
		if _, ok := knownGates[gate]; ok {
			m[gate] = v
		}
	}
	return m, nil
}

// gateHelp lists the gates the way etcd's --help does.
func gateHelp() []string {
	lines := []string{
		gateAllAlpha + "=true|false (" + stageAlpha + " - default=false)",
		gateAllBeta + "=true|false (" + stageBeta + " - default=false)",
	}
	for _, n := range KnownFeatureGates() {
		s := knownGates[n]
		lines = append(lines, fmt.Sprintf("%s=true|false (%s - default=%t)", n, s.stage, s.def))
	}
	return lines
}
