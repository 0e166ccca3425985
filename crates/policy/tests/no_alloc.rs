//! The hot path allocates nothing for an allow: a counting global
//! allocator around a loop of allowed decisions on the starter policy.

#![allow(
    unsafe_code,
    reason = "a global allocator that counts allocations needs `unsafe impl`"
)]
#![allow(clippy::unwrap_used, reason = "test")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use partnerdb_policy::{
    Action, CompiledPolicy, Principal, Request, Resource, ResourceType, SourceFile, parse_policy,
};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn allowed_decisions_do_not_allocate() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../policies/starter.toml"
    ))
    .unwrap();
    let policy =
        CompiledPolicy::compile(parse_policy(&SourceFile::new("starter.toml", text)).unwrap());
    let manager = policy.resolve_roles(["partner_manager", "finance"]);
    let client = policy.resolve_roles(["api_client"]);
    let region = [("region", "emea")];
    let requests = [
        (&manager, None, Action::Read, ResourceType::Partner, "maria"),
        (
            &manager,
            None,
            Action::Propose,
            ResourceType::Contract,
            "maria",
        ),
        (
            &manager,
            None,
            Action::Read,
            ResourceType::Transaction,
            "sam",
        ),
        (
            &client,
            Some("acme"),
            Action::Create,
            ResourceType::Transaction,
            "sam",
        ),
        (
            &client,
            Some("acme"),
            Action::Read,
            ResourceType::Contact,
            "sam",
        ),
    ];

    COUNTING.store(true, Ordering::SeqCst);
    let mut allowed = 0;
    for _ in 0..1000 {
        for &(roles, partner_id, action, kind, owner) in &requests {
            let request = Request {
                principal: Principal {
                    id: "maria",
                    roles,
                    partner_id,
                    attrs: &region,
                },
                action,
                resource: Resource {
                    kind,
                    id: "r1",
                    partner_id: Some("acme"),
                    owner: Some(owner),
                    attrs: &region,
                },
                elevated: false,
            };
            allowed += usize::from(policy.decide(&request).allowed);
        }
    }
    COUNTING.store(false, Ordering::SeqCst);
    assert_eq!(allowed, 5000, "every request of this test must be an allow");
    assert_eq!(ALLOCATIONS.load(Ordering::SeqCst), 0);
}
