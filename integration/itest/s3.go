package itest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// S3StartTimeout bounds how long StartS3 and the Restart methods wait
// for the processes they start to answer.
const S3StartTimeout = 60 * time.Second

// S3Options chooses the shape of the cluster StartS3 starts.
type S3Options struct {
	// VolumeServers is how many volume servers store the data. 0 or 1
	// runs master, volume server, filer and S3 gateway in one `weed
	// server -s3` process; more runs each in its own process (a master,
	// that many volume servers, a filer and a gateway), so that a fault
	// test can kill one volume server, or the gateway alone.
	VolumeServers int
	// Replication is SeaweedFS's replica placement for new volumes,
	// "xyz": extra copies in other data centres, other racks, other
	// servers of the rack. "001" keeps a second copy on another volume
	// server (all run in one rack); "" is "000", one copy. Copies need
	// VolumeServers > 1.
	Replication string
}

// S3Server is a SeaweedFS cluster serving S3 on 127.0.0.1, with its own
// data directory, started for one test by StartS3 and killed when the
// test ends. Its methods are for the test's goroutine.
type S3Server struct {
	Endpoint  string // http://127.0.0.1:PORT, path-style buckets
	Region    string // the region to sign requests for
	AccessKey string // an identity with every action (Admin, Read,
	SecretKey string // Write, List, Tagging); no other identity, no anonymous access

	weed                string
	dir                 string      // data, configuration and logs
	master              string      // the master's address for weed's -master flags
	filer               string      // the filer's address for weed's -filer flags
	masterURL, filerURL string      // their HTTP APIs
	gateway             *weedProc   // the process serving S3: the weed server, or weed s3
	volumes             []*weedProc // in multi-process mode only
	procs               []*weedProc // every process, in start order
	litter              []string    // files and directories to remove once they are dead
}

