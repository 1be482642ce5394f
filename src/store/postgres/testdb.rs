//! A throwaway PostgreSQL server for tests, from Debian's `postgresql`
//! package: `initdb` into a temporary directory, `pg_ctl start` on a free
//! loopback port (TLS on, with a certificate from a CA made for the run),
//! one server per test binary and one database per test. When the test
//! process exits, a watchdog shell (whose stdin is a pipe only this process
//! holds) sees end-of-file, stops the server and removes the directory.
//!
//! PostgreSQL refuses to run as root, so as root the server runs as
//! `nobody`. Databases belong to the ordinary role `ow`, which logs in with
//! a password over TCP: the tests prove that what the README asks of a
//! role (own its database) is enough.
//!
//! Without the binaries, [`server`] prints a visible `skipped:` line and
//! returns `None`, unless `ORDERWATCH_REQUIRE_POSTGRES` is set: then it
//! panics. A test that stops or restarts the server takes one of its own
//! ([`private_server`]), so the shared one stays up for everyone else. Self-contained (std, tokio-postgres, rcgen), so integration
//! tests include this file too.

#![allow(dead_code)]

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The role that owns the test databases, and its password.
pub const ROLE: &str = "ow";
const ROLE_PASSWORD: &str = "ow-test-password";
const SUPERUSER_PASSWORD: &str = "postgres-test-password";
/// `nobody` on Debian.
const NOBODY: u32 = 65534;

/// A running throwaway server.
pub struct TestServer {
    pub port: u16,
    /// Holds the data directory, the socket, the password file and `ca.pem`.
    pub dir: PathBuf,
    bin: PathBuf,
    data: PathBuf,
    _watchdog: Child,
    _stdin: ChildStdin,
}

/// One database of the test server, owned by [`ROLE`].
#[derive(Debug, Clone)]
pub struct TestDb {
    pub name: String,
    /// `postgresql://ow@127.0.0.1:PORT/NAME?sslmode=disable`.
    pub url: String,
    /// `postgresql://ow@localhost:PORT/NAME` with verify-full against the test CA.
    pub tls_url: String,
    /// A file holding the role's password (for `password_file`).
    pub password_file: PathBuf,
    pub port: u16,
}

static SERVER: OnceLock<Option<TestServer>> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// The server of this test binary, started on first use; `None` (after a
/// `skipped:` line naming `test`) when PostgreSQL is not installed.
pub fn server(test: &str) -> Option<&'static TestServer> {
    let server = SERVER.get_or_init(|| available(start()));
    if server.is_none() {
        let _ = writeln!(std::io::stderr(), "skipped: {test}: no PostgreSQL server");
    }
    server.as_ref()
}

/// A server for `test` alone, which it may stop and start again; removed
/// when dropped. `None` (after a `skipped:` line) as for [`server`].
pub fn private_server(test: &str) -> Option<TestServer> {
    let server = available(start());
    if server.is_none() {
        let _ = writeln!(std::io::stderr(), "skipped: {test}: no PostgreSQL server");
    }
    server
}

/// The server, or `None` after saying why (a failure where PostgreSQL is required).
fn available(started: Result<TestServer, String>) -> Option<TestServer> {
    match started {
        Ok(s) => Some(s),
        Err(why) => {
            if std::env::var_os("ORDERWATCH_REQUIRE_POSTGRES").is_some() {
                panic!("ORDERWATCH_REQUIRE_POSTGRES is set but no test server: {why}");
            }
            let _ = writeln!(std::io::stderr(), "skipped: PostgreSQL tests: {why}");
            None
        }
    }
}

/// A fresh, empty database for one test.
pub async fn database(test: &str) -> Option<TestDb> {
    Some(server(test)?.database().await)
}

impl TestServer {
    /// A fresh, empty database on this server.
    pub async fn database(&self) -> TestDb {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        let admin = self.superuser().await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name} OWNER {ROLE}"))
            .await
            .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
        TestDb {
            url: format!(
                "postgresql://{ROLE}@127.0.0.1:{}/{name}?sslmode=disable",
                self.port
            ),
            tls_url: format!(
                "postgresql://{ROLE}@localhost:{}/{name}?sslmode=verify-full&sslrootcert={}",
                self.port,
                self.dir.join("ca.pem").display()
            ),
            password_file: self.dir.join("ow.password"),
            port: self.port,
            name,
        }
    }

    /// Stops the server (`pg_ctl stop -m fast`: every session is ended, as
    /// in a restart for maintenance).
    pub fn stop(&self) {
        let mut pg_ctl = as_owner(self.bin.join("pg_ctl"));
        pg_ctl
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null());
        run(pg_ctl, "pg_ctl stop").unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts a stopped server again, on the same port.
    pub fn start_again(&self) {
        run(
            pg_ctl_start(&self.bin, &self.dir, &self.data, self.port),
            "pg_ctl start",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// A superuser connection to the `postgres` database.
    pub async fn superuser(&self) -> tokio_postgres::Client {
        superuser(self.port).await
    }

    /// Ends every session of `database` but the caller's (a dropped
    /// connection, as when a node dies or its network is cut).
    pub async fn kill_sessions(&self, database: &str, application_name: Option<&str>) -> u64 {
        let admin = self.superuser().await;
        let row = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()
                   AND ($2::text IS NULL OR application_name = $2)",
                &[&database, &application_name],
            )
            .await
            .unwrap_or_else(|e| panic!("terminating sessions: {e}"));
        row.get::<_, i64>(0) as u64
    }
}

