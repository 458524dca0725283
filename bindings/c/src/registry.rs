//! Handles: what a C caller holds is a token, not a pointer into Rust memory.
//!
//! Every object the API hands out (subscriber, frame, packet, publisher) is
//! registered under a fresh 64-bit id that is never reused in the process;
//! the `cuframes_*_t *` the caller gets is that id. Each call looks the id
//! up (one uncontended mutex), so a NULL handle, a destroyed or released
//! one, a made-up value, or a handle of another kind is answered with
//! `CUFRAMES_ERR_INVALID_HANDLE` instead of touching freed memory. Destroy
//! and release unregister first: a call racing with them on another thread
//! either sees the object (which lives until that call returns: objects are
//! reference counted) or sees no object.

use crate::error::Error;
use crate::publisher::PublisherObj;
use crate::subscriber::{FrameObj, PacketObj, SubscriberObj};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A registered object.
#[derive(Clone)]
pub enum Object {
    /// `cuframes_subscriber_t`.
    Subscriber(Arc<SubscriberObj>),
    /// `cuframes_frame_t`.
    Frame(Arc<FrameObj>),
    /// `cuframes_packet_t`.
    Packet(Arc<PacketObj>),
    /// `cuframes_publisher_t`.
    Publisher(Arc<PublisherObj>),
}

struct Registry {
    next: u64,
    objects: BTreeMap<u64, Object>,
}

/// Ids start high and step by 16, so a handle looks like an aligned
/// pointer to tools and small integers are never handles.
const FIRST_ID: u64 = 0x10_0000;
const ID_STEP: u64 = 16;

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: FIRST_ID,
    objects: BTreeMap::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    // Nothing panics while the lock is held, but a poisoned map is still
    // consistent (every operation is a single insert / get / remove).
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// A kind of registered object.
pub trait Kind: Sized {
    /// Name for messages ("subscriber", ...).
    const NAME: &'static str;
    /// Wraps `this` for the registry.
    fn wrap(this: Arc<Self>) -> Object;
    /// The object if it is of this kind.
    fn unwrap(o: &Object) -> Option<&Arc<Self>>;
}

macro_rules! kind {
    ($t:ty, $variant:ident, $name:literal) => {
        impl Kind for $t {
            const NAME: &'static str = $name;
            fn wrap(this: Arc<Self>) -> Object {
                Object::$variant(this)
            }
            fn unwrap(o: &Object) -> Option<&Arc<Self>> {
                match o {
                    Object::$variant(x) => Some(x),
                    _ => None,
                }
            }
        }
    };
}

kind!(SubscriberObj, Subscriber, "subscriber");
kind!(FrameObj, Frame, "frame");
kind!(PacketObj, Packet, "packet");
kind!(PublisherObj, Publisher, "publisher");

/// Registers `obj`; returns its id (never 0).
pub fn insert<T: Kind>(obj: T) -> u64 {
    let mut r = registry();
    let id = r.next;
    r.next += ID_STEP;
    r.objects.insert(id, T::wrap(Arc::new(obj)));
    id
}

/// The object registered as `id`, if it is a `T`.
pub fn get<T: Kind>(id: u64) -> Result<Arc<T>, Error> {
    registry()
        .objects
        .get(&id)
        .and_then(T::unwrap)
        .cloned()
        .ok_or_else(|| Error::handle(T::NAME))
}

/// Unregisters `id` if it is a `T`; returns the object (the last reference
/// unless another thread is inside a call with it).
pub fn remove<T: Kind>(id: u64) -> Result<Arc<T>, Error> {
    let mut r = registry();
    match r.objects.get(&id).and_then(T::unwrap) {
        Some(_) => match r.objects.remove(&id) {
            Some(o) => T::unwrap(&o).cloned().ok_or_else(|| Error::handle(T::NAME)),
            None => Err(Error::handle(T::NAME)),
        },
        None => Err(Error::handle(T::NAME)),
    }
}

/// How many objects of each kind are registered: (subscribers, frames,
/// packets, publishers). For leak checks in tests.
pub fn counts() -> (usize, usize, usize, usize) {
    let r = registry();
    let mut c = (0, 0, 0, 0);
    for o in r.objects.values() {
        match o {
            Object::Subscriber(_) => c.0 += 1,
            Object::Frame(_) => c.1 += 1,
            Object::Packet(_) => c.2 += 1,
            Object::Publisher(_) => c.3 += 1,
        }
    }
    c
}
