//! The PostgreSQL transport across a restart of the server itself.
//!
//! Unlike the other integration tests this one does not use
//! `BACKPLANE_POSTGRES_URL`: it stops the server, so it starts a private
//! PostgreSQL 15 of its own (on loopback, with its data in a temporary
//! directory) and always stops it again, even when the test fails.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backplane_api::{Connection, Hub, HubStats};
use backplane_postgres::PostgresBackplane;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

/// Where the PostgreSQL 15 server binaries are installed.
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The password of the `postgres` role in the private server.
const PASSWORD: &str = "backplane-restart-secret";

/// How long any single wait may take before the test fails: long enough
/// that only a real fault trips it on a busy machine.
const WAIT: Duration = Duration::from_secs(30);

/// How long a publish may take while the server is down: it must fail,
/// not wait for the server to come back.
const OUTAGE_PUBLISH: Duration = Duration::from_secs(15);

/// How long the server stays down: over twice the largest reconnect
/// delay the instances are given.
const OUTAGE: Duration = Duration::from_secs(1);

/// How long a fast shutdown may take before the cleanup kills the server.
const SHUTDOWN: Duration = Duration::from_secs(10);

const MISSING_BINARIES: &str = "PostgreSQL 15 is not installed: this test starts and restarts \
     its own server from /usr/lib/postgresql/15/bin (apt-get install postgresql-15)";

// ---------------------------------------------------------------------------
// A private server

/// A PostgreSQL server this test owns: it can be stopped and started again
/// on the same port and data, and is stopped and removed when dropped.
struct Server {
    /// Holds the data directory, the socket, the password file and the log.
    dir: PathBuf,
    port: u16,
    /// PostgreSQL refuses to run as root; as root, it runs as `postgres`.
    as_postgres: bool,
    /// The postmaster, while it runs.
    postmaster: Option<Child>,
}

