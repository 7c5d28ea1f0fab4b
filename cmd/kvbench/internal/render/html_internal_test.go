package render

import (
	"math"
	"testing"
)

func TestNinesScale(t *testing.T) {
	s := ninesScale{nines: 3}
	var labels []string
	for _, tk := range s.Ticks(0, 100) {
		labels = append(labels, tk.Label)
	}
	if got := labels; len(got) != 5 || got[2] != "90" || got[3] != "99" || got[4] != "99.9" {
		t.Fatalf("ticks %v", got)
	}
	for q, want := range map[float64]float64{0: 0, 90: 1.0 / 3, 99: 2.0 / 3, 99.9: 1, 100: 1} {
		if got := s.Normalize(0, 100, q); math.Abs(got-want) > 1e-9 {
			t.Errorf("Normalize(%v) = %v, want %v", q, got, want)
		}
	}
}