// StartS3 starts a SeaweedFS cluster for t, shaped by opts, and returns
// once it takes writes: its gateway answers, its volume servers report to
// its master, its master assigns and its filer has joined the lock ring
// that conditional writes need (12 s for one process, 16 s for separate
// ones, mostly a fresh filer's wait for peers). t fails, with the tail of
// the logs, when a process takes longer than S3StartTimeout. The weed binary comes from scripts/install-s3-server,
// which builds it once per machine (several minutes the first time).
// Every process listens on 127.0.0.1 only, on ports free when StartS3
// chose them, and dies with the test binary; t's cleanup kills them all
// and, if t failed, logs the tail of each process's log. The data and
// logs live in a directory of t.TempDir().
func StartS3(t testing.TB, opts S3Options) *S3Server {
	t.Helper()
	if opts.Replication != "" && opts.Replication != "000" && opts.VolumeServers < 2 {
		t.Fatalf("StartS3: replication %q needs more than one volume server", opts.Replication)
	}
	s := &S3Server{
		Region:    "us-east-1",
		AccessKey: "FT" + strings.ToUpper(randomHex(t, 9)),
		SecretKey: randomHex(t, 20),
		weed:      WeedBinary(t),
		dir:       t.TempDir(),
	}
	// One cleanup, registered after t.TempDir's: it runs first.
	t.Cleanup(func() { s.stop(t) })

	identities := map[string]any{"identities": []any{map[string]any{
		"name":        "forge-test",
		"credentials": []any{map[string]string{"accessKey": s.AccessKey, "secretKey": s.SecretKey}},
		"actions":     []string{"Admin", "Read", "Write", "List", "Tagging"},
	}}}
	s3Config := s.writeJSON(t, "s3.json", identities)
	// Fresh masters hold allocation for a warm-up window (15 s) in case
	// veteran volume servers still have to report; here there are none.
	// Few volumes per growth keep the data directories small.
	configDir := s.mkdir(t, "config")
	masterToml := "[master.volume_growth]\n" +
		"allocation_deferral = \"0s\"\n" +
		"copy_1 = 2\ncopy_2 = 2\ncopy_3 = 1\ncopy_other = 1\n"
	if err := os.WriteFile(filepath.Join(configDir, "master.toml"), []byte(masterToml), 0o644); err != nil {
		t.Fatal(err)
	}
	// Unix sockets need a short path; SeaweedFS puts its defaults in /tmp.
	sockets, err := os.MkdirTemp("", "weed-")
	if err != nil {
		t.Fatal(err)
	}
	s.litter = append(s.litter, sockets)

	const ip = "127.0.0.1"
	common := []string{"-ip=" + ip, "-ip.bind=" + ip}
	ports := freePorts(t, 8+2*max(opts.VolumeServers-1, 0))
	next := func() int { p := ports[0]; ports = ports[1:]; return p }
	global := []string{"-logtostderr", "-v=0", "-config_dir=" + configDir}
	mPort, mGrpc := next(), next()
	fPort, fGrpc := next(), next()
	sPort, sGrpc := next(), next()
	s.master = fmt.Sprintf("%s:%d.%d", ip, mPort, mGrpc)
	s.filer = fmt.Sprintf("%s:%d.%d", ip, fPort, fGrpc)
	s.Endpoint = fmt.Sprintf("http://%s:%d", ip, sPort)
	s.masterURL = fmt.Sprintf("http://%s:%d", ip, mPort)
	s.filerURL = fmt.Sprintf("http://%s:%d", ip, fPort)
	masterReady := probe{s.masterURL + "/readyz", http.StatusOK}
	// A master restarted with volumes refuses assignments, hence writes,
	// for a warm-up window (15 s) in which its volume servers report.
	// It says so (503) before it looks at the request: here, one for an
	// invalid replication, refused (406) without allocating anything once
	// the window is over.
	masterAssigns := probe{s.masterURL + "/dir/assign?replication=-", http.StatusNotAcceptable}
	filerReady := probe{s.filerURL + "/healthz", http.StatusOK}
	gatewayReady := probe{s.Endpoint + "/healthz", http.StatusOK}
	volumeReady := func(port int) probe { return probe{fmt.Sprintf("http://%s:%d/healthz", ip, port), http.StatusOK} }

	if opts.VolumeServers <= 1 {
		vPort, vGrpc := next(), next()
		args := slices.Concat(global, []string{"server"}, common, []string{
			"-dir=" + s.mkdir(t, "volume"),
			"-master.dir=" + s.mkdir(t, "master"),
			"-master.port=" + strconv.Itoa(mPort), "-master.port.grpc=" + strconv.Itoa(mGrpc),
			"-master.peers=none",
			"-master.volumeSizeLimitMB=32",
			"-master.telemetry=false",
			"-volume.port=" + strconv.Itoa(vPort), "-volume.port.grpc=" + strconv.Itoa(vGrpc),
			"-volume.max=8",
			"-volume.preStopSeconds=0",
			"-filer.port=" + strconv.Itoa(fPort), "-filer.port.grpc=" + strconv.Itoa(fGrpc),
			"-filer.localSocket=" + filepath.Join(sockets, "filer.sock"),
			"-s3",
			"-s3.port=" + strconv.Itoa(sPort), "-s3.port.grpc=" + strconv.Itoa(sGrpc),
			"-s3.port.iceberg=0", "-s3.port.lance=0",
			"-s3.config=" + s3Config,
			"-s3.localSocket=" + filepath.Join(sockets, "s3.sock"),
			"-s3.autoCreateBucket=false",
			"-s3.iam=false",
		})
		if opts.Replication != "" {
			args = append(args, "-master.defaultReplication="+opts.Replication)
		}
		s.gateway = s.spawn(t, "server", args, masterReady, masterAssigns, volumeReady(vPort), filerReady, gatewayReady)
		s.await(t, s.gateway)
		// `weed server` also serves gRPC on Unix sockets in /tmp, named
		// after the ports, and leaves them behind when killed.
		for _, name := range []string{
			fmt.Sprintf("master-grpc-%d", mGrpc), fmt.Sprintf("volume-grpc-%d", vGrpc),
			fmt.Sprintf("filer-grpc-%d", fGrpc), fmt.Sprintf("s3-grpc-%d", sGrpc),
		} {
			s.litter = append(s.litter, "/tmp/seaweedfs-"+name+".sock")
		}
		return s
	}

	masterArgs := slices.Concat(global, []string{"master"}, common, []string{
		"-port=" + strconv.Itoa(mPort), "-port.grpc=" + strconv.Itoa(mGrpc),
		"-mdir=" + s.mkdir(t, "master"),
		"-peers=none",
		"-volumeSizeLimitMB=32",
		"-telemetry=false",
	})
	if opts.Replication != "" {
		masterArgs = append(masterArgs, "-defaultReplication="+opts.Replication)
	}
	s.await(t, s.spawn(t, "master", masterArgs, masterReady, masterAssigns))
	// The volume servers and the filer start together: a fresh filer
	// waits 10 s for peers before it joins the master's list.
	for i := range opts.VolumeServers {
		vPort, vGrpc := next(), next()
		args := slices.Concat(global, []string{"volume"}, common, []string{
			"-port=" + strconv.Itoa(vPort), "-port.grpc=" + strconv.Itoa(vGrpc),
			"-master=" + s.master,
			"-dir=" + s.mkdir(t, fmt.Sprintf("volume%d", i)),
			"-max=8",
			"-preStopSeconds=0",
		})
		s.volumes = append(s.volumes, s.spawn(t, fmt.Sprintf("volume%d", i), args, volumeReady(vPort)))
	}
	filerArgs := slices.Concat(global, []string{"filer"}, common, []string{
		"-port=" + strconv.Itoa(fPort), "-port.grpc=" + strconv.Itoa(fGrpc),
		"-master=" + s.master,
		"-defaultStoreDir=" + s.mkdir(t, "filer"),
		"-localSocket=" + filepath.Join(sockets, "filer.sock"),
	})
	filer := s.spawn(t, "filer", filerArgs, filerReady)
	for _, v := range s.volumes {
		s.await(t, v)
	}
	s.await(t, filer)
	s3Args := slices.Concat(global, []string{"s3"}, common, []string{
		"-port=" + strconv.Itoa(sPort), "-port.grpc=" + strconv.Itoa(sGrpc),
		"-port.iceberg=0", "-port.lance=0",
		"-filer=" + s.filer,
		"-config=" + s3Config,
		"-localSocket=" + filepath.Join(sockets, "s3.sock"),
		"-autoCreateBucket=false",
		"-iam=false",
	})
	s.gateway = s.spawn(t, "s3", s3Args, gatewayReady)
	s.await(t, s.gateway)
	return s
}

