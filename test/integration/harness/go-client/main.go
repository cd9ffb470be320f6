// moat-go-client: containerd's own Go client (github.com/containerd/containerd, Debian's
// golang-github-containerd-containerd-dev, 1.6.20) driving moat the way nerdctl, Docker >= 23
// and CRI drive a runtime, where ctr takes other paths: stdio through cio.NewCreator (all
// three FIFO paths named even with a terminal, where the stderr FIFO is never made), execs,
// ResizePty on processes without a terminal, Pids, Update, and the task's pid checked with
// kill(pid, 0). Used by test/integration/issue-10-go-client.test.ts; built by `make build`
// (GOPATH mode, offline) into dist/test/bin/moat-go-client.
//
// Usage: moat-go-client -address SOCK -namespace NS -image REF -fifo-dir DIR [-hooks FILE [-netns PATH]] CASE ID [ARG...]
// (-hooks, -netns and ARGs for the "hooks" case: a JSON file of the spec's hooks, the network
// namespace the spec names by path (none: a new one, containerd's default), and the process's args)
// Prints one JSON object of what it saw on stdout; a call that fails unexpectedly ends it
// with exit status 1 and the error on stderr. Every task and container it made is deleted
// before it exits, failed or not.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	v2stats "github.com/containerd/cgroups/v2/stats"
	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/typeurl"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const runtime = "io.containerd.moat.v2"

type session struct {
	ctx     context.Context
	client  *containerd.Client
	image   containerd.Image
	fifoDir string
	id      string
	// The "hooks" case's: a JSON file of specs.Hooks, and the process's args.
	hooksFile string
	netns     string
	args      []string
	// Undone in reverse order at exit, as a client's defers would.
	undo []func()
}

