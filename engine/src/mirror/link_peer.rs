//! The heartbeat link between the two failover members. The member with
//! the smaller name connects; both send their state every QoS/4. A closed
//! connection means the peer is gone at once (a crashed process closes its
//! sockets); silence for the QoS timeout means it is frozen or cut off.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::MemberSpec;
use super::failover::{Event, PeerInfo};
use super::member::{Msg, Shared};
use super::receiver::{connect, handshake};
use crate::wire::{self, FrameLimits, MemberRole, Message, PeerState};

/// Connecting side: keep a link to the peer up while running.
pub(crate) fn connect_loop(shared: Arc<Shared>, peer: MemberSpec) {
    while !shared.stopping() {
        match connect(&shared, &peer.addr) {
            Ok(mut s) => match handshake(&shared, &mut s) {
                Ok(_) => run(&shared, s, None),
                Err(e) => tracing::debug!(peer = %peer.name, error = %e, "peer handshake failed"),
            },
            Err(e) => tracing::trace!(peer = %peer.name, error = %e, "peer unreachable"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Accepting side: the first `PeerState` has been read already.
pub(crate) fn accepted(shared: Arc<Shared>, s: TcpStream, first: PeerState) {
    run(&shared, s, Some(first));
}

fn my_state(shared: &Shared) -> PeerState {
    let v = shared.view.lock();
    PeerState {
        epoch: v.epoch,
        primary: v.role == MemberRole::Primary || v.role == MemberRole::Trouble,
        end: shared.engine.journal().end_lsn().0,
    }
}

fn info(p: &PeerState) -> PeerInfo {
    PeerInfo {
        epoch: p.epoch,
        is_primary: p.primary,
        last: (p.epoch, p.end),
    }
}

/// Exchanges states until the link fails; reports the peer to the driver.
fn run(shared: &Shared, s: TcpStream, first: Option<PeerState>) {
    let gen = shared.peer_gen.fetch_add(1, Ordering::SeqCst) + 1;
    let qos = shared.qos();
    let _ = s.set_read_timeout(Some(qos));
    let mut w = match s.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut r = s;
    let mut last_info: Option<PeerInfo> = None;
    let report = |p: &PeerState, last: &mut Option<PeerInfo>| {
        let i = info(p);
        // Report a change of role or epoch (the journal end moves all the time).
        if last
            .as_ref()
            .is_none_or(|l| l.epoch != i.epoch || l.is_primary != i.is_primary)
        {
            shared.send(Msg::Sm(Event::PeerConnected(i.clone())));
        }
        *last = Some(i);
    };
    if let Some(p) = &first {
        report(p, &mut last_info);
    }
    let stop = AtomicBool::new(false);
    let period = qos / 4;
    std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            let mut next = Instant::now();
            while !stop.load(Ordering::SeqCst) && !shared.stopping() {
                if Instant::now() >= next {
                    if wire::send(&mut w, &Message::PeerState(my_state(shared))).is_err() {
                        break;
                    }
                    next = Instant::now() + period;
                }
                std::thread::sleep(Duration::from_millis(5).min(period));
            }
            let _ = w.shutdown(std::net::Shutdown::Both);
        });
        while !shared.stopping() {
            match wire::recv(&mut r, FrameLimits::MEMBER) {
                Ok(Message::PeerState(p)) => report(&p, &mut last_info),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        stop.store(true, Ordering::SeqCst);
        let _ = r.shutdown(std::net::Shutdown::Both);
        let _ = sender.join();
    });
    if last_info.is_some() && shared.peer_gen.load(Ordering::SeqCst) == gen {
        shared.send(Msg::Sm(Event::PeerLost));
    }
}