// WeedBinary returns the path of SeaweedFS's weed binary, which
// scripts/install-s3-server builds once per machine into a cache (several
// minutes; concurrent callers wait for one build) and prints at once
// after that.
func WeedBinary(t testing.TB) string {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(root, "scripts", "install-s3-server"))
	cmd.Dir = root
	// The script builds with go: let it find the one that built the test.
	cmd.Env = append(os.Environ(), "PATH="+os.Getenv("PATH")+string(os.PathListSeparator)+filepath.Dir(goTool()))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/install-s3-server: %v\n%s", err, stderr.Bytes())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	bin := strings.TrimSpace(lines[len(lines)-1])
	if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("scripts/install-s3-server printed %q, not an executable (%v)\n%s", bin, err, stderr.Bytes())
	}
	return bin
}

// CreateBucket creates the bucket name, through `weed shell` (so that the
// harness needs no S3 client of its own).
func (s *S3Server) CreateBucket(t testing.TB, name string) {
	t.Helper()
	s.shell(t, "s3.bucket.create -name "+name)
}

// KillGateway kills the process that serves S3 with SIGKILL, as a crash
// would, and waits for it to die. In single-process mode that is the
// whole cluster; in multi-process mode the gateway alone.
func (s *S3Server) KillGateway(t testing.TB) {
	t.Helper()
	s.gateway.kill()
}

// RestartGateway starts the gateway's process again, on the same ports
// with the same data, and waits until it takes writes; a gateway still
// running is killed first. In single-process mode the master restarts
// too, and refuses writes for its warm-up window: that takes 15 s.
func (s *S3Server) RestartGateway(t testing.TB) {
	t.Helper()
	s.restart(t, s.gateway)
}

// KillVolumeServer kills volume server i (from 0) with SIGKILL and waits
// for it to die; multi-process mode only.
func (s *S3Server) KillVolumeServer(t testing.TB, i int) {
	t.Helper()
	s.volume(t, i).kill()
}

// RestartVolumeServer starts volume server i again, on the same ports
// with the same data, and waits until it reports to the master;
// multi-process mode only.
func (s *S3Server) RestartVolumeServer(t testing.TB, i int) {
	t.Helper()
	s.restart(t, s.volume(t, i))
}

