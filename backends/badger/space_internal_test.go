package badger

import (
	"testing"

	bdg "github.com/dgraph-io/badger/v4"
)

func TestCompactionReserve(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name   string
		levels []bdg.LevelInfo
		want   int64
	}{
		{name: "empty", levels: make([]bdg.LevelInfo, 7), want: 0},
		{
			name: "level 0 into the base level",
			levels: []bdg.LevelInfo{
				{Size: 40 * mib},
				{}, {}, {}, {}, {},
				{Size: 9 * mib, TargetFileSize: 2 * mib, IsBaseLevel: true},
			},
			want: 49 * mib,
		},
		{
			name: "base level kept for the next flush",
			levels: []bdg.LevelInfo{
				{},
				{}, {}, {}, {}, {},
				{Size: 9 * mib, TargetFileSize: 2 * mib, IsBaseLevel: true},
			},
			want: 9 * mib,
		},
		{
			name: "one table with the part of the next level it overlaps",
			levels: []bdg.LevelInfo{
				{Size: 10 * mib},
				{}, {}, {}, {},
				{Size: 30 * mib, TargetFileSize: 2 * mib, IsBaseLevel: true},
				{Size: 300 * mib, TargetFileSize: 4 * mib},
			},
			// 10 + 30 for level 0; 2 x 2 + 10 x 4 for level 5.
			want: 84 * mib,
		},
		{
			name: "a next level smaller than the overlap bound",
			levels: []bdg.LevelInfo{
				{},
				{}, {}, {}, {},
				{Size: 3 * mib, TargetFileSize: 2 * mib, IsBaseLevel: true},
				{Size: 5 * mib, TargetFileSize: 4 * mib},
			},
			want: 3*mib + 3*mib + 5*mib,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := compactionReserve(tc.levels, 10); got != tc.want {
				t.Errorf("compactionReserve = %d MiB + %d, want %d MiB + %d", got/mib, got%mib, tc.want/mib, tc.want%mib)
			}
		})
	}
}

// BenchmarkSpaceTake measures the space guard's charge for a commit of
// 100 puts of 100-byte values (enginetest's Put benchmarks), the free
// space measures it makes every spaceChunk bytes included.
func BenchmarkSpaceTake(b *testing.B) {
	d, err := Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	n := txnOverhead + 100*entryCost(make([]byte, 16), make([]byte, 100))
	for b.Loop() {
		if err := d.space.take(d.db, n); err != nil {
			b.Fatal(err)
		}
	}
}
