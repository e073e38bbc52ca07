"""The four local services, each a private instance under `<state_dir>/<service>/` on ports from conf.

Every service has a real health check: PostgreSQL answers a SQL query with `wal_level=logical`;
Kafka answers a metadata request; Kafka Connect's REST `/connector-plugins` lists Debezium's
`PostgresConnector`; Redis answers `PING`.
"""

from __future__ import annotations

import base64
import contextlib
import glob
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakehouse.common.config import Settings
from lakehouse.common.connections import (
    connect_url,
    kafka_bootstrap,
    pg_jdbc_url,
    pg_password,
    pg_password_file,
    redis_url,
)
from lakehouse.stack.process import (
    ServiceError,
    as_user,
    chown_tree,
    launch,
    pid_alive,
    read_pid,
    stop_pid,
    tail,
    wait_for,
)

DEBEZIUM_POSTGRES = "io.debezium.connector.postgresql.PostgresConnector"


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


class Service:
    """A private service instance: its directory, log, pid, ports, health and connection settings."""

    name: str = ""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.host = settings.services.host
        self.dir = settings.state_dir / self.name
        self.log = self.dir / f"{self.name}.log"
        self.pid_file = self.dir / f"{self.name}.pid"

    # --- to implement -------------------------------------------------------------------------
    def ports(self) -> dict[str, int]:
        raise NotImplementedError

    def health(self) -> Health:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def connection(self) -> dict[str, Any]:
        raise NotImplementedError

    # --- shared -------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return next(iter(self.ports().values()))

    def pid(self) -> int | None:
        pid = read_pid(self.pid_file)
        return pid if pid_alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None and not stop_pid(pid, timeout_s=60):
            raise ServiceError(f"{self.name}: pid {pid} did not stop; see {self.log}")
        self.pid_file.unlink(missing_ok=True)

    def purge(self) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir)

    def wait_healthy(self, timeout_s: float) -> str:
        def died() -> str | None:
            if self.pid() is None:
                return f"the process exited during start-up; see its log {self.log}:\n{tail(self.log)}"
            return None

        try:
            return wait_for(self._health_pair, timeout_s, self.name, died)
        except ServiceError as e:
            raise ServiceError(f"{e}\n  log: {self.log}") from None

    def _health_pair(self) -> tuple[bool, str]:
        health = self.health()
        return health.ok, health.detail

    def status(self) -> dict[str, Any]:
        health = self.health() if self.running() else Health(False, "not running")
        return {"service": self.name, "host": self.host, "port": self.port, "ports": self.ports(),
                "pid": self.pid(), "healthy": health.ok, "detail": health.detail, "log": str(self.log),
                "data_dir": str(self.dir), "connection": self.connection()}