// VolumeServersHolding lists the volume servers (indexes for
// KillVolumeServer) that hold a chunk of object key of bucket, as the
// filer and the master see them now; multi-process mode only. The
// chunks of a large object's manifests are resolved.
func (s *S3Server) VolumeServersHolding(t testing.TB, bucket, key string) []int {
	t.Helper()
	if len(s.volumes) == 0 {
		t.Fatal("VolumeServersHolding: single-process mode has one volume server")
	}
	segs := strings.Split(key, "/")
	for i, seg := range segs {
		segs[i] = url.PathEscape(seg)
	}
	var entry struct {
		Chunks []struct {
			FileID string `json:"file_id"`
			Fid    *struct {
				VolumeID uint32 `json:"volume_id"`
			} `json:"fid"`
		} `json:"chunks"`
	}
	getJSON(t, s.filerURL+"/buckets/"+url.PathEscape(bucket)+"/"+strings.Join(segs, "/")+"?metadata=true&resolveManifest=true", &entry)
	if len(entry.Chunks) == 0 {
		t.Fatalf("VolumeServersHolding: the filer lists no chunks for %s/%s", bucket, key)
	}
	volumeIDs := map[string]bool{}
	for _, c := range entry.Chunks {
		if c.Fid != nil {
			volumeIDs[strconv.FormatUint(uint64(c.Fid.VolumeID), 10)] = true
		} else if vid, _, ok := strings.Cut(c.FileID, ","); ok {
			volumeIDs[vid] = true
		}
	}
	holding := map[int]bool{}
	for vid := range volumeIDs {
		var lookup struct {
			Locations []struct {
				URL string `json:"url"`
			} `json:"locations"`
		}
		getJSON(t, s.masterURL+"/dir/lookup?volumeId="+vid, &lookup)
		for _, loc := range lookup.Locations {
			for i, v := range s.volumes {
				if v.addr == loc.URL {
					holding[i] = true
				}
			}
		}
	}
	var out []int
	for i := range s.volumes {
		if holding[i] {
			out = append(out, i)
		}
	}
	return out
}

func (s *S3Server) volume(t testing.TB, i int) *weedProc {
	t.Helper()
	if i < 0 || i >= len(s.volumes) {
		t.Fatalf("no volume server %d (the cluster has %d in separate processes)", i, len(s.volumes))
	}
	return s.volumes[i]
}

// shell runs one command of `weed shell` against the cluster.
func (s *S3Server) shell(t testing.TB, command string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), S3StartTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.weed, "-logtostderr", "shell", "-master="+s.master, "-filer="+s.filer)
	cmd.Dir = s.dir
	cmd.Stdin = strings.NewReader(command + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("weed shell %q: %v\n%s", command, err, out)
	}
}

// weedProc is one weed process of a cluster: what started it, so that
// it can start again, and how to tell it serves.
type weedProc struct {
	name  string
	args  []string
	log   string  // its stdout and stderr, every run appended
	ready []probe // all answer once it serves
	// joined, when set, matches the log line saying that the process's
	// filer has joined the filers' lock ring: until it has, S3 writes that
	// take a lock (conditional PUTs) wait for it, for up to 10 s after a
	// fresh filer serves. No endpoint tells; the log does.
	joined *regexp.Regexp
	addr   string // 127.0.0.1:port of a volume server, as the master lists it
	cmd    *exec.Cmd
	done   chan struct{} // closed once cmd has been waited for
	// When this run started, and where its output begins in log.
	started time.Time
	offset  int64
}

// filerJoined matches the log line of a filer that has received a lock
// ring with at least one member from its master.
var filerJoined = regexp.MustCompile(`LockRing: filer@\S+ received ring update v\d+: \[\S`)

// spawn starts a new process of the cluster, name, without waiting for
// it: see await.
func (s *S3Server) spawn(t testing.TB, name string, args []string, ready ...probe) *weedProc {
	t.Helper()
	p := &weedProc{name: name, args: args, log: filepath.Join(s.dir, name+".log"), ready: ready}
	if name == "server" || name == "filer" {
		p.joined = filerJoined
	}
	if strings.HasPrefix(name, "volume") {
		u, _ := url.Parse(ready[0].url)
		p.addr = u.Host
	}
	s.procs = append(s.procs, p)
	s.run(t, p)
	return p
}

// restart kills p if it runs, starts it again and waits until it serves.
func (s *S3Server) restart(t testing.TB, p *weedProc) {
	t.Helper()
	p.kill()
	s.run(t, p)
	s.await(t, p)
}