async fn superuser(port: u16) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .password(SUPERUSER_PASSWORD)
        .dbname("postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to the test server as superuser: {e}"));
    tokio::spawn(connection);
    client
}

/// Where the server binaries are: `$ORDERWATCH_PG_BIN`, `initdb` on the
/// PATH, or the newest `/usr/lib/postgresql/*/bin`.
fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("ORDERWATCH_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Ok(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "initdb and pg_ctl not found (apt-get install postgresql)".to_string())?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "no /usr/lib/postgresql/*/bin/initdb (apt-get install postgresql)".to_string()
    })
}

/// A command run as the server's user.
fn as_owner(program: PathBuf) -> Command {
    let mut cmd = Command::new(program);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.uid(NOBODY).gid(NOBODY);
    }
    cmd
}

fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn start() -> Result<TestServer, String> {
    let bin = bin_dir()?;
    let dir = tempfile::Builder::new()
        .prefix("orderwatch-pg-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?
        .keep();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let own = |p: &Path| {
        if root {
            std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY))
                .map_err(|e| format!("chown {}: {e}", p.display()))
        } else {
            Ok(())
        }
    };
    own(&dir)?;
    let write = |name: &str, text: &str| -> Result<PathBuf, String> {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("writing {name}: {e}"))?;
        own(&path)?;
        Ok(path)
    };
    write("ow.password", ROLE_PASSWORD)?;
    let pwfile = write("superuser.password", SUPERUSER_PASSWORD)?;
    let (ca, cert, key) = certificates()?;
    write("ca.pem", &ca)?;
    write("server.pem", &cert)?;
    let key_path = write("server.key", &key)?;
    std::fs::set_permissions(
        &key_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .map_err(|e| format!("chmod server.key: {e}"))?;
    let data = dir.join("data");
    let mut initdb = as_owner(bin.join("initdb"));
    initdb
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        ])
        .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
        .arg(format!("--pwfile={}", pwfile.display()));
    run(initdb, "initdb")?;
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port()?;
        match run(pg_ctl_start(&bin, &dir, &data, port), "pg_ctl start") {
            Ok(()) => return finish(bin, dir, data, port),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// `pg_ctl start` of the server in `dir` on `port`, waiting until it
/// accepts connections.
fn pg_ctl_start(bin: &Path, dir: &Path, data: &Path, port: u16) -> Command {
    let mut pg_ctl = as_owner(bin.join("pg_ctl"));
    pg_ctl
        .arg("-D")
        .arg(data)
        .arg("-l")
        .arg(dir.join("server.log"))
        .arg("-w")
        .arg("-o")
        .arg(format!(
            "-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file={dir}/server.pem -c ssl_key_file={dir}/server.key -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
            dir = dir.display()
        ))
        .arg("start")
        .stdout(Stdio::null());
    pg_ctl
}

/// Creates the role and the watchdog that removes everything at exit.
fn finish(bin: PathBuf, dir: PathBuf, data: PathBuf, port: u16) -> Result<TestServer, String> {
    let mut watchdog = as_owner(PathBuf::from("/bin/sh"))
        .arg("-c")
        .arg(r#"read _; "$0" -D "$1" -m immediate stop >/dev/null 2>&1; rm -rf "$2""#)
        .arg(bin.join("pg_ctl"))
        .arg(&data)
        .arg(&dir)
        // Its own process group: whatever ends the test's group (a
        // runner's cleanup, ^C) must not end the cleanup with it.
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting the watchdog: {e}"))?;
    let stdin = watchdog.stdin.take().ok_or("the watchdog has no stdin")?;
    // A runtime of its own: this may run inside any test's runtime.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            superuser(port)
                .await
                .batch_execute(&format!(
                    "CREATE ROLE {ROLE} LOGIN PASSWORD '{ROLE_PASSWORD}'"
                ))
                .await
                .map_err(|e| format!("creating role {ROLE}: {e}"))
        })
    })
    .join()
    .map_err(|_| "creating the role panicked".to_string())??;
    Ok(TestServer {
        port,
        dir,
        bin,
        data,
        _watchdog: watchdog,
        _stdin: stdin,
    })
}

fn free_port() -> Result<u16, String> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("finding a port: {e}"))
}

/// A CA, and a server certificate it signed for `localhost` (only: tests
/// connect to 127.0.0.1 for a name it does not hold):
/// `(ca.pem, server.pem, server.key)`.
fn certificates() -> Result<(String, String, String), String> {
    let fail = |e: rcgen::Error| format!("making test certificates: {e}");
    let ca_key = rcgen::KeyPair::generate().map_err(fail)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "orderwatch test CA");
    let ca = ca_params.self_signed(&ca_key).map_err(fail)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).map_err(fail)?;
    let cert = params.signed_by(&key, &issuer).map_err(fail)?;
    Ok((ca.pem(), cert.pem(), key.serialize_pem()))
}
