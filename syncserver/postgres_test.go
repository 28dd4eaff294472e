package syncserver

import "testing"

// TestPostgresBackend runs the handler tests that exercise the store most on a real
// PostgreSQL, so that both stores serve the protocol alike.
func TestPostgresBackend(t *testing.T) {
	openStore = openPostgresStore
	defer func() { openStore = openSQLiteStore }()
	for name, test := range map[string]func(*testing.T){
		"CommitBlocksThenDownload":            TestCommitBlocksThenDownload,
		"CommitStaleBaseConflicts":            TestCommitStaleBaseConflicts,
		"CommitBatchItemsCheckedOnTheirOwn":   TestCommitBatchItemsCheckedOnTheirOwn,
		"ChangesLongPollWakesOnCommit":        TestChangesLongPollWakesOnCommit,
		"DeleteVersionsRestoreConflictsAudit": TestDeleteVersionsRestoreConflictsAudit,
		"ConcurrentCommitsOnePathOneWinner":   TestConcurrentCommitsOnePathOneWinner,
		"MaintenancePrunesAndCollects":        TestMaintenancePrunesAndCollects,
		"LegacyAPI":                           TestLegacyAPI,
		"BadInputChangesNothing":              TestBadInputChangesNothing,
	} {
		t.Run(name, test)
	}
}