// run starts p's process, its output appended to its log.
func (s *S3Server) run(t testing.TB, p *weedProc) {
	t.Helper()
	log, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	fi, err := log.Stat()
	if err != nil {
		t.Fatal(err)
	}
	p.offset = fi.Size()
	fmt.Fprintf(log, "=== %s: weed %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(p.args, " "))
	cmd := exec.Command(s.weed, p.args...)
	cmd.Dir = s.dir
	cmd.Stdout = log
	cmd.Stderr = log
	// Its own process group, so that a kill reaches anything it forks;
	// SIGKILL when the test binary dies (strictly: when the thread that
	// started it does, which Go keeps alive unless it is locked).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start weed %s: %v", p.name, err)
	}
	p.cmd, p.done, p.started = cmd, make(chan struct{}), time.Now()
	go func(done chan struct{}) {
		cmd.Wait()
		close(done)
	}(p.done)
}

// await waits until p, started by run, serves: its probes answer as
// they should and, for a filer, it has joined a lock ring. t fails with the tail of p's
// log when that takes longer than S3StartTimeout from p's start, or p
// exits.
func (s *S3Server) await(t testing.TB, p *weedProc) {
	t.Helper()
	deadline := p.started.Add(S3StartTimeout)
	for _, pr := range p.ready {
		if err := pr.wait(p.done, deadline); err != nil {
			t.Fatalf("weed %s: %v\n%s", p.name, err, tail(p.log, 40))
		}
	}
	if p.joined != nil {
		if err := waitLog(p.log, p.offset, p.joined, p.done, deadline); err != nil {
			t.Fatalf("weed %s: %v\n%s", p.name, err, tail(p.log, 40))
		}
	}
}

// kill kills p's process group, if p runs, and waits for p to exit.
func (p *weedProc) kill() {
	if p.cmd == nil {
		return
	}
	select {
	case <-p.done:
	default:
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// stop kills every process, last started first, removes what they
// leave outside the test's directory and, when t failed, logs the tail
// of each one's log.
func (s *S3Server) stop(t testing.TB) {
	for i := len(s.procs) - 1; i >= 0; i-- {
		s.procs[i].kill()
	}
	for _, path := range s.litter {
		os.RemoveAll(path)
	}
	if t.Failed() {
		for _, p := range s.procs {
			t.Logf("weed %s log (%s):\n%s", p.name, p.log, tail(p.log, 25))
		}
	}
}

// probe is a GET that a serving process answers with status.
type probe struct {
	url    string
	status int
}

// wait polls pr.url until it answers pr.status, the process exits (done
// closes) or the deadline passes.
func (pr probe) wait(done <-chan struct{}, deadline time.Time) error {
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	for {
		resp, err := client.Get(pr.url)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
			resp.Body.Close()
			if resp.StatusCode == pr.status {
				return nil
			}
			err = fmt.Errorf("%s %s", resp.Status, bytes.TrimSpace(b))
		}
		last = err
		select {
		case <-done:
			return fmt.Errorf("exited before %s answered %d (last: %v)", pr.url, pr.status, last)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer %d within %v (last: %v)", pr.url, pr.status, S3StartTimeout, last)
		}
	}
}

// waitLog polls the log at path, from offset on, until a line matches
// re, the process exits (done closes) or the deadline passes.
func waitLog(path string, offset int64, re *regexp.Regexp, done <-chan struct{}, deadline time.Time) error {
	for {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		b, err := io.ReadAll(io.NewSectionReader(f, offset, 1<<40))
		f.Close()
		if err != nil {
			return err
		}
		if re.Match(b) {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("exited before logging a line matching %q", re)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no line matching %q logged within %v: the filer has not joined a lock ring", re, S3StartTimeout)
		}
	}
}

// freePorts returns n distinct TCP ports free on 127.0.0.1 now, drawn
// at random below the kernel's ephemeral range: weed's processes connect
// to each other all the time, and the source port of one of those
// connections could take a port from that range before the process meant
// to listen on it has started. (Another process may still take one; the
// tests live with that.) Without room below the range, the kernel picks.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	const lo = 10000
	hi := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				hi = v
			}
		}
	}
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		addr := "127.0.0.1:0"
		if hi-lo >= 1000 && tries < 100*n {
			addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(lo+mrand.IntN(hi-lo)))
		}
		l, err := net.Listen("tcp", addr)
		if err != nil && strings.HasSuffix(addr, ":0") {
			t.Fatal(err)
		} else if err != nil {
			continue // taken
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

func (s *S3Server) mkdir(t testing.TB, name string) string {
	t.Helper()
	dir := filepath.Join(s.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func (s *S3Server) writeJSON(t testing.TB, name string, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(s.dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func getJSON(t testing.TB, u string, v any) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", u, resp.Status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v\n%s", u, err, b)
	}
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// tail is the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
