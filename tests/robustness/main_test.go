package robustness

import (
	"os"
	"testing"

	"github.com/cairn-kv/cairn/tests/e2e"
)

func TestMain(m *testing.M) { os.Exit(e2e.Main(m)) }
