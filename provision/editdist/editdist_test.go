package editdist

import (
	"strings"
	"testing"
)

func TestDistance(t *testing.T) {
	tests := []struct {
		a, b  string
		limit int
		want  int
	}{
		{"", "", 3, 0},
		{"memory", "memory", 3, 0},
		{"", "abc", 5, 3},
		{"abc", "", 5, 3},
		{"memroy", "memory", 3, 1},  // a transposition costs one
		{"memor", "memory", 3, 1},   // a deletion
		{"memoryy", "memory", 3, 1}, // an insertion
		{"memxry", "memory", 3, 1},  // a substitution
		{"RUTS", "RUST", 3, 1},      // transposition at the end
		{"kitten", "sitting", 5, 3}, // the textbook case
		{"kitten", "sitting", 2, 3}, // past the limit: limit+1
		{"abcdef", "uvwxyz", 1, 2},  // gives up early
		{"ca", "abc", 5, 3},         // OSA, not Damerau: no edit of a transposed pair
		{strings.Repeat("x", 10000), "name", 2, 3},
	}
	for _, tt := range tests {
		if got := Distance(tt.a, tt.b, tt.limit); got != tt.want {
			t.Errorf("Distance(%.20q, %q, %d) = %d, want %d", tt.a, tt.b, tt.limit, got, tt.want)
		}
	}
}
