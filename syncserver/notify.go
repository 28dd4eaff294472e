package syncserver

import "sync"

// notifier wakes long-polling changes requests when the folder's seq moves. A waiter
// takes the channel before it reads the store, so a change committed between its read
// and its wait still wakes it.
type notifier struct {
	mu  sync.Mutex
	seq int64
	ch  chan struct{}
}

func newNotifier(seq int64) *notifier {
	return &notifier{seq: seq, ch: make(chan struct{})}
}

// wait returns a channel closed by the next publish that raises seq.
func (n *notifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ch
}

// publish records that seq has been committed and wakes every waiter.
func (n *notifier) publish(seq int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if seq <= n.seq {
		return
	}
	n.seq = seq
	close(n.ch)
	n.ch = make(chan struct{})
}
