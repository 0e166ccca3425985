//! What the command-line tests share: the binary, `init`, a served
//! database on a free port that stops when dropped.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support, not every test uses every helper"
)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `partnerdb` binary under test.
pub fn partnerdb() -> Command {
    Command::new(env!("CARGO_BIN_EXE_partnerdb"))
}

/// The starter policy's path.
pub fn starter_path() -> String {
    format!("{}/../../policies/starter.toml", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `partnerdb init ARGS…` and returns the first administrator's token.
pub fn init(args: &[&str]) -> String {
    let init = partnerdb().arg("init").args(args).output().unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    String::from_utf8(init.stdout)
        .unwrap()
        .split_whitespace()
        .find(|w| w.starts_with("pdb_"))
        .unwrap()
        .to_owned()
}

/// A free port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `partnerdb serve` process, killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Server {
    /// Starts `partnerdb serve ARGS… --listen 127.0.0.1:PORT` on a free
    /// port (not waiting for it: see [`Server::ready`]).
    pub fn start(args: &[&str]) -> Server {
        let port = free_port();
        let child = partnerdb()
            .arg("serve")
            .args(args)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Waits (up to 30 s) until it answers `/readyz`.
    pub async fn ready(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !client
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(Instant::now() < deadline, "the server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops it.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