class Postgres(Service):
    """A private PostgreSQL cluster (initdb) with logical decoding on and a replication-capable role."""

    name = "postgres"
    port_key = "services.postgres.port"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.cfg = settings.services.postgres
        self.pg_port = self.cfg.port  # a subclass (the hot standby) listens on its own port
        self.os_user = self.cfg.os_user if os.geteuid() == 0 else None
        if self.os_user and not self._reachable_by_os_user(settings.state_dir):
            # Root, with a state dir the server's OS user cannot traverse (e.g. a clone under /root):
            # keep the cluster in that user's home, one directory per state dir, and say so in status.
            digest = hashlib.sha1(str(settings.state_dir).encode()).hexdigest()[:12]
            self.dir = Path(pwd.getpwnam(self.os_user).pw_dir) / "payments-lakehouse" / digest / self.name
            self.log = self.dir / f"{self.name}.log"
        self.data = self.dir / "data"
        self.run_dir = self.dir / "run"
        self.pid_file = self.data / "postmaster.pid"

    def ports(self) -> dict[str, int]:
        return {self.port_key: self.pg_port}

    def bin(self, tool: str) -> str:
        candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"),
                            key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
        found = candidates[-1] if candidates else shutil.which(tool)
        if not found:
            raise ServiceError(f"postgres: {tool} not found; install the PostgreSQL server (make setup)")
        return found

    def _run(self, *cmd: str, env: dict[str, str] | None = None) -> None:
        res = subprocess.run(as_user(cmd, self.os_user), capture_output=True, text=True, cwd="/",
                             env={**os.environ, **env} if env else None)
        if res.returncode != 0:
            raise ServiceError(f"{self.name}: {' '.join(cmd[:2])} failed: {res.stderr.strip() or res.stdout.strip()}"
                               f"\n  log: {self.log}")

    def _reachable_by_os_user(self, path: Path) -> bool:
        """True when every existing ancestor of `path` can be traversed by the server's OS user."""
        existing = next((p for p in [path, *path.parents] if p.exists()), Path("/"))
        res = subprocess.run(as_user(["test", "-x", str(existing)], self.os_user), capture_output=True)
        return res.returncode == 0

    def _check_reachable(self) -> None:
        if not self.os_user:
            return
        res = subprocess.run(as_user(["test", "-w", str(self.dir)], self.os_user), capture_output=True)
        if res.returncode != 0:
            raise ServiceError(f"{self.name}: running as root, the server runs as OS user {self.os_user!r}, who cannot "
                               f"write {self.dir}")

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(exist_ok=True)
        if self.os_user:
            chown_tree(self.dir, self.os_user)
            if not self.dir.is_relative_to(self.settings.state_dir):
                print(f"  note: {self.settings.state_dir} is not reachable by OS user {self.os_user!r}; "
                      f"the PostgreSQL cluster lives in {self.dir}", file=sys.stderr)
        self._check_reachable()
        self._init_data()
        self._write_config()
        self._run(self.bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", str(self.settings.services.start_timeout_s), "start")
        self._after_start()

    # Hooks for the hot standby (lakehouse/stack/replica.py), which creates its data dir by a base backup,
    # adds replication settings and does not bootstrap roles (it is read-only).
    def _init_data(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            self._run(self.bin("initdb"), "-D", str(self.data), "-U", "postgres", "-E", "UTF8", "--locale=C",
                      "--auth-local=trust", "--auth-host=scram-sha-256")

    def _config_extra(self) -> dict[str, str]:
        return {}

    def _after_start(self) -> None:
        self._bootstrap_roles()

    def _write_config(self) -> None:
        conf = {
            "listen_addresses": f"'{self.host}'",
            "port": str(self.pg_port),
            "unix_socket_directories": f"'{self.run_dir}'",
            "max_connections": str(self.cfg.max_connections),
            "wal_level": "logical",
            "max_wal_senders": "16",
            "max_replication_slots": "16",
            "wal_keep_size": "'512MB'",
            "hot_standby": "on",
            "shared_buffers": "'256MB'",
            "password_encryption": "'scram-sha-256'",
            "timezone": "'UTC'",
            "log_timezone": "'UTC'",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
            **self._config_extra(),
        }
        (self.data / "lakehouse.conf").write_text(
            "# written by `lakehouse stack up`; edit conf/*.yaml instead\n"
            + "".join(f"{k} = {v}\n" for k, v in conf.items()))
        main = self.data / "postgresql.conf"
        if "include = 'lakehouse.conf'" not in main.read_text():
            with main.open("a") as f:
                f.write("\ninclude = 'lakehouse.conf'\n")
        (self.data / "pg_hba.conf").write_text(
            "# written by `lakehouse stack up`\n"
            "local   all          all                  trust\n"
            "local   replication  all                  trust\n"
            "host    all          all   127.0.0.1/32   scram-sha-256\n"
            "host    all          all   ::1/128        scram-sha-256\n"
            "host    replication  all   127.0.0.1/32   scram-sha-256\n"
            "host    replication  all   ::1/128        scram-sha-256\n")
        if self.os_user:
            chown_tree(self.data, self.os_user)

    def superuser_conn(self, dbname: str = "postgres") -> Any:
        """A superuser connection over the private Unix socket (trust; only this machine's owner reaches it)."""
        import psycopg

        return psycopg.connect(host=str(self.run_dir), port=self.pg_port, user="postgres", dbname=dbname,
                               autocommit=True, connect_timeout=5)

    def _bootstrap_roles(self) -> None:
        from psycopg import sql

        password = pg_password(self.settings, create=True)
        with self.superuser_conn() as conn:
            # Never wait for a synchronous standby here: with a replica configured but not yet connected
            # (it starts after this server), a commit would block until it streams.
            conn.execute("SET synchronous_commit TO local")
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.cfg.user,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(sql.SQL("{} ROLE {} WITH LOGIN REPLICATION PASSWORD {}").format(
                sql.SQL(verb), sql.Identifier(self.cfg.user), sql.Literal(password)))
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.cfg.database,)).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(self.cfg.database), sql.Identifier(self.cfg.user)))

    def health(self) -> Health:
        import psycopg

        try:
            with psycopg.connect(host=self.host, port=self.pg_port, dbname=self.cfg.database, user=self.cfg.user,
                                 password=pg_password(self.settings), connect_timeout=3) as conn:
                row = conn.execute("SELECT current_setting('wal_level'), version()").fetchone()
        except Exception as e:
            return Health(False, str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
        assert row is not None
        if row[0] != "logical":
            return Health(False, f"wal_level is {row[0]}, expected logical")
        return Health(True, row[1].split(" on ")[0] + ", wal_level=logical")

    def stop(self) -> None:
        if self.pid() is not None:
            self._run(self.bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def purge(self) -> None:
        super().purge()
        if not self.dir.is_relative_to(self.settings.state_dir):
            with contextlib.suppress(OSError):  # the per-state-dir folder in the OS user's home, when empty
                self.dir.parent.rmdir()
        pg_password_file(self.settings).unlink(missing_ok=True)

    def connection(self) -> dict[str, Any]:
        pg = self.cfg
        return {"host": self.host, "port": self.pg_port, "database": pg.database, "user": pg.user,
                "password_env": pg.password_env, "password_file": str(pg_password_file(self.settings)),
                "dsn": f"postgresql://{pg.user}@{self.host}:{self.pg_port}/{pg.database}",
                "jdbc_url": pg_jdbc_url(self.settings), "replication": True, "wal_level": "logical"}


class Redis(Service):
    """A private redis-server with append-only persistence."""

    name = "redis"

    def ports(self) -> dict[str, int]:
        return {"services.redis.port": self.settings.services.redis.port}

    def start(self) -> None:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(server).exists():
            raise ServiceError("redis: redis-server not found; install it (make setup)")
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "redis.conf"
        conf.write_text(
            "# written by `lakehouse stack up`\n"
            f"bind {self.host}\nport {self.port}\nprotected-mode yes\ndaemonize yes\n"
            f"pidfile {self.pid_file}\nlogfile {self.log}\ndir {self.dir}\n"
            "appendonly yes\nappendfsync everysec\nsave \"\"\n"
            f"maxmemory {self.settings.services.redis.maxmemory}\nmaxmemory-policy noeviction\n")
        res = subprocess.run([server, str(conf)], capture_output=True, text=True)
        if res.returncode != 0:
            raise ServiceError(f"redis: redis-server failed: {res.stderr.strip() or res.stdout.strip()}\n"
                               f"  log: {self.log}")

    def health(self) -> Health:
        import redis

        try:
            client = redis.Redis(host=self.host, port=self.port, socket_timeout=2, socket_connect_timeout=2)
            pong = client.ping()
            info: dict[str, Any] = client.info("server")  # type: ignore[assignment]  # sync client
            version = info.get("redis_version", "?")
        except Exception as e:
            return Health(False, str(e) or type(e).__name__)
        return Health(bool(pong), f"PONG, redis {version}")

    def stop(self) -> None:
        pid = self.pid()
        if pid is None:
            return
        import redis

        # SHUTDOWN flushes the append-only file (the connection drops as it does); then make sure it is gone.
        with contextlib.suppress(Exception):
            redis.Redis(host=self.host, port=self.port, socket_timeout=5).shutdown()
        if not stop_pid(pid, timeout_s=20):
            raise ServiceError(f"redis: pid {pid} did not stop; see {self.log}")
        self.pid_file.unlink(missing_ok=True)

    def connection(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "url": redis_url(self.settings)}


class _JavaService(Service):
    main_class = ""

    def java_cmd(self, heap: str, *args: str) -> list[str]:
        jars = self.settings.jar_dir / "kafka"
        if not any(jars.glob("kafka_2.13-*.jar")):
            raise ServiceError(f"{self.name}: no Kafka jars under {jars}; run `make setup` to resolve them")
        java = shutil.which("java", path=f"{os.environ.get('JAVA_HOME', '')}/bin") or shutil.which("java")
        if java is None:
            raise ServiceError(f"{self.name}: java not found; install a Java 17 runtime (make setup)")
        log4j = self.dir / "log4j2.properties"
        log4j.write_text(
            "status = warn\n"
            "appender.file.type = File\nappender.file.name = FILE\n"
            f"appender.file.fileName = {self.log}\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d{ISO8601}{UTC}] %p %m (%c)%n\n"
            "rootLogger.level = INFO\nrootLogger.appenderRef.file.ref = FILE\n"
            "logger.reflections.name = org.reflections\nlogger.reflections.level = ERROR\n")
        return [java, f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                "-Duser.timezone=UTC", f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={self.dir}",
                "-cp", f"{jars}/*", self.main_class, *args]

    def _launch(self, cmd: list[str]) -> None:
        launch(cmd, self.dir / f"{self.name}.out", self.pid_file, cwd=self.dir)


class Kafka(_JavaService):
    """A single-node Apache Kafka 4.x broker in KRaft mode (combined broker + controller)."""

    name = "kafka"
    main_class = "kafka.Kafka"

    def ports(self) -> dict[str, int]:
        k = self.settings.services.kafka
        return {"services.kafka.port": k.port, "services.kafka.controller_port": k.controller_port}

    def start(self) -> None:
        k = self.settings.services.kafka
        data = self.dir / "data"
        self.dir.mkdir(parents=True, exist_ok=True)
        props = self.dir / "server.properties"
        props.write_text(
            "# written by `lakehouse stack up`\n"
            "process.roles=broker,controller\nnode.id=1\n"
            f"controller.quorum.voters=1@{self.host}:{k.controller_port}\n"
            f"listeners=PLAINTEXT://{self.host}:{k.port},CONTROLLER://{self.host}:{k.controller_port}\n"
            f"advertised.listeners=PLAINTEXT://{self.host}:{k.port}\n"
            "controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n"
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n"
            f"log.dirs={data}\nnum.partitions={k.num_partitions}\n"
            f"log.retention.hours={k.log_retention_hours}\n"
            "offsets.topic.replication.factor=1\ntransaction.state.log.replication.factor=1\n"
            "transaction.state.log.min.isr=1\nshare.coordinator.state.topic.replication.factor=1\n"
            "share.coordinator.state.topic.min.isr=1\ngroup.initial.rebalance.delay.ms=0\n"
            "auto.create.topics.enable=true\n")
        if not (data / "meta.properties").exists():
            cluster_id = "-"
            while cluster_id.startswith("-"):   # one id in 64 starts with "-", which the tool reads as an option
                cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            cmd = self.java_cmd("256m", "-c", str(props))
            cmd[cmd.index(self.main_class)] = "kafka.tools.StorageTool"
            cmd[cmd.index("-c"):] = ["format", "-t", cluster_id, "-c", str(props)]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise ServiceError(f"kafka: storage format failed: {(res.stderr or res.stdout).strip()[-800:]}")
        self._launch(self.java_cmd(k.heap, str(props)))

    def health(self) -> Health:
        from kafka import KafkaAdminClient

        try:
            admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap(self.settings), request_timeout_ms=4000,
                                     client_id="lakehouse-health")
            try:
                cluster = admin.describe_cluster()
            finally:
                admin.close()
        except Exception as e:
            return Health(False, str(e) or type(e).__name__)
        brokers = cluster.get("brokers", [])
        return Health(bool(brokers), f"{len(brokers)} broker(s), cluster {cluster.get('cluster_id')}")

    def connection(self) -> dict[str, Any]:
        return {"bootstrap_servers": kafka_bootstrap(self.settings), "security_protocol": "PLAINTEXT"}


class Connect(_JavaService):
    """A Kafka Connect worker (distributed mode, one node) with the Debezium PostgreSQL plugin."""

    name = "connect"
    main_class = "org.apache.kafka.connect.cli.ConnectDistributed"

    def ports(self) -> dict[str, int]:
        return {"services.connect.port": self.settings.services.connect.port}

    def start(self) -> None:
        c = self.settings.services.connect
        plugins = self.settings.jar_dir / "connect-plugins"
        if not any(plugins.glob("*/debezium-connector-postgres-*.jar")):
            raise ServiceError(f"connect: no Debezium plugin under {plugins}; run `make setup` to resolve it")
        self.dir.mkdir(parents=True, exist_ok=True)
        props = self.dir / "connect.properties"
        props.write_text(
            "# written by `lakehouse stack up`\n"
            f"bootstrap.servers={kafka_bootstrap(self.settings)}\ngroup.id={c.group_id}\n"
            "key.converter=org.apache.kafka.connect.json.JsonConverter\n"
            "value.converter=org.apache.kafka.connect.json.JsonConverter\n"
            "key.converter.schemas.enable=true\nvalue.converter.schemas.enable=true\n"
            f"offset.storage.topic=_{c.group_id}_offsets\nconfig.storage.topic=_{c.group_id}_configs\n"
            f"status.storage.topic=_{c.group_id}_status\n"
            "offset.storage.replication.factor=1\nconfig.storage.replication.factor=1\n"
            "status.storage.replication.factor=1\noffset.storage.partitions=1\nstatus.storage.partitions=1\n"
            "offset.flush.interval.ms=1000\n"
            f"listeners=http://{self.host}:{c.port}\nrest.advertised.host.name={self.host}\n"
            f"rest.advertised.port={c.port}\nplugin.path={plugins}\nplugin.discovery=hybrid_warn\n"
            "topic.creation.enable=true\n")
        self._launch(self.java_cmd(c.heap, str(props)))

    def health(self) -> Health:
        try:
            with urllib.request.urlopen(f"{connect_url(self.settings)}/connector-plugins", timeout=3) as resp:
                plugins = json.load(resp)
        except (urllib.error.URLError, OSError, ValueError) as e:
            return Health(False, str(getattr(e, "reason", e)))
        classes = [p.get("class") for p in plugins]
        if DEBEZIUM_POSTGRES not in classes:
            return Health(False, f"Debezium PostgresConnector not among plugins {classes}")
        version = next(p.get("version") for p in plugins if p.get("class") == DEBEZIUM_POSTGRES)
        return Health(True, f"PostgresConnector {version} loaded")

    def connection(self) -> dict[str, Any]:
        return {"rest_url": connect_url(self.settings), "plugin_path": str(self.settings.jar_dir / "connect-plugins")}


def all_services(settings: Settings) -> list[Service]:
    """In start order: Connect needs Kafka; a hot standby needs its primary; the others are independent.

    Without a replica (`services.replica.enabled` false and none created) PostgreSQL is the one `Postgres`;
    with one, the pair of nodes from lakehouse/stack/replica.py, the current primary first.
    """
    from lakehouse.stack.replica import postgres_nodes  # replica.py builds on Postgres

    return [*postgres_nodes(settings), Redis(settings), Kafka(settings), Connect(settings)]