func main() {
	address := flag.String("address", "", "containerd's socket")
	namespace := flag.String("namespace", "", "containerd namespace")
	imageRef := flag.String("image", "", "image to run (imported already)")
	fifoDir := flag.String("fifo-dir", "", "directory for cio's FIFOs")
	hooksFile := flag.String("hooks", "", "the hooks case's hooks (a JSON file of specs.Hooks)")
	netns := flag.String("netns", "", "the hooks case's network namespace path (none: a new one)")
	flag.Parse()
	if flag.NArg() < 2 {
		fail(errors.New("usage: moat-go-client -address SOCK -namespace NS -image REF -fifo-dir DIR [-hooks FILE [-netns PATH]] CASE ID [ARG...]"))
	}
	client, err := containerd.New(*address)
	if err != nil {
		fail(err)
	}
	ctx := namespaces.WithNamespace(context.Background(), *namespace)
	image, err := client.GetImage(ctx, *imageRef)
	if err != nil {
		fail(err)
	}
	s := &session{ctx: ctx, client: client, image: image, fifoDir: *fifoDir, id: flag.Arg(1), hooksFile: *hooksFile, netns: *netns, args: flag.Args()[2:]}
	cases := map[string]func() (map[string]interface{}, error){
		"stdio":        s.stdio,
		"terminal":     s.terminal,
		"exec-missing": s.execMissing,
		"resize":       s.resize,
		"pids":         s.pids,
		"update":       s.update,
		"pid-gone":     s.pidGone,
		"hooks":        s.hooks,
	}
	run, ok := cases[flag.Arg(0)]
	if !ok {
		fail(fmt.Errorf("unknown case %q", flag.Arg(0)))
	}
	result, err := run()
	for i := len(s.undo) - 1; i >= 0; i-- {
		s.undo[i]()
	}
	if err != nil {
		fail(err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(result); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "moat-go-client:", err)
	os.Exit(1)
}

// container makes a container of the image on moat's runtime with containerd's default spec
// (its cgroupsPath is /<namespace>/<id>), as nerdctl does.
func (s *session) container(opts ...oci.SpecOpts) (containerd.Container, error) {
	specOpts := append([]oci.SpecOpts{oci.WithImageConfig(s.image)}, opts...)
	container, err := s.client.NewContainer(s.ctx, s.id,
		containerd.WithImage(s.image),
		containerd.WithNewSnapshot(s.id+"-snapshot", s.image),
		containerd.WithRuntime(runtime, nil),
		containerd.WithNewSpec(specOpts...),
	)
	if err != nil {
		return nil, err
	}
	s.undo = append(s.undo, func() { _ = container.Delete(s.ctx, containerd.WithSnapshotCleanup) })
	return container, nil
}

// task creates the container's task and registers its deletion (killed first, as a client's
// cleanup does).
func (s *session) task(container containerd.Container, creator cio.Creator) (containerd.Task, error) {
	task, err := container.NewTask(s.ctx, creator)
	if err != nil {
		return nil, err
	}
	s.undo = append(s.undo, func() { _, _ = task.Delete(s.ctx, containerd.WithProcessKill) })
	return task, nil
}

// running: a container and its started task running args, with no stdio.
func (s *session) running(args ...string) (containerd.Task, error) {
	container, err := s.container(oci.WithProcessArgs(args...))
	if err != nil {
		return nil, err
	}
	task, err := s.task(container, cio.NewCreator(cio.WithStreams(nil, io.Discard, io.Discard), cio.WithFIFODir(s.fifoDir)))
	if err != nil {
		return nil, err
	}
	return task, task.Start(s.ctx)
}

// processSpec: the container's process with other args (and a terminal or not), as
// nerdctl exec builds it.
func (s *session) processSpec(container containerd.Container, terminal bool, args ...string) (*specs.Process, error) {
	spec, err := container.Spec(s.ctx)
	if err != nil {
		return nil, err
	}
	process := *spec.Process
	process.Args = args
	process.Terminal = terminal
	return &process, nil
}

// exec makes (does not start) exec `id` of args in the running task, as nerdctl exec does:
// the container's process with other args, no stdin, its output to `stdout` (or discarded).
func (s *session) exec(task containerd.Task, id string, stdout io.Writer, args ...string) (containerd.Process, error) {
	spec, err := task.Spec(s.ctx)
	if err != nil {
		return nil, err
	}
	process := *spec.Process
	process.Args = args
	if stdout == nil {
		stdout = io.Discard
	}
	return task.Exec(s.ctx, id, &process, cio.NewCreator(cio.WithStreams(nil, stdout, io.Discard), cio.WithFIFODir(s.fifoDir)))
}

// started starts a task or exec after asking for its exit (first, as a client must, or a
// quick exit is missed) and returns where the exit comes.
func (s *session) started(process containerd.Process) (<-chan containerd.ExitStatus, error) {
	exited, err := process.Wait(s.ctx)
	if err != nil {
		return nil, err
	}
	return exited, process.Start(s.ctx)
}

// closingReader calls CloseIO once its reader is done, as ctr's and nerdctl's stdin closers do.
type closingReader struct {
	reader io.Reader
	close  func()
}

func (r *closingReader) Read(p []byte) (int, error) {
	n, err := r.reader.Read(p)
	if err == io.EOF && r.close != nil {
		r.close()
		r.close = nil
	}
	return n, err
}

func stdinFor(text string) (*closingReader, func(func())) {
	// Nothing is read until the process has started and its closer is set.
	blocked := make(chan struct{})
	reader := &closingReader{reader: io.MultiReader(&waitReader{blocked}, strings.NewReader(text))}
	return reader, func(close func()) { reader.close = close; closeOnce(blocked) }
}

type waitReader struct{ ready chan struct{} }

func (w *waitReader) Read([]byte) (int, error) {
	<-w.ready
	return 0, io.EOF
}

func closeOnce(c chan struct{}) {
	select {
	case <-c:
	default:
		close(c)
	}
}

// alive is kill(pid, 0): what tools use to ask whether the task's process still exists.
func alive(pid uint32) bool {
	return syscall.Kill(int(pid), 0) == nil
}

// stdio: a plain task with stdin, stdout and stderr through cio's FIFOs.
func (s *session) stdio() (map[string]interface{}, error) {
	container, err := s.container(oci.WithProcessArgs("sh", "-c", `read line; echo "out $line"; echo err >&2; exit 7`))
	if err != nil {
		return nil, err
	}
	stdin, ready := stdinFor("hello\n")
	var stdout, stderr bytes.Buffer
	task, err := s.task(container, cio.NewCreator(cio.WithStreams(stdin, &stdout, &stderr), cio.WithFIFODir(s.fifoDir)))
	if err != nil {
		return nil, err
	}
	exited, err := s.started(task)
	if err != nil {
		return nil, err
	}
	ready(func() { _ = task.CloseIO(s.ctx, containerd.WithStdinCloser) })
	status := <-exited
	task.IO().Wait()
	return map[string]interface{}{"pid": task.Pid(), "exitStatus": status.ExitCode(), "stdout": stdout.String(), "stderr": stderr.String()}, nil
}

// terminal: a task and an exec with terminals, each given all three streams as
// cio.WithStdio gives them: cio names a stderr FIFO it never makes.
func (s *session) terminal() (map[string]interface{}, error) {
	container, err := s.container(oci.WithTTY, oci.WithProcessArgs("sh", "-c", "tty; echo init-on-tty; read line; echo \"init got $line\"; exit 2"))
	if err != nil {
		return nil, err
	}
	stdin, ready := stdinFor("typed\n")
	var stdout, stderr bytes.Buffer
	task, err := s.task(container, cio.NewCreator(cio.WithStreams(stdin, &stdout, &stderr), cio.WithTerminal, cio.WithFIFODir(s.fifoDir)))
	if err != nil {
		return nil, err
	}
	exited, err := s.started(task)
	if err != nil {
		return nil, err
	}

	spec, err := s.processSpec(container, true, "sh", "-c", "tty; echo exec-on-tty; exit 3")
	if err != nil {
		return nil, err
	}
	var execOut, execErr bytes.Buffer
	process, err := task.Exec(s.ctx, "tty-exec", spec, cio.NewCreator(cio.WithStreams(strings.NewReader(""), &execOut, &execErr), cio.WithTerminal, cio.WithFIFODir(s.fifoDir)))
	if err != nil {
		return nil, err
	}
	execExited, err := s.started(process)
	if err != nil {
		return nil, err
	}
	execStatus := <-execExited
	process.IO().Wait()
	if _, err := process.Delete(s.ctx); err != nil {
		return nil, err
	}

	ready(func() {}) // a terminal's input ends with the process: no CloseIO
	status := <-exited
	task.IO().Wait()
	return map[string]interface{}{
		"exitStatus": status.ExitCode(), "stdout": stdout.String(), "stderr": stderr.String(),
		"execExitStatus": execStatus.ExitCode(), "execStdout": execOut.String(), "execStderr": execErr.String(),
	}, nil
}

// execMissing: an exec of a binary the image does not have fails at Start, as with runc.
func (s *session) execMissing() (map[string]interface{}, error) {
	task, err := s.running("sleep", "1000")
	if err != nil {
		return nil, err
	}
	exec, err := s.exec(task, "missing", nil, "/no/such/binary")
	if err != nil {
		return nil, fmt.Errorf("exec (create): %w", err)
	}
	startErr := exec.Start(s.ctx)
	result := map[string]interface{}{"startError": errorText(startErr)}
	if startErr == nil {
		exited, err := exec.Wait(s.ctx)
		if err == nil {
			result["exitStatusInstead"] = (<-exited).ExitCode()
		}
	}
	if _, err := exec.Delete(s.ctx); err != nil {
		result["deleteError"] = err.Error()
	}
	// The task is unharmed: another exec runs.
	var out bytes.Buffer
	after, err := s.exec(task, "after", &out, "echo", "still-here")
	if err != nil {
		return nil, err
	}
	afterExited, err := s.started(after)
	if err != nil {
		return nil, err
	}
	result["afterExitStatus"] = (<-afterExited).ExitCode()
	after.IO().Wait()
	result["afterStdout"] = out.String()
	_, _ = after.Delete(s.ctx)
	return result, nil
}

// resize: ResizePty on a task and on an exec without terminals.
func (s *session) resize() (map[string]interface{}, error) {
	task, err := s.running("sleep", "1000")
	if err != nil {
		return nil, err
	}
	result := map[string]interface{}{"taskResizeError": errorText(task.Resize(s.ctx, 100, 30))}
	exec, err := s.exec(task, "plain", nil, "sleep", "1000")
	if err != nil {
		return nil, err
	}
	if err := exec.Start(s.ctx); err != nil {
		return nil, err
	}
	result["execResizeError"] = errorText(exec.Resize(s.ctx, 100, 30))
	_, _ = exec.Delete(s.ctx, containerd.WithProcessKill)
	return result, nil
}

// pids: Pids lists the task's pid, and an exec's.
func (s *session) pids() (map[string]interface{}, error) {
	task, err := s.running("sleep", "1000")
	if err != nil {
		return nil, err
	}
	before, err := task.Pids(s.ctx)
	if err != nil {
		return nil, err
	}
	exec, err := s.exec(task, "second", nil, "sleep", "1000")
	if err != nil {
		return nil, err
	}
	if err := exec.Start(s.ctx); err != nil {
		return nil, err
	}
	with, err := task.Pids(s.ctx)
	if err != nil {
		return nil, err
	}
	_, _ = exec.Delete(s.ctx, containerd.WithProcessKill)
	list := func(infos []containerd.ProcessInfo) []uint32 {
		pids := []uint32{}
		for _, info := range infos {
			pids = append(pids, info.Pid)
		}
		return pids
	}
	return map[string]interface{}{"pid": task.Pid(), "execPid": exec.Pid(), "pids": list(before), "pidsWithExec": list(with)}, nil
}

// update: Update's limits, then where tools read them: the cgroup of the task's pid on the
// host (/proc/PID/cgroup, as containerd's cgroups.PidPath does), and the container's cgroup
// in its guest (Task.Metrics).
func (s *session) update() (map[string]interface{}, error) {
	task, err := s.running("sleep", "1000")
	if err != nil {
		return nil, err
	}
	quota, period, shares, memory := int64(50000), uint64(100000), uint64(512), int64(96*1024*1024)
	err = task.Update(s.ctx, containerd.WithResources(&specs.LinuxResources{
		CPU:    &specs.LinuxCPU{Quota: &quota, Period: &period, Shares: &shares},
		Memory: &specs.LinuxMemory{Limit: &memory},
	}))
	if err != nil {
		return nil, err
	}
	host, err := hostCgroupFiles(task.Pid())
	if err != nil {
		return nil, err
	}
	// The container's own cgroup in its guest, as Task.Metrics reports it.
	metric, err := task.Metrics(s.ctx)
	if err != nil {
		return nil, err
	}
	data, err := typeurl.UnmarshalAny(metric.Data)
	if err != nil {
		return nil, err
	}
	metrics, ok := data.(*v2stats.Metrics)
	if !ok || metrics.Memory == nil {
		return nil, fmt.Errorf("metrics of type %s, not cgroups v2 with memory", metric.Data.GetTypeUrl())
	}
	return map[string]interface{}{"pid": task.Pid(), "host": host, "guestMemoryLimit": metrics.Memory.UsageLimit}, nil
}

// hostCgroupFiles reads the CPU limits of pid's cgroup: cgroup v1's cpu controller, or v2's
// unified tree, found from /proc/PID/cgroup.
func hostCgroupFiles(pid uint32) (map[string]string, error) {
	membership, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(membership)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var dir string
		var names []string
		switch {
		case parts[0] == "0" && parts[1] == "":
			dir, names = filepath.Join("/sys/fs/cgroup", parts[2]), []string{"cpu.max", "cpu.weight"}
			if _, err := os.Stat(filepath.Join(dir, "cgroup.controllers")); err != nil || !hasFile(dir, "cpu.max") {
				continue // a hybrid host's unified tree holds no cpu controller
			}
		case hasController(parts[1], "cpu"):
			dir, names = filepath.Join("/sys/fs/cgroup", parts[1], parts[2]), []string{"cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.shares"}
			if !hasFile(dir, names[0]) {
				dir = filepath.Join("/sys/fs/cgroup", "cpu", parts[2]) // cpu,cpuacct is often mounted as cpu too
			}
		default:
			continue
		}
		files["cgroup"] = parts[2]
		for _, name := range names {
			data, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				return nil, err
			}
			files[name] = strings.TrimSpace(string(data))
		}
	}
	return files, nil
}

