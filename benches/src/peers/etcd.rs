//! etcd, the peer of the `failover` scenario: three members on loopback
//! with default timings (heartbeat 100 ms, election timeout 1000 ms), each
//! an `etcd` child process (Debian's `etcd-server`). The leader is found
//! with `etcdctl endpoint status`; writes are puts through the v3 JSON
//! gateway (`POST /v3/kv/put`), one HTTP/1.1 request per put.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::scenarios::Ctx;

pub const NAME: &str = "etcd";

/// Why the peer cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    for (prog, arg) in [("etcd", "--version"), ("etcdctl", "version")] {
        if Command::new(prog)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return Some(format!(
                "`{prog}` not found; install Debian's etcd with \
                 `apt-get install -y etcd-server etcd-client`"
            ));
        }
    }
    None
}

struct Member {
    name: String,
    client: SocketAddr,
    peer: SocketAddr,
    proc: Option<Child>,
}

/// Three running etcd members.
pub struct Etcd {
    members: Vec<Member>,
    // Last: removed after the processes are killed (in `drop`).
    dir: tempfile::TempDir,
}

impl Etcd {
    pub fn start(ctx: &Ctx) -> Result<Etcd> {
        let dir = ctx.fresh_dir("etcd")?;
        let members: Vec<Member> = (1..=3)
            .map(|i| Member {
                name: format!("e{i}"),
                client: redoubt_hub::cluster::free_port(),
                peer: redoubt_hub::cluster::free_port(),
                proc: None,
            })
            .collect();
        let mut e = Etcd { members, dir };
        for i in 0..3 {
            e.spawn(i)?;
        }
        e.wait_healthy(Duration::from_secs(30))?;
        Ok(e)
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let cluster = self
            .members
            .iter()
            .map(|m| format!("{}=http://{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let m = &self.members[i];
        let data: PathBuf = self.dir.path().join(&m.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", m.name)))?;
        let client = format!("http://{}", m.client);
        let peer = format!("http://{}", m.peer);
        let child = Command::new("etcd")
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "redoubt-bench"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start etcd")?;
        self.members[i].proc = Some(child);
        Ok(())
    }

    /// The members' client addresses.
    pub fn endpoints(&self) -> Vec<SocketAddr> {
        self.members.iter().map(|m| m.client).collect()
    }

    /// `etcdctl endpoint status` of every member: (member id, leader id)
    /// per endpoint, in order; an error if one does not answer.
    fn status(&self) -> Result<Vec<(u64, u64)>> {
        let eps = self
            .members
            .iter()
            .map(|m| m.client.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &eps, "--command-timeout=1s"])
            .args(["endpoint", "status", "-w", "json"])
            .output()
            .context("run etcdctl endpoint status")?;
        if !out.status.success() {
            bail!(
                "etcdctl endpoint status: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .context("parse the output of etcdctl endpoint status")?;
        let list = v.as_array().context("etcdctl: not a list")?;
        let mut res = Vec::new();
        for m in &self.members {
            let s = list
                .iter()
                .find(|e| e["Endpoint"].as_str() == Some(&m.client.to_string()))
                .with_context(|| format!("etcdctl: no status for {}", m.client))?;
            let id = s["Status"]["header"]["member_id"].as_u64();
            let leader = s["Status"]["leader"].as_u64();
            match (id, leader) {
                (Some(id), Some(leader)) => res.push((id, leader)),
                _ => bail!("etcdctl: no member_id/leader in {s}"),
            }
        }
        Ok(res)
    }

    /// The index of the leader, found with `etcdctl endpoint status`.
    pub fn leader(&self) -> Result<usize> {
        let st = self.status()?;
        let leader = st[0].1;
        if leader == 0 || st.iter().any(|(_, l)| *l != leader) {
            bail!("the members do not agree on a leader: {st:?}");
        }
        st.iter()
            .position(|(id, _)| *id == leader)
            .with_context(|| format!("leader {leader:x} is not one of the members: {st:?}"))
    }

    /// Waits until all three answer, agree on a leader and take a put.
    pub fn wait_healthy(&self, timeout: Duration) -> Result<()> {
        let t0 = Instant::now();
        loop {
            let ok = self.leader().and_then(|l| {
                put(
                    self.members[l].client,
                    b"health",
                    b"ok",
                    Duration::from_secs(1),
                )
            });
            match ok {
                Ok(()) => return Ok(()),
                Err(e) if t0.elapsed() > timeout => {
                    return Err(e.context(format!(
                        "etcd not healthy within {timeout:?}\n{}",
                        self.logs()
                    )))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// kill -9 of member `i`.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        let mut c = self.members[i].proc.take().context("not running")?;
        c.kill()?;
        c.wait()?;
        Ok(())
    }

    /// Restarts member `i` on its data folder.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.spawn(i)
    }

    fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let t = std::fs::read_to_string(self.dir.path().join(format!("{}.log", m.name)))
                    .unwrap_or_default();
                let l: Vec<&str> = t.lines().collect();
                format!(
                    "--- {} ---\n{}",
                    m.name,
                    l[l.len().saturating_sub(8)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.proc.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// One put through the JSON gateway: Ok when etcd answered 200 with a
/// response header (the put is committed by a quorum).
pub fn put(addr: SocketAddr, key: &[u8], value: &[u8], timeout: Duration) -> Result<()> {
    let body = format!(
        "{{\"key\":\"{}\",\"value\":\"{}\"}}",
        base64(key),
        base64(value)
    );
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    let req = format!(
        "POST /v3/kv/put HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let text = String::from_utf8_lossy(&resp);
    let ok = text.starts_with("HTTP/1.1 200") && text.contains("\"header\"");
    if !ok {
        let first = text.lines().next().unwrap_or("");
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        bail!("etcd put: {first} {body}");
    }
    Ok(())
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
    }
}
