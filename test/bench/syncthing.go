package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Syncthing is a pair of Syncthing instances (writer and reader) with discovery, relays,
// NAT traversal, usage and crash reporting off, listening on loopback TCP only, each
// knowing the other only at an address of a counting relay. It is driven by its REST API.
type Syncthing struct {
	// Bin is the syncthing program.
	Bin string

	dir    string
	wire   Counter
	relays []*Relay
	nodes  [2]*stNode
}

type stNode struct {
	name, home, folder, apiKey, gui, id string
	listen                              int
	proc                                *Proc
}

// folderID is the one shared folder.
const folderID = "bench"

// Name is "syncthing".
func (s *Syncthing) Name() string { return "syncthing" }

// Start generates both instances' keys and configuration, starts them, pairs them and
// shares the folder, and waits until they are connected.
func (s *Syncthing) Start(ctx context.Context, dir string, readers int) error {
	if readers != 1 {
		return fmt.Errorf("syncthing runs with one reader, not %d", readers)
	}
	s.dir, s.wire, s.relays = dir, Counter{}, nil
	for i, name := range []string{"writer", "reader"} {
		n, err := s.prepare(dir, name)
		if err != nil {
			return err
		}
		s.nodes[i] = n
	}
	for _, n := range s.nodes {
		r, err := NewRelay(fmt.Sprintf("127.0.0.1:%d", n.listen), &s.wire)
		if err != nil {
			return err
		}
		s.relays = append(s.relays, r)
	}
	for _, n := range s.nodes {
		p, err := startProc(n.name, filepath.Join(dir, n.name+".log"), s.Bin, []string{
			"serve", "--home", n.home, "--no-browser", "--no-restart", "--no-upgrade", "--no-default-folder",
			"--gui-address", "http://" + n.gui, "--gui-apikey", n.apiKey,
		}, "STNODEFAULTFOLDER=1", "STNOUPGRADE=1", "STNORESTART=1",
			// Without a monitor process, so /proc shows the instance that does the work.
			"STMONITORED=1")
		if err != nil {
			return err
		}
		n.proc = p
	}
	for _, n := range s.nodes {
		if err := poll(ctx, 60*time.Second, n.name+" REST API", func() (bool, error) {
			if err := n.proc.Dead(); err != nil {
				return false, fatal{err}
			}
			err := n.call(ctx, http.MethodGet, "/rest/system/ping", nil, nil)
			return err == nil, err
		}); err != nil {
			return err
		}
	}
	for i, n := range s.nodes {
		peer := s.nodes[1-i]
		dev := map[string]any{"deviceID": peer.id, "name": peer.name,
			"addresses": []string{"tcp://" + s.relays[1-i].Addr()}, "compression": "metadata"}
		if err := n.call(ctx, http.MethodPost, "/rest/config/devices", dev, nil); err != nil {
			return err
		}
		folder := map[string]any{"id": folderID, "label": folderID, "path": n.folder, "type": "sendreceive",
			"devices":         []map[string]any{{"deviceID": n.id}, {"deviceID": peer.id}},
			"rescanIntervalS": 3600, "fsWatcherEnabled": true, "fsWatcherDelayS": 1}
		if err := n.call(ctx, http.MethodPost, "/rest/config/folders", folder, nil); err != nil {
			return err
		}
	}
	w, r := s.nodes[0], s.nodes[1]
	return poll(ctx, 90*time.Second, "syncthing pair connected", func() (bool, error) {
		if err := s.Alive(); err != nil {
			return false, err
		}
		var conns struct {
			Connections map[string]struct{ Connected bool } `json:"connections"`
		}
		if err := w.call(ctx, http.MethodGet, "/rest/system/connections", nil, &conns); err != nil {
			return false, err
		}
		return conns.Connections[r.id].Connected, fmt.Errorf("not connected yet")
	})
}

// optionsRE matches the generated options we replace before the first start, so the
// instances never listen beyond loopback nor call out.
var optionsRE = map[string]*regexp.Regexp{}

