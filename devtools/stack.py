"""The local stack: Azurite (https, OAuth), the simulated tenant and devhost, on loopback.

Storage is reached exactly as in production: with bearer tokens from a managed identity
endpoint (the simulator's), over https, with a locally generated certificate authority
trusted through SSL_CERT_FILE / REQUESTS_CA_BUNDLE (never by turning verification off).
Azurite can be stopped and started again on the same ports and data folder (a storage
outage); the function host can be killed and started again (a crashed instance).

Several function hosts can share the stack (`devhosts`, `add_devhosts`), as a Flex Consumption
app scaled out to several instances: the same queues, storage and tenant, each process with its
own `WEBSITE_INSTANCE_ID` (devhost-1, devhost-2, ...) and log (devhost.log, devhost-2.log, ...).

By default every HTTP route is open, as under `func start`. As in Azure, on request: function
keys (`function_key`, `master_key`: devhost answers 401 without one, in `?code=` or
`x-functions-key`), and App Service authentication (`easy_auth`: devhost checks bearer tokens
against the simulated tenant's OpenID metadata and the allow-lists, the identities being
user-assigned identities of the simulated tenant, by name).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import certifi
import trustme

from devtools.tenantsim.changes import TenantWriter
from userexport.settings import APP_SETTINGS, PLATFORM_AUTH_ENABLED

ROOT = Path(__file__).resolve().parent.parent
AZURITE = ROOT / "node_modules" / ".bin" / "azurite"
ACCOUNT = "devstoreaccount1"  # Azurite's built-in account name


class StackError(RuntimeError):
    """A part of the local stack did not start; the message says which and how to fix it."""


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports. The sockets stay bound until all are chosen: a port
    freed and asked for again can come back, and Azurite with two services on one port serves
    one of them on it (the table service answered blob requests in a CI run)."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def write_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A local CA, a server certificate for 127.0.0.1/localhost, and a CA bundle trusting both
    the local CA and the usual public roots."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, bundle = folder / "cert.pem", folder / "key.pem", folder / "ca-bundle.pem"
    server.private_key_pem.write_to_path(str(key))
    cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    bundle.write_bytes(Path(certifi.where()).read_bytes() + b"\n" + ca.cert_pem.bytes())
    return cert, key, bundle


@dataclass(frozen=True)
class EasyAuth:
    """App Service authentication in front of devhost, as infra/app/auth.bicep configures it
    (authsettingsV2, Microsoft provider, Return401): tokens of the simulated tenant for
    `audience`, from the allowed identities only. Identities are named user-assigned identities
    of the simulated tenant (LocalStack.identity(name) gives their ids)."""

    audience: str = "api://userexport-local"
    client_id: str = ""  # registration.clientId, also an allowed audience when set
    allowed_identities: tuple[str, ...] = ()  # allowedPrincipals.identities, by name
    allowed_applications: tuple[str, ...] = ()  # allowedApplications, by name
    # unauthenticatedClientAction AllowAnonymous instead of Return401: requests without a token
    # reach the app, whose own allow-list (USEREXPORT_ALLOWED_CALLERS) must refuse them.
    allow_anonymous: bool = False


@dataclass
class LocalStack:
    """Starts the parts; `env` holds the app settings that point the app (or a test) at them."""

    users: int = 1000
    seed: int = 1
    tenant_file: Path | None = None
    sim_args: list[str] = field(default_factory=list)
    app_env: dict[str, str] = field(default_factory=dict)
    devhost_args: list[str] = field(default_factory=list)
    workdir: Path | None = None
    log_dir: Path | None = None
    # Function keys devhost enforces as the Functions host does; None: routes are open.
    function_key: str | None = None
    master_key: str | None = None
    # User-assigned identities of the simulated tenant (names), besides easy_auth's.
    identities: tuple[str, ...] = ()
    easy_auth: EasyAuth | None = None
    # Function host processes on the same queues, storage and tenant (instances of one app);
    # api_url is the first one's. add_devhosts() starts more on a running stack. 0: none, the
    # caller hosts the app in its own process (devtools.devhost.host.hosted; tests/app).
    devhosts: int = 1
    env: dict[str, str] = field(default_factory=dict, init=False)
    api_url: str = field(default="", init=False)
    sim: dict[str, Any] = field(default_factory=dict, init=False)
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list, init=False)
    _logs: Path = field(default=Path("."), init=False)
    _devhost: subprocess.Popen[bytes] | None = field(default=None, init=False)  # instance 1
    # Instances 2, 3, ...: (process, its HTTP base URL), in the order they were started.
    _more_devhosts: list[tuple[subprocess.Popen[bytes], str]] = field(
        default_factory=list, init=False
    )
    _azurite: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _azurite_cmd: list[str] = field(default_factory=list, init=False)
    _azurite_ports: dict[str, int] = field(default_factory=dict, init=False)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, init=False)

    def __enter__(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        if self.devhosts < 0:
            raise StackError(f"devhosts must be 0 or more, not {self.devhosts}.")
        if not AZURITE.exists():
            raise StackError(f"Azurite is not installed at {AZURITE}; run `make install` (npm ci).")
        work = self.workdir or Path(self._stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        logs = self.log_dir or work
        logs.mkdir(parents=True, exist_ok=True)
        self._logs = logs
        cert, key, bundle = write_certificates(work)

        sim_cmd = [
            sys.executable,
            "-m",
            "devtools.tenantsim",
            "--port",
            "0",
            "--seed",
            str(self.seed),
        ]
        sim_cmd += (
            ["--tenant", str(self.tenant_file)]
            if self.tenant_file
            else ["--users", str(self.users)]
        )
        for name in self._identity_names():
            sim_cmd += ["--identity", name]
        sim = self._spawn("tenantsim", sim_cmd + self.sim_args, logs, os.environ.copy())
        self.sim = self._read_start_line("tenantsim", sim)

        ports = dict(zip(("blob", "queue", "table"), free_ports(3), strict=True))
        azurite_dir = work / "azurite"
        azurite_dir.mkdir(exist_ok=True)
        self._azurite_ports = ports
        # Kept so that a restart serves the same ports, data folder and certificate.
        self._azurite_cmd = [
            str(AZURITE),
            "--silent",
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--location",
            str(azurite_dir),
            "--oauth",
            "basic",
            "--cert",
            str(cert),
            "--key",
            str(key),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(ports["blob"]),
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            str(ports["queue"]),
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(ports["table"]),
        ]
        self.start_azurite()

        self.env = {
            "SSL_CERT_FILE": str(bundle),
            "REQUESTS_CA_BUNDLE": str(bundle),
            "IDENTITY_ENDPOINT": self.sim["identity"],
            "IDENTITY_HEADER": self.sim["identityHeader"],
            "USEREXPORT_GRAPH_BASE_URL": self.sim["graph"],
            "USEREXPORT_CREDENTIAL": "managedidentity",
            "USEREXPORT_STATUS_RETRY_AFTER_SECONDS": "1",
            "AzureWebJobsStorage__credential": "managedidentity",
            **{
                f"AzureWebJobsStorage__{kind}ServiceUri": f"https://127.0.0.1:{port}/{ACCOUNT}"
                for kind, port in ports.items()
            },
            # The app's own copy of App Service authentication's allow-list, as infra/ sets it.
            **(
                {"USEREXPORT_ALLOWED_CALLERS": ",".join(self._allowed_callers())}
                if self.easy_auth is not None
                else {}
            ),
            **self.app_env,
        }
        if self.devhosts:
            self.start_devhost()
        if self.devhosts > 1:
            self.add_devhosts(self.devhosts - 1)

    def _allowed_callers(self) -> list[str]:
        assert self.easy_auth is not None
        return [self.identity(name)["objectId"] for name in self.easy_auth.allowed_identities]

    def _identity_names(self) -> list[str]:
        names = list(self.identities)
        if self.easy_auth is not None:
            names += [*self.easy_auth.allowed_identities, *self.easy_auth.allowed_applications]
        return list(dict.fromkeys(names))  # each once, in order

    def tenant_writer(self) -> TenantWriter:
        """A client that changes the simulated tenant through Graph's own write APIs (users
        created, updated, deleted, restored), with a token from its identity endpoint."""
        sim = self.sim
        return TenantWriter(
            graph_url=sim["graph"],
            identity_url=sim["identity"],
            identity_header=sim["identityHeader"],
        )

    def identity(self, name: str) -> dict[str, str]:
        """A user-assigned identity of the simulated tenant: {"name", "clientId", "objectId",
        "resourceId"}; ManagedIdentityCredential(client_id=...) gets its tokens."""
        for identity in self.sim.get("identities", []):
            if identity["name"] == name:
                return dict(identity)
        raise KeyError(f"the simulated tenant has no identity {name!r}; add it to identities")

    @property
    def audience(self) -> str:
        """The audience App Service authentication accepts (callers ask for <audience>/.default)."""
        if self.easy_auth is None:
            raise StackError("this stack has no App Service authentication (easy_auth)")
        return self.easy_auth.audience

    @property
    def issuer(self) -> str:
        """The simulated tenant's openIdIssuer (its v2.0 authority, on loopback)."""
        return str(self.sim["openIdIssuer"])

    def _auth_args(self) -> list[str]:
        args: list[str] = []
        if self.function_key:
            args.append(f"--function-key={self.function_key}")  # a key may start with "-"
        if self.master_key:
            args.append(f"--master-key={self.master_key}")
        auth = self.easy_auth
        if auth is not None:
            args += ["--easy-auth", "--easy-auth-issuer", self.issuer]
            args += ["--easy-auth-audience", auth.audience]
            if auth.allow_anonymous:
                args.append("--easy-auth-allow-anonymous")
            if auth.client_id:
                args += ["--easy-auth-client-id", auth.client_id]
            for name in auth.allowed_identities:
                args += ["--easy-auth-allowed-identity", self.identity(name)["objectId"]]
            for name in auth.allowed_applications:
                args += ["--easy-auth-allowed-application", self.identity(name)["clientId"]]
        return args

    def start_azurite(self) -> None:
        """Starts Azurite (again, after stop_azurite) on the stack's ports, data folder and
        certificate; returns once its blob, queue and table services listen."""
        if self._azurite is not None and self._azurite.poll() is None:
            raise StackError("Azurite is already running; stop_azurite() first.")
        self._azurite = self._spawn("azurite", self._azurite_cmd, self._logs, os.environ.copy())
        for kind, port in self._azurite_ports.items():
            _wait_for_port(port, f"Azurite {kind} service", self._azurite)

    def stop_azurite(self) -> None:
        """Stops Azurite with SIGTERM, as a storage outage: it saves its metadata to the data
        folder on the way out, so blobs, queue messages and table rows survive a restart."""
        if self._azurite is None:
            return
        _terminate([self._azurite])
        self._processes.remove(self._azurite)
        self._azurite = None

    def restart_azurite(self, down_seconds: float = 0) -> None:
        """stop_azurite(), `down_seconds` of outage, start_azurite()."""
        self.stop_azurite()
        if down_seconds > 0:
            time.sleep(down_seconds)
        self.start_azurite()

    def start_devhost(self) -> None:
        """Starts the first function host (again, after kill_devhost); api_url then points at
        it. Its app settings are this stack's alone: none is inherited from the caller's
        environment (where another running stack may have put its own)."""
        self._devhost = self._spawn_devhost(1)
        self.api_url = self._read_start_line("devhost", self._devhost)["url"]

    def add_devhosts(self, count: int) -> list[str]:
        """Starts `count` more function hosts on this stack (instances 2, 3, ... of the app:
        the same queues, storage and tenant, each its own WEBSITE_INSTANCE_ID and log), all at
        once; returns their base URLs once every one is ready. api_url stays the first's."""
        first = 2 + len(self._more_devhosts)
        started = [(n, self._spawn_devhost(n)) for n in range(first, first + count)]
        urls = []
        for n, process in started:
            url = self._read_start_line(f"devhost-{n}", process)["url"]
            self._more_devhosts.append((process, url))
            urls.append(url)
        return urls

    def _spawn_devhost(self, instance: int) -> subprocess.Popen[bytes]:
        inherited = {k: v for k, v in os.environ.items() if not _is_app_setting(k)}
        env = {
            **inherited,
            **self.env,
            "PYTHONUNBUFFERED": "1",
            # What Azure sets per instance; the app names its instance by it.
            "WEBSITE_INSTANCE_ID": f"devhost-{instance}",
        }
        cmd = [sys.executable, "-m", "devtools.devhost", "--port", "0", *self._auth_args()]
        cmd += self.devhost_args
        return self._spawn(_devhost_name(instance), cmd, self._logs, env)

    @property
    def devhost_pid(self) -> int:
        """The first function host's process id (its peak memory is in /proc/<pid>/status,
        VmHWM)."""
        assert self._devhost is not None
        return self._devhost.pid

    @property
    def devhost_pids(self) -> list[int]:
        """Every function host's process id, the first one's first (instance n at n-1)."""
        assert self._devhost is not None
        return [self._devhost.pid, *(process.pid for process, _ in self._more_devhosts)]

    @property
    def devhost_urls(self) -> list[str]:
        """Every function host's base URL, the first one's (api_url) first."""
        return [self.api_url, *(url for _, url in self._more_devhosts)]

    @property
    def devhost_logs(self) -> list[Path]:
        """Every function host's log file (devhost.log, devhost-2.log, ...), in instance order.
        A log holds every run of its instance (kill_devhost + start_devhost append)."""
        count = 1 + len(self._more_devhosts)
        return [self._logs / f"{_devhost_name(n)}.log" for n in range(1, count + 1)]

    @property
    def azurite_pid(self) -> int:
        """Azurite's process id (a new one after each restart)."""
        assert self._azurite is not None
        return self._azurite.pid

    def kill_devhost(self) -> None:
        """SIGKILLs the first function host mid-work, as a crashed or recycled instance."""
        assert self._devhost is not None
        os.killpg(self._devhost.pid, signal.SIGKILL)
        self._devhost.wait()

    def _spawn(
        self, name: str, cmd: list[str], logs: Path, env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        log = self._stack.enter_context(open(logs / f"{name}.log", "ab"))
        process = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, start_new_session=True
        )
        self._processes.append(process)
        return process

    def _read_start_line(self, name: str, process: subprocess.Popen[bytes]) -> dict[str, Any]:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            process.wait(timeout=10)
            log = self._logs / (name + ".log")
            raise StackError(
                f"{name} exited ({process.returncode}) before it was ready; see {log}."
                + _last_words(log)
            )
        return json.loads(line)

    def close(self) -> None:
        _terminate(list(reversed(self._processes)))
        self._processes.clear()
        self._azurite = None
        self._more_devhosts.clear()
        self._stack.close()


def _devhost_name(instance: int) -> str:
    """The log name (and StackError name) of function host instance n: devhost, devhost-2..."""
    return "devhost" if instance == 1 else f"devhost-{instance}"


def _last_words(log: Path, lines: int = 3) -> str:
    """The end of a log (a process's own error message, often), to quote in a StackError."""
    try:
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return ("\n" + "\n".join(tail[-lines:])) if tail else ""


def _is_app_setting(name: str) -> bool:
    return name in (*APP_SETTINGS, PLATFORM_AUTH_ENABLED) or name.startswith(
        ("USEREXPORT_", "AzureWebJobsStorage")
    )


def _terminate(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each process group, then wait; SIGKILL whatever is still there after 10 s."""
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_for_port(
    port: int, what: str, process: subprocess.Popen[bytes], timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(f"{what} exited ({process.returncode}) while starting.")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise StackError(f"{what} did not listen on port {port} within {timeout:.0f} s.")