func hasController(list, name string) bool {
	for _, controller := range strings.Split(list, ",") {
		if controller == name {
			return true
		}
	}
	return false
}

func hasFile(dir, name string) bool {
	_, err := os.Stat(filepath.Join(dir, name))
	return err == nil
}

// pidGone: the pids a task and an exec report exist while they run and are gone (kill(pid, 0)
// fails with ESRCH) once Wait has told of their exit.
func (s *session) pidGone() (map[string]interface{}, error) {
	container, err := s.container(oci.WithProcessArgs("sh", "-c", "read line; exit 5"))
	if err != nil {
		return nil, err
	}
	stdin, ready := stdinFor("")
	task, err := s.task(container, cio.NewCreator(cio.WithStreams(stdin, io.Discard, io.Discard), cio.WithFIFODir(s.fifoDir)))
	if err != nil {
		return nil, err
	}
	exited, err := s.started(task)
	if err != nil {
		return nil, err
	}
	result := map[string]interface{}{"pid": task.Pid(), "aliveWhileRunning": alive(task.Pid())}

	spec, err := s.processSpec(container, false, "sh", "-c", "read line; exit 4")
	if err != nil {
		return nil, err
	}
	execStdin, execReady := stdinFor("")
	exec, err := task.Exec(s.ctx, "reader", spec, cio.NewCreator(cio.WithStreams(execStdin, io.Discard, io.Discard), cio.WithFIFODir(s.fifoDir)))
	if err != nil {
		return nil, err
	}
	execExited, err := s.started(exec)
	if err != nil {
		return nil, err
	}
	result["execPid"] = exec.Pid()
	result["execAliveWhileRunning"] = alive(exec.Pid())
	execReady(func() { _ = exec.CloseIO(s.ctx, containerd.WithStdinCloser) })
	result["execExitStatus"] = (<-execExited).ExitCode()
	result["execAliveAfterExit"] = alive(exec.Pid())
	_, _ = exec.Delete(s.ctx)

	ready(func() { _ = task.CloseIO(s.ctx, containerd.WithStdinCloser) })
	result["exitStatus"] = (<-exited).ExitCode()
	result["aliveAfterExit"] = alive(task.Pid())
	return result, nil
}

