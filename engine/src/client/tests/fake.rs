//! A fake member: a listener whose handshake answer and request answers
//! are closures, recording what it was asked.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use parking_lot::Mutex;

use crate::wire::{
    recv, send, FrameLimits, Hello, MemberRole, Message, Reply, Request, Response, Welcome,
};

/// What the fake does with a request.
pub enum Act {
    Answer(Response),
    /// Close the connection without answering.
    Drop,
    /// Answer after a pause.
    Slow(Duration, Response),
}

type OnHello = dyn Fn(&Hello) -> Message + Send + Sync;
type OnRequest = dyn Fn(&Request) -> Act + Send + Sync;

pub struct Fake {
    pub addr: String,
    pub requests: Arc<Mutex<Vec<Request>>>,
    pub hellos: Arc<Mutex<Vec<Hello>>>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

pub fn welcome(member: &str, role: MemberRole, primary: Option<&str>) -> Message {
    Message::Welcome(Welcome {
        mirror: "M".into(),
        member: member.into(),
        role,
        epoch: 3,
        primary: primary.map(str::to_string),
    })
}

pub fn ok(req: &Request, reply: Reply) -> Act {
    Act::Answer(Response {
        id: req.id,
        result: Ok(reply),
    })
}

/// The reply a real primary gives for each op, with no data.
pub fn plain_reply(req: &Request) -> Act {
    use crate::wire::ClientOp as Op;
    let reply = match &req.op {
        Op::Get { .. } => Reply::Value(None),
        Op::Set { .. } => Reply::Done,
        Op::Kill { .. } | Op::Increment { .. } => Reply::Int(1),
        Op::ZKill { .. } | Op::Lock { .. } | Op::Unlock { .. } => Reply::Bool(true),
        Op::Data { .. } => Reply::Data(0),
        Op::Order { .. } => Reply::Subscript(None),
        Op::Query { .. } => Reply::Key(None),
        Op::TStart => Reply::Level(1),
        Op::TCommit | Op::TRollback { .. } => Reply::Level(0),
        Op::Scan { .. } => Reply::Rows(vec![]),
    };
    ok(req, reply)
}

impl Fake {
    pub fn start(
        on_hello: impl Fn(&Hello) -> Message + Send + Sync + 'static,
        on_request: impl Fn(&Request) -> Act + Send + Sync + 'static,
    ) -> Fake {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let fake = Fake {
            addr,
            requests: Arc::default(),
            hellos: Arc::default(),
            conns: Arc::default(),
            stop: Arc::default(),
        };
        let on_hello: Arc<OnHello> = Arc::new(on_hello);
        let on_request: Arc<OnRequest> = Arc::new(on_request);
        let (requests, hellos, conns, stop) = (
            fake.requests.clone(),
            fake.hellos.clone(),
            fake.conns.clone(),
            fake.stop.clone(),
        );
        thread::spawn(move || {
            for s in l.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(s) = s else { continue };
                conns.lock().push(s.try_clone().unwrap());
                let (on_hello, on_request) = (on_hello.clone(), on_request.clone());
                let (requests, hellos) = (requests.clone(), hellos.clone());
                thread::spawn(move || {
                    let closer = s.try_clone().unwrap();
                    serve(s, &*on_hello, &*on_request, &requests, &hellos);
                    // `conns` holds a clone: close the connection for real.
                    let _ = closer.shutdown(Shutdown::Both);
                });
            }
        });
        fake
    }

    /// A primary that answers every op like [`plain_reply`].
    pub fn primary(name: &str) -> Fake {
        let n = name.to_string();
        Fake::start(move |_| welcome(&n, MemberRole::Primary, None), plain_reply)
    }

    /// Closes every open connection from the member's side.
    pub fn kick(&self) {
        for s in self.conns.lock().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn count(&self) -> usize {
        self.requests.lock().len()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        self.kick();
    }
}

fn serve(
    mut s: TcpStream,
    on_hello: &OnHello,
    on_request: &OnRequest,
    requests: &Mutex<Vec<Request>>,
    hellos: &Mutex<Vec<Hello>>,
) {
    let Ok(Message::Hello(h)) = recv(&mut s, FrameLimits::CLIENT) else {
        return;
    };
    hellos.lock().push(h.clone());
    let answer = on_hello(&h);
    let refused = matches!(answer, Message::Refuse(_));
    if send(&mut s, &answer).is_err() || refused {
        return;
    }
    while let Ok(Message::Request(r)) = recv(&mut s, FrameLimits::CLIENT) {
        requests.lock().push(r.clone());
        match on_request(&r) {
            Act::Answer(resp) => {
                if send(&mut s, &Message::Response(resp)).is_err() {
                    return;
                }
            }
            Act::Slow(d, resp) => {
                thread::sleep(d);
                if send(&mut s, &Message::Response(resp)).is_err() {
                    return;
                }
            }
            Act::Drop => return,
        }
    }
}

/// An address where nothing listens.
pub fn dead_address() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}
