//! The control socket while connected (`docs/protocol.md` §5.5, §6): PING,
//! GOODBYE, ERROR, STREAM_CHANGED and the re-WELCOME that follows it.

use super::connect::{check_welcome, import_ring, Attach, Conn};
use super::engine::Subscriber;
use super::error::{ConnectError, EndReason, RecvError};
use super::leases::LeaseState;
use super::ring::Ring;
use crate::handshake::{HandshakeError, SubscriberEvent};
use crate::layout::LayoutError;
use crate::runtime::backend::Importer;
use crate::wire::{decode, GoodbyeReason, Welcome, WELCOME_HAS_PACKETS};
use std::prelude::rust_2021::*;
use std::sync::Arc;
use std::time::Duration;

impl<B: Importer> Subscriber<B> {
    /// Handles whatever the publisher sent (PING, GOODBYE, STREAM_CHANGED and
    /// its WELCOME, EOF). A protocol error fails the connection and is
    /// returned once.
    pub(super) fn service_socket(&self) -> Result<(), RecvError> {
        let mut guard = self.conn.borrow_mut();
        let c = &mut *guard;
        if c.end.is_some() {
            return Ok(());
        }
        loop {
            let raw = match c.chan.recv(Some(Duration::ZERO)) {
                Ok(Some(raw)) => raw,
                Ok(None) => return Ok(()),
                Err(_) => {
                    // EOF, reset or garbage: the publisher is gone for us.
                    c.end = Some(EndReason::Vanished);
                    return Ok(());
                }
            };
            let Ok(Some(d)) = decode(&raw) else {
                c.end = Some(EndReason::Vanished);
                return Ok(());
            };
            let event = c.hs.handle(d.message);
            let result = match event {
                Ok(SubscriberEvent::Goodbye(r)) => {
                    c.end = Some(if r == GoodbyeReason::EndOfStream {
                        EndReason::EndOfStream
                    } else {
                        EndReason::Shutdown
                    });
                    Ok(())
                }
                Ok(SubscriberEvent::Rejected(_)) => {
                    c.end = Some(EndReason::Refused);
                    Ok(())
                }
                Ok(SubscriberEvent::StreamChanged(g)) => {
                    c.changing = Some(g);
                    Ok(())
                }
                Ok(SubscriberEvent::Welcomed(w)) => {
                    let g = c.changing.take();
                    match self.reimport(c, &w, g) {
                        Ok(ring) => {
                            c.next.push_back(Arc::new(ring));
                            Ok(())
                        }
                        Err(e) => Err(e.to_string()),
                    }
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = result {
                c.end = Some(EndReason::ProtocolError);
                c.chan.discard_fds();
                return Err(RecvError::Protocol(e));
            }
            while let Some(o) = c.hs.poll_transmit() {
                let _ = c.chan.send(&o.message(), &[]);
            }
            if c.end.is_some() {
                return Ok(());
            }
        }
    }

    /// Imports the ring of a re-WELCOME that followed STREAM_CHANGED(`g`).
    fn reimport(
        &self,
        c: &mut Conn<B>,
        w: &Welcome<'_>,
        g: Option<u64>,
    ) -> Result<Ring<B>, ConnectError> {
        let g = g.ok_or(HandshakeError::Unexpected {
            kind: crate::wire::MessageType::Welcome,
            state: "established",
        })?;
        if w.subscriber_id != c.id {
            return Err(ConnectError::PeerChanged("subscriber id"));
        }
        if (w.flags & WELCOME_HAS_PACKETS != 0) != c.packets.is_some() {
            return Err(ConnectError::PeerChanged("packet ring"));
        }
        // The packet region is re-sent unchanged; the mapping we have stays
        // (`import_ring` drops the new fd).
        let checked = check_welcome(&mut c.chan, w, self.opts.frames, false)?;
        let im = import_ring(
            checked,
            self.opts.frames,
            Attach::Again(&self.backend, &self.peer),
        )?;
        let newest = c.next.back().unwrap_or(&c.ring).stream.generation;
        if im.stream.generation != g || g <= newest {
            return Err(LayoutError::Field {
                field: "stream generation vs STREAM_CHANGED",
                value: im.stream.generation,
                expected: g,
            }
            .into());
        }
        Ok(Ring {
            leases: Arc::new(LeaseState::new(im.control, Arc::clone(&c.row), im.layout)),
            stream: im.stream,
            layout: im.frame,
            slots: im.slots,
            start_seq: w.start_seq,
        })
    }
}