func setOption(xml, name, value string) string {
	re, ok := optionsRE[name]
	if !ok {
		re = regexp.MustCompile(`<` + name + `>[^<]*</` + name + `>`)
		optionsRE[name] = re
	}
	return re.ReplaceAllString(xml, "<"+name+">"+value+"</"+name+">")
}

func (s *Syncthing) prepare(dir, name string) (*stNode, error) {
	n := &stNode{name: name, home: filepath.Join(dir, name+"-home"), folder: filepath.Join(dir, name)}
	if err := os.MkdirAll(n.folder, 0o755); err != nil {
		return nil, fmt.Errorf("create folder: %w", err)
	}
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	n.apiKey = hex.EncodeToString(key)
	var err error
	if n.listen, err = freePort(); err != nil {
		return nil, err
	}
	gui, err := freePort()
	if err != nil {
		return nil, err
	}
	n.gui = fmt.Sprintf("127.0.0.1:%d", gui)
	if out, err := exec.Command(s.Bin, "generate", "--home", n.home, "--no-default-folder").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("generate syncthing %s: %w: %s", name, err, out)
	}
	out, err := exec.Command(s.Bin, "serve", "--home", n.home, "--device-id").Output()
	if err != nil {
		return nil, fmt.Errorf("read syncthing %s device id: %w", name, err)
	}
	n.id = strings.TrimSpace(string(out))
	cfgPath := filepath.Join(n.home, "config.xml")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("read syncthing config: %w", err)
	}
	cfg := string(raw)
	for k, v := range map[string]string{
		"listenAddress":         fmt.Sprintf("tcp://127.0.0.1:%d", n.listen),
		"globalAnnounceEnabled": "false", "localAnnounceEnabled": "false",
		"relaysEnabled": "false", "natEnabled": "false", "urAccepted": "-1",
		"crashReportingEnabled": "false", "startBrowser": "false", "autoUpgradeIntervalH": "0",
		"reconnectionIntervalS": "1", "announceLANAddresses": "false",
	} {
		cfg = setOption(cfg, k, v)
	}
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("write syncthing config: %w", err)
	}
	return n, nil
}

// call sends one REST request with the API key; out, when not nil, receives the JSON answer.
func (n *stNode) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode %s body: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+n.gui+path, body)
	if err != nil {
		return fmt.Errorf("build request %s: %w", path, err)
	}
	req.Header.Set("X-API-Key", n.apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("call syncthing %s %s: %w", n.name, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("call syncthing %s %s: %s: %s", n.name, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decode %s answer: %w", path, err)
		}
	}
	return nil
}

// Writer is the writer instance's folder.
func (s *Syncthing) Writer() string { return s.nodes[0].folder }

// Readers is the reader instance's folder.
func (s *Syncthing) Readers() []string { return []string{s.nodes[1].folder} }

// Changed asks the writer to rescan now (the REST call returns when the scan is done),
// rather than wait for its watcher's delay: the fairest trigger.
func (s *Syncthing) Changed(ctx context.Context) error {
	return s.nodes[0].call(ctx, http.MethodPost, "/rest/db/scan?folder="+folderID, nil, nil)
}

// Wire counts the bytes between the instances.
func (s *Syncthing) Wire() *Counter { return &s.wire }

// Procs are both instances.
func (s *Syncthing) Procs() []*Proc {
	var out []*Proc
	for _, n := range s.nodes {
		if n != nil && n.proc != nil {
			out = append(out, n.proc)
		}
	}
	return out
}

// ClientUsage is zero: Syncthing runs no short-lived clients.
func (s *Syncthing) ClientUsage() (float64, int64) { return 0, 0 }

// Alive reports a dead instance.
func (s *Syncthing) Alive() error { return aliveAll(s.Procs()) }

// Stop ends both instances.
func (s *Syncthing) Stop() {
	for _, p := range s.Procs() {
		p.Stop()
	}
	for _, r := range s.relays {
		r.Close()
	}
}
