// Package aggregatetest has the rows the aggregator's tests, and those of
// the packages around it (pkg/agent, persist), build their cases from.
package aggregatetest

import (
	"fmt"
	"time"

	"github.com/krm-project/krm/pkg/store"
)

// T0 is the tests' LIST time.
var T0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

// Row is object name in namespace "ns", UID "uid-"+name, at resourceVersion
// rv from src, with a small JSON object that names it.
func Row(name string, rv uint64, src store.Source) *store.Row {
	return &store.Row{
		UID: "uid-" + name, Namespace: "ns", Name: name, ResourceVersion: rv, Source: src,
		Object: fmt.Appendf(nil, `{"metadata":{"name":%q,"resourceVersion":"%d"}}`, name, rv),
	}
}
