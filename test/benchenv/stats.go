package benchenv

import (
	"slices"
	"time"
)

// Percentile is the nearest-rank percentile p (0 < p <= 1) of samples; 0
// for none.
func Percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	i := int(float64(len(s))*p+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}