impl Server {
    /// Creates a new database cluster; the server is not started yet.
    async fn init() -> Self {
        assert!(
            Path::new(PG_BIN).join("postgres").exists(),
            "{MISSING_BINARIES}"
        );

        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "backplane-restart-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
        ));
        fs::create_dir(&dir).expect("create the server directory");
        let as_postgres = fs::metadata(&dir).unwrap().uid() == 0;
        let server = Self {
            dir,
            port: free_port(),
            as_postgres,
            postmaster: None,
        };

        // From here on, dropping `server` removes the directory.
        let pwfile = server.dir.join("pwfile");
        fs::write(&pwfile, format!("{PASSWORD}\n")).unwrap();
        if as_postgres {
            let status = std::process::Command::new("chown")
                .args(["-R", "postgres"])
                .arg(&server.dir)
                .status()
                .expect("run chown");
            assert!(status.success(), "chown of {} failed", server.dir.display());
        }

        let output = server
            .command("initdb")
            .arg("-D")
            .arg(server.dir.join("data"))
            .args(["-U", "postgres", "-E", "UTF8", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .await
            .expect("run initdb");
        assert!(
            output.status.success(),
            "initdb failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        server
    }

    fn url(&self) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// A PostgreSQL program, run as `postgres` when we are root.
    fn command(&self, program: &str) -> Command {
        let program = Path::new(PG_BIN).join(program);
        let mut command = if self.as_postgres {
            // setpriv execs the program in place: the child's pid is the
            // program's own, so signalling it reaches the postmaster.
            let mut command = Command::new("setpriv");
            command
                .args([
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    "--",
                ])
                .arg(program);
            command
        } else {
            Command::new(program)
        };
        command.kill_on_drop(true);
        command
    }

    /// Starts the postmaster and waits until it accepts connections.
    async fn start(&mut self) {
        assert!(self.postmaster.is_none(), "the server is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let postmaster = self
            .command("postgres")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.postmaster = Some(postmaster);

        let deadline = Instant::now() + WAIT;
        loop {
            let exited = self.postmaster.as_mut().unwrap().try_wait().unwrap();
            assert!(exited.is_none(), "postgres exited at start: {exited:?}");
            let ready = Command::new(Path::new(PG_BIN).join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .await
                .expect("run pg_isready");
            if ready.success() {
                return;
            }
            assert!(Instant::now() < deadline, "postgres did not start");
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fast shutdown: open sessions are ended, then the postmaster exits.
    async fn stop(&mut self) {
        let mut postmaster = self.postmaster.take().expect("the server is not running");
        signal_fast_shutdown(&postmaster);
        let status = timeout(WAIT, postmaster.wait())
            .await
            .expect("postgres did not exit after SIGINT")
            .unwrap();
        assert!(status.success(), "postgres exited with {status}");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A failed test shows what the server saw.
        if std::thread::panicking()
            && let Ok(log) = fs::read_to_string(self.log_path())
        {
            eprintln!("--- PostgreSQL log ---\n{log}");
        }

        // Stop the way the test does; kill only what outlives the grace
        // period, so that no backend is left behind.
        if let Some(mut postmaster) = self.postmaster.take() {
            signal_fast_shutdown(&postmaster);
            let deadline = std::time::Instant::now() + SHUTDOWN;
            while matches!(postmaster.try_wait(), Ok(None)) && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = postmaster.start_kill();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Sends SIGINT, PostgreSQL's fast shutdown, to the postmaster.
fn signal_fast_shutdown(postmaster: &Child) {
    // No pid means it has exited and was reaped already.
    if let Some(pid) = postmaster.id() {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

/// A loopback port nobody listens on now. The server binds it a moment
/// later and keeps it across the restart.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------
// Helpers

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "backplane_postgres=info".into()),
        )
        .try_init();
}

/// One instance, with timings that make recovery quick.
async fn instance(server: &Server) -> PostgresBackplane {
    PostgresBackplane::builder(&server.url())
        .unwrap()
        .channel_prefix("restart")
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
        .health_check_interval(Duration::from_millis(500))
        .build()
        .await
        .expect("connect to the private server")
}

/// Waits until `check` holds for the stats of both hubs.
async fn both_hubs(what: &str, hubs: [&Hub<PostgresBackplane>; 2], check: fn(HubStats) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !hubs.iter().all(|hub| check(hub.stats())) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting until both hubs {what}: A {:?}, B {:?}",
            hubs[0].stats(),
            hubs[1].stats(),
        );
        sleep(Duration::from_millis(50)).await;
    }
}

async fn expect_said(connection: &mut Connection, expected: &str) {
    let message = timeout(WAIT, connection.recv())
        .await
        .unwrap_or_else(|_| panic!("{expected:?} did not arrive"))
        .expect("the connection was closed");
    assert_eq!(message.args::<String>().unwrap(), expected);
}

// ---------------------------------------------------------------------------
// The test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubs_recover_from_a_server_restart() {
    init_logs();
    let mut server = Server::init().await;
    server.start().await;

    let hub_a = Hub::new("room", instance(&server).await).await.unwrap();
    let hub_b = Hub::new("room", instance(&server).await).await.unwrap();
    let mut on_b = hub_b.register("b".into(), None).unwrap();
    hub_a.send_all("say", "before").await.unwrap();
    expect_said(&mut on_b, "before").await;

    // Both listening connections are ended by the shutdown.
    server.stop().await;
    both_hubs("report the lost connection", [&hub_a, &hub_b], |stats| {
        stats.connection_lost >= 1
    })
    .await;

    // A publish fails promptly and says that retrying may help.
    let error = timeout(OUTAGE_PUBLISH, hub_a.send_all("say", "during"))
        .await
        .expect("a publish hung while the server was down")
        .expect_err("a publish succeeded while the server was down");
    assert!(error.is_transient(), "not transient: {error:?}");

    // Stay down longer than the largest reconnect delay, so that both
    // listeners go through refused attempts and their backoff before the
    // server is back.
    sleep(OUTAGE).await;

    // Same port, same data: both hubs listen again by themselves.
    server.start().await;
    let restarted = Instant::now();
    both_hubs("resubscribe", [&hub_a, &hub_b], |stats| {
        stats.resubscribed >= 1
    })
    .await;

    // The publisher may still be backing off: a failed publish sent
    // nothing, so it is safe to try again.
    loop {
        match hub_a.send_all("say", "after").await {
            Ok(()) => break,
            Err(error) => {
                assert!(error.is_transient(), "not transient: {error:?}");
                assert!(
                    restarted.elapsed() < WAIT,
                    "publishes still fail after the restart: {error:?}"
                );
                sleep(Duration::from_millis(50)).await;
            }
        }
    }
    expect_said(&mut on_b, "after").await;

    drop((hub_a, hub_b));
    server.stop().await;
}
