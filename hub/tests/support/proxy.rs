//! A fault-injecting TCP proxy for tests: forwards connections to a target
//! and can cut them (connections reset, new ones refused), black-hole them
//! (connections stay open but nothing passes: what a partition looks
//! like), or heal.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PASS: u8 = 0;
const CUT: u8 = 1;
const BLACKHOLE: u8 = 2;

pub struct Proxy {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// A proxy on a free loopback port forwarding to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        Self::on(listener, target)
    }

    pub fn on(listener: TcpListener, target: SocketAddr) -> Proxy {
        let addr = listener.local_addr().expect("proxy addr");
        let mode = Arc::new(AtomicU8::new(PASS));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (mode, conns, stop) = (mode.clone(), conns.clone(), stop.clone());
            listener.set_nonblocking(true).expect("nonblocking");
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let client = match listener.accept() {
                        Ok((c, _)) => c,
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                    };
                    let _ = client.set_nonblocking(false);
                    if mode.load(Ordering::SeqCst) == CUT {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    }
                    let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(1))
                    else {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    {
                        let mut c = conns.lock().unwrap();
                        c.push(client.try_clone().unwrap());
                        c.push(server.try_clone().unwrap());
                    }
                    pump(
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        mode.clone(),
                    );
                    pump(server, client, mode.clone());
                }
            });
        }
        Proxy {
            addr,
            mode,
            conns,
            stop,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Resets every connection and refuses new ones.
    pub fn cut(&self) {
        self.mode.store(CUT, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Keeps connections open but lets nothing through, either way.
    pub fn blackhole(&self) {
        self.mode.store(BLACKHOLE, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        // Black-holed connections carry torn streams: drop them.
        if self.mode.swap(PASS, Ordering::SeqCst) == BLACKHOLE {
            for c in self.conns.lock().unwrap().drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, mode: Arc<AtomicU8>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            match mode.load(Ordering::SeqCst) {
                PASS => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                BLACKHOLE => {}
                _ => break,
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
