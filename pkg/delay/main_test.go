package delay

import (
	"testing"

	"github.com/krm-project/krm/test/cluster/clustertest"
)

func TestMain(m *testing.M) { clustertest.Main(m) }
