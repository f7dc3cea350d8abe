"""The harness shared by Benchmarks/serve.py and Benchmarks/shield.py: child processes that die
with the bench, ports, logs, nginx configurations, the `darter seed` binary and process, test
content. Both scripts import it from their own directory (Python puts a script's directory first
on sys.path), so they run from any working directory."""
import atexit, ctypes, hashlib, json, os, resource, shlex, shutil, signal, socket, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DARTER = os.environ.get("DARTER_BIN", os.path.join(ROOT, ".build", "release", "darter"))
SEED_ARGS = shlex.split(os.environ.get("DARTER_SEED_ARGS", ""))

GIB, MIB, KIB = 1 << 30, 1 << 20, 1 << 10

children = []


class BenchError(Exception):
    pass


def bench_dir(suite):
    """DARTER_BENCH_DIR (.build/bench) / suite."""
    return os.path.join(os.environ.get("DARTER_BENCH_DIR", os.path.join(ROOT, ".build", "bench")), suite)


# ---------------------------------------------------------------------------------------------
# Child processes: killed at exit (atexit, signals) and when this process dies (PDEATHSIG).

def _die_with_parent():
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start_child(cmd, log_path):
    log = open(log_path, "wb")
    try:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                             preexec_fn=_die_with_parent)
    finally:
        log.close()
    children.append(p)
    return p


def stop_child(p, sig=signal.SIGTERM, timeout=10):
    """Signals a child and waits; returns its exit code (SIGKILL after the timeout)."""
    if p.poll() is None:
        try:
            p.send_signal(sig)
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in children:
        children.remove(p)
    return p.returncode


def kill_children():
    for p in list(children):
        stop_child(p, timeout=5)


def _on_signal(signum, _frame):
    kill_children()
    sys.exit(128 + signum)


def setup_process():
    """Children are killed at exit and on SIGTERM/SIGINT; RLIMIT_NOFILE raised to 8192 if lower
    (up to the hard limit)."""
    atexit.register(kill_children)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 8192:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(8192, hard) if hard != resource.RLIM_INFINITY else 8192, hard))


def parse_only_flag(script):
    """The arguments as a set: empty, {"--only-nginx"} or {"--only-darter"}; None (after printing
    the usage) for anything else."""
    args = set(sys.argv[1:])
    unknown = args - {"--only-nginx", "--only-darter"}
    if unknown or len(args) > 1:
        print(f"usage: {script} [--only-nginx | --only-darter]", file=sys.stderr)
        return None
    return args


def run_main(main, suite):
    """sys.exit(main()); a BenchError is printed as `bench SUITE: ...` with exit status 1."""
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"bench {suite}: {e}", file=sys.stderr)
        sys.exit(1)
    finally:
        kill_children()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, log_path, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{proc.args[0]} exited with {proc.returncode} before listening; log {log_path}:\n" + tail(log_path))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"{proc.args[0]} is not listening on port {port} after {timeout:.0f}s; log {log_path}:\n" + tail(log_path))


def describe_exit(code):
    return f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"status {code}"


def tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def require_tool(name, package):
    if shutil.which(name) is None:
        raise BenchError(f"'{name}' not found: install the Debian package {package} (tools/bootstrap does)")


# ---------------------------------------------------------------------------------------------
# Content.

def write_random(f, size):
    """Writes `size` random bytes to the open file `f`; returns their SHA-256 (hex)."""
    h = hashlib.sha256()
    left = size
    while left:
        chunk = os.urandom(min(left, 16 * MIB))
        h.update(chunk)
        f.write(chunk)
        left -= len(chunk)
    return h.hexdigest()


def write_json(path, value):
    """Writes `path` atomically (a .tmp file, then rename)."""
    with open(path + ".tmp", "w") as f:
        json.dump(value, f)
    os.replace(path + ".tmp", path)


# ---------------------------------------------------------------------------------------------
# nginx.

def nginx_user():
    try:
        import pwd, grp
        return f"{pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name}"
    except (ImportError, KeyError):
        return f"{os.getuid()}"


def nginx_conf(script, directory, port, sendfile, server, http_first="", http_last=""):
    """A foreground nginx (master and 2 workers) with its pid, error log and temp files under
    `directory`, one server on 127.0.0.1:port. `server`: the lines of the server block after
    `listen`; `http_first`, `http_last`: extra http lines before `sendfile` and before the server
    (each line ends in a newline)."""
    return f"""# generated by Benchmarks/{script}
daemon off;
master_process on;
worker_processes 2;
user {nginx_user()};
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
worker_rlimit_nofile 8192;
events {{ worker_connections 4096; }}
http {{
{http_first}    sendfile {sendfile};
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path {directory}/tmp/body;
    proxy_temp_path {directory}/tmp/proxy;
    fastcgi_temp_path {directory}/tmp/fastcgi;
    uwsgi_temp_path {directory}/tmp/uwsgi;
    scgi_temp_path {directory}/tmp/scgi;
{http_last}    server {{
        listen 127.0.0.1:{port};
{server}    }}
}}
"""


class NginxServer:
    """nginx on a free loopback port, configured by nginx_conf (the arguments after `directory`)
    in `directory`/nginx.conf; its stdout and stderr go to `directory`/stderr.log."""

    def __init__(self, name, directory, script, sendfile, server, http_first="", http_last=""):
        self.name = name
        self.dir = directory
        self.port = free_port()
        self.log = os.path.join(self.dir, "stderr.log")
        self.conf = os.path.join(self.dir, "nginx.conf")
        self.proc = None
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        with open(self.conf, "w") as f:
            f.write(nginx_conf(script, self.dir, self.port, sendfile, server, http_first, http_last))

    def start(self):
        self.proc = start_child(["nginx", "-p", self.dir, "-c", self.conf, "-e", os.path.join(self.dir, "error.log")], self.log)
        wait_for_port(self.port, self.proc, self.log)

    def stop(self):
        if self.proc is not None:
            stop_child(self.proc, signal.SIGQUIT)  # graceful: finish requests, flush the log
            self.proc = None


# ---------------------------------------------------------------------------------------------
# darter seed.

def check_darter_seed(unavailable_note=""):
    """Fails unless DARTER runs `seed --help`; returns its output (stdout + stderr)."""
    if not os.access(DARTER, os.X_OK):
        raise BenchError(f"{DARTER} not found: build it (swift build -c release --product darter), or run with --only-nginx")
    r = subprocess.run([DARTER, "seed", "--help"], capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"'{DARTER} seed --help' exited with {r.returncode}: the seed command is not available{unavailable_note}. "
                         f"Run with --only-nginx to measure nginx alone.\n{r.stderr.strip()}")
    return r.stdout + r.stderr


def seed_command(port, data_dir):
    return [DARTER, "seed", "--listen", f"127.0.0.1:{port}", "--data-dir", data_dir] + SEED_ARGS


def wait_for_seed(proc, port, log_path):
    """Waits for the seed's 'seed: listening on' log line (60 s at most), then for its port."""
    deadline = time.time() + 60
    while "seed: listening on" not in tail(log_path, 200):
        if proc.poll() is not None:
            raise BenchError(f"darter seed exited with {proc.returncode} before listening; log {log_path}:\n" + tail(log_path))
        if time.time() > deadline:
            raise BenchError(f"darter seed printed no 'seed: listening on' line in 60s; log {log_path}:\n" + tail(log_path))
        time.sleep(0.05)
    wait_for_port(port, proc, log_path)
