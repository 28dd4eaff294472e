// Package plan is the agent's pure, deterministic planner: from the three trees of a
// folder (Local on disk, Remote on the server, Synced: the last state both agreed on, the
// merge base) it derives the ordered operations that bring disk and server together
// without ever losing a byte. It does no I/O and reads no clock.
package plan

import (
	"iter"
	"time"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// Node is the state of one path in one tree.
type Node struct {
	// Type is file, dir or symlink.
	Type proto.EntryType
	// SHA256 is a file's content hash; zero for other types.
	SHA256 Hash
	// Target is a symlink's target.
	Target string
	// Mode holds the permission bits.
	Mode uint32
	// Size is a file's length in bytes.
	Size int64
	// MTimeNs is the modification time in Unix nanoseconds.
	MTimeNs int64
	// Seq is the server Seq of this version in the Remote and Synced trees; 0 in Local.
	Seq int64
}

// Tree maps normalized relative paths to the nodes present there. Absent paths (and
// tombstones, in the Remote tree) are simply not in the map.
type Tree map[string]Node

// View is a tree as the planner reads it. Tree is one; the agent keeps its three trees
// in one compact store (package trees) whose sides are the others.
type View interface {
	// Get returns the node at path, if any.
	Get(path string) (Node, bool)
	// Len counts the paths present.
	Len() int
	// All yields every path present and its node, in no particular order.
	All() iter.Seq2[string, Node]
}

// Get returns the node at path, if any.
func (t Tree) Get(path string) (Node, bool) {
	n, ok := t[path]
	return n, ok
}

// Len counts the paths present.
func (t Tree) Len() int { return len(t) }

// All yields every path present and its node.
func (t Tree) All() iter.Seq2[string, Node] {
	return func(yield func(string, Node) bool) {
		for p, n := range t {
			if !yield(p, n) {
				return
			}
		}
	}
}

// OpKind names what an Op does.
type OpKind string

// Operation kinds.
const (
	// Upload makes the server's entry at Path equal Local (file, dir or symlink), based
	// on Remote's Seq (0 when Remote is nil).
	Upload OpKind = "upload"
	// DeleteRemote deletes the server's entry at Path, based on Remote's Seq.
	DeleteRemote OpKind = "delete-remote"
	// Download makes the disk at Path equal Remote (download a file, create a dir,
	// create a symlink), provided the disk still equals Local (nil: nothing there).
	Download OpKind = "download"
	// DeleteLocal removes Path from disk, provided the disk still equals Local.
	DeleteLocal OpKind = "delete-local"
	// MoveToConflict renames the local Path to NewPath (a proto.ConflictPath), provided
	// the disk still equals Local; a Download of Path follows it in the same plan and the
	// copy is uploaded by a later plan like any new file.
	MoveToConflict OpKind = "move-to-conflict"
	// RecordSynced sets Synced[Path] to Remote: both sides already agree.
	RecordSynced OpKind = "record-synced"
	// ForgetSynced removes Path from Synced: it is gone on both sides.
	ForgetSynced OpKind = "forget-synced"
	// Report changes nothing and tells the user something the mode keeps from syncing
	// (a local-only file in receive-only mode, a remote change in send-only mode).
	Report OpKind = "report"
)

// Op is one operation of a plan, with the states it was planned against so that the
// executor can refuse to act when the disk moved on in the meantime.
type Op struct {
	Kind OpKind
	Path string
	// Local, Remote and Synced are the nodes of Path when planned (nil: absent).
	Local, Remote, Synced *Node
	// NewPath is the conflict copy's path of a MoveToConflict.
	NewPath string
	// Reason explains a Report (and may annotate other ops for logs).
	Reason string
}

// Mode is the agent's sync direction.
type Mode string

// Modes.
const (
	TwoWay      Mode = "two-way"
	SendOnly    Mode = "send-only"
	ReceiveOnly Mode = "receive-only"
)

// Options are the inputs of Plan besides the trees.
type Options struct {
	// Mode is the sync direction; empty means TwoWay.
	Mode Mode
	// AgentID names conflict copies made by this agent.
	AgentID string
	// Now stamps conflict copies; passing it in keeps Plan pure.
	Now time.Time
}
