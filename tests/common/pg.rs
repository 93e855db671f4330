//! A private PostgreSQL cluster for one test: Debian's `postgresql` binaries (off `PATH`, in
//! `/usr/lib/postgresql/<version>/bin`), a data directory and a socket directory in a
//! temporary folder, a free loopback port, trust authentication. As root, `initdb` and the
//! server run as the `postgres` user through `runuser` (`initdb` refuses root).
//!
//! Missing binaries fail the test with a sentence saying how to install them: a test that
//! skipped silently would prove nothing. `.ci/run` installs them before `cargo test`.

use std::path::PathBuf;
use std::process::{Command, Output};

/// A running cluster; stopped (immediately) when dropped.
pub struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb` and `pg_ctl`.
fn binaries() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "the PostgreSQL server binaries are not installed (no /usr/lib/postgresql/<version>/bin/initdb); \
             install Debian's package with `apt-get install postgresql` (.ci/run does) and run the tests again"
        ),
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

impl Cluster {
    /// initdb, then start on a free loopback port; waits until it accepts connections.
    pub fn start() -> Cluster {
        let bin = binaries();
        let dir = tempfile::tempdir().expect("a temporary folder");
        if is_root() {
            // The server runs as postgres: it must reach its folder.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let cluster = Cluster {
            bin,
            dir,
            port: super::free_port(),
        };
        let data = cluster.data();
        let out = cluster.run_as_owner(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-N",
                "--locale=C.UTF-8",
            ],
        );
        assert!(out.status.success(), "initdb failed: {}", describe(&out));
        cluster.pg_ctl_start();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The URL the daemon and the tests connect with.
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run_as_owner(&self, program: &str, args: &[&str]) -> Output {
        let path = self.bin.join(program);
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()))
    }

    /// `fsync=off` only saves disk flushes, which matter for an operating system crash,
    /// not a server crash: a commit still reaches the WAL before it returns, so an
    /// immediate stop loses nothing committed (`synchronous_commit=off` would).
    fn options(&self) -> String {
        format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        )
    }

    /// `pg_ctl start -w`: returns once the server accepts connections (pg_ctl's own
    /// bounded wait, 60 s by default), or fails the test with the server's log.
    pub fn pg_ctl_start(&self) {
        let (data, log) = (self.data(), self.dir.path().join("server.log"));
        let out = self.run_as_owner(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &self.options(),
                "-w",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\nserver log:\n{}",
            describe(&out),
            self.log()
        );
    }

    /// A crash and recovery, as far as clients can tell: `pg_ctl stop -m immediate`
    /// (no checkpoint, every session cut), then a start that recovers from the WAL. The
    /// same as `pg_ctl restart -m immediate`, whose output pipes the restarted server
    /// kept open here, so that reading them never ended.
    pub fn restart_immediate(&self) {
        let data = self.data();
        let out = self.run_as_owner(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop -m immediate failed: {}\nserver log:\n{}",
            describe(&out),
            self.log()
        );
        self.pg_ctl_start();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.run_as_owner(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
    }
}

fn describe(out: &Output) -> String {
    format!(
        "{}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A session on `cluster`'s database, its I/O on a task of its own.
pub async fn connect(cluster: &Cluster) -> tokio_postgres::Client {
    let url = jellyfin_export_scheduler::secret::Secret::new(cluster.url());
    jellyfin_export_scheduler::postgres::connect(&url, std::time::Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("cannot connect: {e}\nserver log:\n{}", cluster.log()))
}