func errorText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// hooks: a task whose spec carries the host hooks of -hooks, as nerdctl's carries its CNI setup
// (a createRuntime hook) and teardown (poststop), in containerd's default spec, which asks for
// a new network namespace without a path. What the task printed, its exit status, its pid and
// that pid's network namespace between create and start (where the hooks put the network).
// Its deletion (undo) runs the poststop hooks.
func (s *session) hooks() (map[string]interface{}, error) {
	data, err := os.ReadFile(s.hooksFile)
	if err != nil {
		return nil, err
	}
	var hooks specs.Hooks
	if err := json.Unmarshal(data, &hooks); err != nil {
		return nil, fmt.Errorf("%s: %w", s.hooksFile, err)
	}
	withHooks := func(_ context.Context, _ oci.Client, _ *containers.Container, spec *oci.Spec) error {
		spec.Hooks = &hooks
		return nil
	}
	opts := []oci.SpecOpts{oci.WithProcessArgs(s.args...), withHooks}
	if s.netns != "" {
		// As a CRI pod's containers are given their pod's: by path.
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: s.netns}))
	}
	container, err := s.container(opts...)
	if err != nil {
		return nil, err
	}
	var stdout, stderr bytes.Buffer
	task, err := s.task(container, cio.NewCreator(cio.WithStreams(nil, &stdout, &stderr), cio.WithFIFODir(s.fifoDir)))
	if err != nil {
		return nil, err
	}
	netns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", task.Pid()))
	if err != nil {
		return nil, err
	}
	exited, err := s.started(task)
	if err != nil {
		return nil, err
	}
	status := <-exited
	task.IO().Wait()
	return map[string]interface{}{"pid": task.Pid(), "netns": netns, "exitStatus": status.ExitCode(), "stdout": stdout.String(), "stderr": stderr.String()}, nil
}
