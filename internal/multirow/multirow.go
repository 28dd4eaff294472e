// Package multirow cuts rows into the multi-row SQL statements that write them: a few
// fixed row counts, so that a handful of statement texts (prepared once) serve a batch
// of any length.
package multirow

import "strings"

// Sizes are the row counts of the statements, largest first: a batch goes in chunks of
// these sizes. 256 rows stay far below SQLite's variable limit (32766) at any column
// count the stores use.
var Sizes = [...]int{256, 64, 16, 4, 1}

// Next returns the index in Sizes of the chunk that starts a batch of n > 0 rows: the
// largest size not over n.
func Next(n int) int {
	k := 0
	for Sizes[k] > n {
		k++
	}
	return k
}

// Values returns "(?, …), (?, …)…": rows groups of cols marks.
func Values(cols, rows int) string {
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", cols), ", ") + ")"
	return strings.TrimSuffix(strings.Repeat(row+", ", rows), ", ")
}
