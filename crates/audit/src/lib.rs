//! partnerdb's audit trail, without a database: the event as hashed, the
//! SHA-256 hash chain, signed checkpoints (ed25519) and a streaming
//! verifier that names the first broken link.
//!
//! **Chain.** Event `n` carries `prev_hash` (the hash of event `n - 1`, or
//! 64 zeros for the first) and `hash = SHA-256(prev_hash ‖ encode(event))`,
//! where `encode` writes every field length-prefixed in a fixed order, so
//! two different events never encode alike. Editing, deleting, inserting or
//! reordering a stored event breaks the chain at that point.
//!
//! **Checkpoints.** Anyone with write access to the database could rewrite
//! the whole chain consistently; a checkpoint — `(seq, hash, at)` signed
//! with a key kept outside the database — pins the chain up to `seq`.
//! Verifying needs only the public key; checkpoints exported elsewhere also
//! catch a truncated tail.
//!
//! **Architecture invariant:** this crate does no I/O; the store persists
//! events and checkpoints, the service appends them.

use std::fmt;

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An audit event, as hashed. `detail` is the event's JSON detail exactly
/// as stored (the hash covers its bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    /// When, RFC 3339 UTC (fixed width).
    pub at: String,
    /// `decision`, `change`, `principal` or `policy`.
    pub kind: String,
    /// Who (none for system events).
    pub principal_id: Option<String>,
    /// The action decided or done.
    pub action: String,
    /// The resource type.
    pub resource_type: String,
    /// The record or object, if one.
    pub resource_id: Option<String>,
    /// The partner it belongs to, if any.
    pub partner_id: Option<String>,
    /// `allow` or `deny`.
    pub decision: String,
    /// The policy version that decided.
    pub policy_version: String,
    /// Everything else, as JSON text.
    pub detail: String,
}

/// Where the canonical encoding goes: a buffer, or straight into a hasher.
trait Sink {
    fn bytes(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn bytes(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for Sha256 {
    fn bytes(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

fn put(out: &mut impl Sink, field: &str) {
    out.bytes(&(field.len() as u64).to_le_bytes());
    out.bytes(field.as_bytes());
}

fn put_opt(out: &mut impl Sink, field: Option<&str>) {
    match field {
        None => out.bytes(&[0]),
        Some(text) => {
            out.bytes(&[1]);
            put(out, text);
        }
    }
}

impl Event {
    /// The event's fields, borrowed.
    pub fn view(&self) -> EventRef<'_> {
        EventRef {
            seq: self.seq,
            at: &self.at,
            kind: &self.kind,
            principal_id: self.principal_id.as_deref(),
            action: &self.action,
            resource_type: &self.resource_type,
            resource_id: self.resource_id.as_deref(),
            partner_id: self.partner_id.as_deref(),
            decision: &self.decision,
            policy_version: &self.policy_version,
            detail: &self.detail,
        }
    }

    /// The canonical encoding hashed into the chain.
    pub fn encode(&self) -> Vec<u8> {
        self.view().encode()
    }

    /// The event's hash after `prev_hash` ([`EventRef::hash`]).
    pub fn hash(&self, prev_hash: &str) -> String {
        self.view().hash(prev_hash)
    }
}

/// An event's fields as [`Event`] has them, borrowed from wherever they
/// are (an event to append is hashed without being copied first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventRef<'a> {
    /// [`Event::seq`].
    pub seq: i64,
    /// [`Event::at`].
    pub at: &'a str,
    /// [`Event::kind`].
    pub kind: &'a str,
    /// [`Event::principal_id`].
    pub principal_id: Option<&'a str>,
    /// [`Event::action`].
    pub action: &'a str,
    /// [`Event::resource_type`].
    pub resource_type: &'a str,
    /// [`Event::resource_id`].
    pub resource_id: Option<&'a str>,
    /// [`Event::partner_id`].
    pub partner_id: Option<&'a str>,
    /// [`Event::decision`].
    pub decision: &'a str,
    /// [`Event::policy_version`].
    pub policy_version: &'a str,
    /// [`Event::detail`].
    pub detail: &'a str,
}

impl EventRef<'_> {
    /// The canonical encoding hashed into the chain.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.detail.len());
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut impl Sink) {
        out.bytes(b"partnerdb-audit-v1");
        out.bytes(&self.seq.to_le_bytes());
        put(out, self.at);
        put(out, self.kind);
        put_opt(out, self.principal_id);
        put(out, self.action);
        put(out, self.resource_type);
        put_opt(out, self.resource_id);
        put_opt(out, self.partner_id);
        put(out, self.decision);
        put(out, self.policy_version);
        put(out, self.detail);
    }

    /// The event's hash after `prev_hash`: SHA-256 of `prev_hash` and the
    /// encoding.
    pub fn hash(&self, prev_hash: &str) -> String {
        hex(&self.digest(prev_hash, &mut Vec::new()))
    }

    /// The hash as bytes, the encoding written into `scratch` first (its
    /// room is kept for the next event: one hasher update an event, not
    /// two for every field).
    pub fn digest(&self, prev_hash: &str, scratch: &mut Vec<u8>) -> [u8; 32] {
        scratch.clear();
        scratch.extend_from_slice(prev_hash.as_bytes());
        self.write(scratch);
        Sha256::digest(scratch.as_slice()).into()
    }
}

/// A stored event's fields and links, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredRef<'a> {
    /// The event.
    pub event: EventRef<'a>,
    /// The previous event's hash, as stored.
    pub prev_hash: &'a str,
    /// This event's hash, as stored.
    pub hash: &'a str,
}

impl StoredRef<'_> {
    /// Whether the event's content hashes to its stored hash after its
    /// stored `prev_hash`: `None` when it does, else the hash it has. Each
    /// event is checked on its own, so that many can be checked at once
    /// (`ChainVerifier::push_checked` then follows the links in order).
    pub fn content_mismatch(&self, scratch: &mut Vec<u8>) -> Option<String> {
        let digest = self.event.digest(self.prev_hash, scratch);
        let mut text = [0u8; 64];
        for (pair, byte) in text.chunks_exact_mut(2).zip(digest) {
            pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
            pair[1] = HEX_DIGITS[usize::from(byte & 0xf)];
        }
        (self.hash.as_bytes() != text).then(|| hex(&digest))
    }
}

/// An event as stored, with its links.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The event.
    #[serde(flatten)]
    pub event: Event,
    /// The previous event's hash.
    pub prev_hash: String,
    /// This event's hash.
    pub hash: String,
}

/// Links `events` into a chain after the event whose hash is `prev_hash`
/// ([`GENESIS`] for a chain of its own): each gets the hash before it and
/// its own. The chain as the writer would store it, for loading a trail in
/// bulk (audit-bench) and for tests that build or rewrite one.
pub fn link(prev_hash: &str, events: impl IntoIterator<Item = Event>) -> Vec<StoredEvent> {
    let mut prev = prev_hash.to_owned();
    events
        .into_iter()
        .map(|event| {
            let hash = event.hash(&prev);
            StoredEvent {
                event,
                prev_hash: std::mem::replace(&mut prev, hash.clone()),
                hash,
            }
        })
        .collect()
}

impl StoredEvent {
    /// The stored event, borrowed.
    pub fn view(&self) -> StoredRef<'_> {
        StoredRef {
            event: self.event.view(),
            prev_hash: &self.prev_hash,
            hash: &self.hash,
        }
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(HEX_DIGITS[usize::from(b >> 4)]));
        out.push(char::from(HEX_DIGITS[usize::from(b & 0xf)]));
    }
    out
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.trim();
    if text.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// The first broken link of a chain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Break {
    /// An event is missing, or an extra one appears: seq is not the next.
    #[error(
        "event {found} follows event {previous}: expected {expected} (an event was deleted, inserted or reordered)"
    )]
    Sequence {
        /// The last good seq.
        previous: i64,
        /// The seq expected next.
        expected: i64,
        /// The seq found.
        found: i64,
    },
    /// An event does not link to the one before it.
    #[error(
        "event {seq} does not link to event {previous}: prev_hash is {found}, the chain says {expected}"
    )]
    Link {
        /// The event.
        seq: i64,
        /// The event before it.
        previous: i64,
        /// The hash it should link to.
        expected: String,
        /// The hash it links to.
        found: String,
    },
    /// An event's content does not match its hash (it was edited).
    #[error("event {seq} was altered: its content hashes to {computed}, but {stored} is stored")]
    Content {
        /// The event.
        seq: i64,
        /// The hash of its content.
        computed: String,
        /// The hash stored with it.
        stored: String,
    },
    /// A checkpoint does not match the chain.
    #[error("checkpoint at event {seq} signed hash {signed}, but the chain has {found} there")]
    Checkpoint {
        /// The checkpoint's seq.
        seq: i64,
        /// The hash it signed.
        signed: String,
        /// The chain's hash at that seq.
        found: String,
    },
    /// A checkpoint's signature is not valid for the public key.
    #[error("checkpoint at event {seq} has an invalid signature")]
    Signature {
        /// The checkpoint's seq.
        seq: i64,
    },
    /// The chain ends before a checkpoint.
    #[error(
        "the chain ends at event {last}, but a checkpoint signed event {seq}: the tail was truncated"
    )]
    Truncated {
        /// The last event.
        last: i64,
        /// The checkpoint's seq.
        seq: i64,
    },
}

impl Break {
    /// A stable name of the kind of break (`sequence`, `link`, `content`,
    /// `checkpoint`, `signature`, `truncated`).
    pub fn kind(&self) -> &'static str {
        match self {
            Break::Sequence { .. } => "sequence",
            Break::Link { .. } => "link",
            Break::Content { .. } => "content",
            Break::Checkpoint { .. } => "checkpoint",
            Break::Signature { .. } => "signature",
            Break::Truncated { .. } => "truncated",
        }
    }

    /// The seq where the chain breaks: the event found out of sequence,
    /// the event that does not link or was altered, the checkpoint's.
    pub fn seq(&self) -> i64 {
        match self {
            Break::Sequence { found, .. } => *found,
            Break::Link { seq, .. }
            | Break::Content { seq, .. }
            | Break::Checkpoint { seq, .. }
            | Break::Signature { seq }
            | Break::Truncated { seq, .. } => *seq,
        }
    }
}

/// Verifies a chain event by event, in seq order, against checkpoints.
#[derive(Debug)]
pub struct ChainVerifier {
    last_seq: i64,
    last_hash: String,
    checkpoints: Vec<Checkpoint>,
    next_checkpoint: usize,
    key: Option<VerifyingKey>,
    /// Room for the encoding of the event being hashed.
    scratch: Vec<u8>,
}

impl ChainVerifier {
    /// A verifier from the start of the chain. Checkpoints are checked
    /// against the chain (and their signatures against `key`, if given).
    pub fn new(mut checkpoints: Vec<Checkpoint>, key: Option<&PublicKey>) -> ChainVerifier {
        checkpoints.sort_by_key(|c| c.seq);
        ChainVerifier {
            last_seq: 0,
            last_hash: GENESIS.to_owned(),
            checkpoints,
            next_checkpoint: 0,
            key: key.map(|k| k.0),
            scratch: Vec::new(),
        }
    }

    /// Checks the next stored event.
    pub fn push(&mut self, stored: &StoredEvent) -> Result<(), Break> {
        let mismatch = stored.view().content_mismatch(&mut self.scratch);
        self.push_checked(stored.event.seq, &stored.prev_hash, &stored.hash, mismatch)
    }

    /// Checks the next stored event, whose content was checked already
    /// ([`StoredRef::content_mismatch`], maybe on another thread): its
    /// place in the sequence, its link to the event before, the content
    /// check's outcome, and the checkpoints at its seq, in that order.
    pub fn push_checked(
        &mut self,
        seq: i64,
        prev_hash: &str,
        hash: &str,
        mismatch: Option<String>,
    ) -> Result<(), Break> {
        if seq != self.last_seq + 1 {
            return Err(Break::Sequence {
                previous: self.last_seq,
                expected: self.last_seq + 1,
                found: seq,
            });
        }
        if prev_hash != self.last_hash {
            return Err(Break::Link {
                seq,
                previous: self.last_seq,
                expected: self.last_hash.clone(),
                found: prev_hash.to_owned(),
            });
        }
        if let Some(computed) = mismatch {
            return Err(Break::Content {
                seq,
                computed,
                stored: hash.to_owned(),
            });
        }
        while let Some(checkpoint) = self.checkpoints.get(self.next_checkpoint) {
            if checkpoint.seq > seq {
                break;
            }
            if checkpoint.seq == seq {
                self.check(checkpoint, hash)?;
            }
            // A checkpoint below the chain's start cannot happen (the
            // chain starts at 1); one at a seq already passed was checked.
            self.next_checkpoint += 1;
        }
        self.last_seq = seq;
        // The content hashes to the stored hash: it is the chain's now.
        self.last_hash.clear();
        self.last_hash.push_str(hash);
        Ok(())
    }

    fn check(&self, checkpoint: &Checkpoint, hash: &str) -> Result<(), Break> {
        if let Some(key) = &self.key
            && !checkpoint.verify(&PublicKey(*key))
        {
            return Err(Break::Signature {
                seq: checkpoint.seq,
            });
        }
        if checkpoint.hash != hash {
            return Err(Break::Checkpoint {
                seq: checkpoint.seq,
                signed: checkpoint.hash.clone(),
                found: hash.to_owned(),
            });
        }
        Ok(())
    }

    /// Ends the verification: every checkpoint must have been reached.
    /// Returns the number of events verified.
    pub fn finish(self) -> Result<i64, Break> {
        if let Some(checkpoint) = self.checkpoints.get(self.next_checkpoint) {
            return Err(Break::Truncated {
                last: self.last_seq,
                seq: checkpoint.seq,
            });
        }
        Ok(self.last_seq)
    }

    /// The last verified event's seq and hash.
    pub fn head(&self) -> (i64, &str) {
        (self.last_seq, &self.last_hash)
    }
}

/// A signed statement that the chain's event `seq` has hash `hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The event pinned.
    pub seq: i64,
    /// Its hash.
    pub hash: String,
    /// When the checkpoint was signed.
    pub at: String,
    /// The ed25519 signature, hex.
    pub signature: String,
    /// The signing key's public key, hex.
    pub public_key: String,
}

fn checkpoint_message(seq: i64, hash: &str, at: &str) -> Vec<u8> {
    format!("partnerdb-checkpoint-v1\n{seq}\n{hash}\n{at}").into_bytes()
}

impl Checkpoint {
    /// Whether the signature is valid for `key`.
    pub fn verify(&self, key: &PublicKey) -> bool {
        let Some(bytes) = unhex::<64>(&self.signature) else {
            return false;
        };
        key.0
            .verify(
                &checkpoint_message(self.seq, &self.hash, &self.at),
                &Signature::from_bytes(&bytes),
            )
            .is_ok()
    }
}

/// The key checkpoints are signed with. Kept outside the database.
pub struct CheckpointKey(SigningKey);

impl fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckpointKey(public {})", self.public().to_hex())
    }
}

/// A checkpoint key's public half.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<PublicKey> {
        VerifyingKey::from_bytes(&unhex::<32>(text)?)
            .ok()
            .map(PublicKey)
    }

    /// 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex(self.0.as_bytes())
    }
}

impl CheckpointKey {
    /// A key from 32 random bytes (the caller draws them).
    pub fn from_seed(seed: [u8; 32]) -> CheckpointKey {
        CheckpointKey(SigningKey::from_bytes(&seed))
    }

    /// A key from its stored form: 64 hex digits.
    pub fn from_hex(text: &str) -> Option<CheckpointKey> {
        unhex::<32>(text).map(CheckpointKey::from_seed)
    }

    /// The stored form.
    pub fn to_hex(&self) -> String {
        hex(&self.0.to_bytes())
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs a checkpoint of event `seq` with hash `hash` at `at`.
    pub fn sign(&self, seq: i64, hash: &str, at: &str) -> Checkpoint {
        let signature = self.0.sign(&checkpoint_message(seq, hash, at));
        Checkpoint {
            seq,
            hash: hash.to_owned(),
            at: at.to_owned(),
            signature: hex(&signature.to_bytes()),
            public_key: self.public().to_hex(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_covers_the_previous_hash_and_the_encoding() {
        let e = event(3, "read");
        let mut hasher = Sha256::new();
        hasher.update(GENESIS.as_bytes());
        hasher.update(e.encode());
        assert_eq!(e.hash(GENESIS), hex(&hasher.finalize()));
        // Pinned: a change of encoding breaks every stored chain.
        assert_eq!(e.hash(GENESIS).len(), 64);
        assert_ne!(e.hash(GENESIS), event(3, "update").hash(GENESIS));
    }

    fn event(seq: i64, action: &str) -> Event {
        Event {
            seq,
            at: format!("2026-01-01T00:00:{seq:02}.000000Z"),
            kind: "decision".into(),
            principal_id: Some("u1".into()),
            action: action.into(),
            resource_type: "partner".into(),
            resource_id: Some(format!("p{seq}")),
            partner_id: Some(format!("p{seq}")),
            decision: "allow".into(),
            policy_version: "v1".into(),
            detail: "{}".into(),
        }
    }

    fn chain(n: i64) -> Vec<StoredEvent> {
        link(GENESIS, (1..=n).map(|seq| event(seq, "read")))
    }

    fn verify(
        events: &[StoredEvent],
        checkpoints: Vec<Checkpoint>,
        key: Option<&PublicKey>,
    ) -> Result<i64, Break> {
        let mut verifier = ChainVerifier::new(checkpoints, key);
        for e in events {
            verifier.push(e)?;
        }
        verifier.finish()
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(&chain(10), Vec::new(), None), Ok(10));
    }

    #[test]
    fn every_kind_of_tampering_is_named() {
        let good = chain(5);
        let mut edited = good.clone();
        edited[2].event.action = "delete".into();
        assert!(matches!(
            verify(&edited, vec![], None),
            Err(Break::Content { seq: 3, .. })
        ));

        let mut deleted = good.clone();
        deleted.remove(2);
        assert_eq!(
            verify(&deleted, vec![], None),
            Err(Break::Sequence {
                previous: 2,
                expected: 3,
                found: 4
            })
        );

        let mut reordered = good.clone();
        reordered.swap(1, 2);
        assert!(matches!(
            verify(&reordered, vec![], None),
            Err(Break::Sequence {
                previous: 1,
                expected: 2,
                found: 3
            })
        ));

        let mut relinked = good.clone();
        relinked[3].prev_hash = GENESIS.into();
        assert!(matches!(
            verify(&relinked, vec![], None),
            Err(Break::Link {
                seq: 4,
                previous: 3,
                ..
            })
        ));

        // A whole rewritten chain is consistent, but not with a checkpoint.
        let key = CheckpointKey::from_seed([7; 32]);
        let checkpoint = key.sign(3, &good[2].hash, "t");
        let mut events: Vec<Event> = good.iter().map(|e| e.event.clone()).collect();
        events[1].action = "export".into();
        let rewritten = link(GENESIS, events);
        assert!(matches!(
            verify(&rewritten, vec![checkpoint.clone()], Some(&key.public())),
            Err(Break::Checkpoint { seq: 3, .. })
        ));
        // Truncation below a checkpoint.
        assert_eq!(
            verify(&good[..2], vec![checkpoint.clone()], Some(&key.public())),
            Err(Break::Truncated { last: 2, seq: 3 })
        );
        // A forged checkpoint.
        let other = CheckpointKey::from_seed([8; 32]);
        let forged = other.sign(3, &good[2].hash, "t");
        assert_eq!(
            verify(&good, vec![forged], Some(&key.public())),
            Err(Break::Signature { seq: 3 })
        );
        assert_eq!(verify(&good, vec![checkpoint], Some(&key.public())), Ok(5));
    }

    #[test]
    fn a_stored_hash_matches_only_as_the_chain_writes_it() {
        let good = chain(3);
        let mut scratch = Vec::new();
        assert_eq!(good[1].view().content_mismatch(&mut scratch), None);
        let mut upper = good[1].clone();
        upper.hash = upper.hash.to_uppercase();
        assert_eq!(
            upper.view().content_mismatch(&mut scratch),
            Some(good[1].hash.clone())
        );
        // Checked elsewhere, followed here: the outcome is reported at its seq.
        let mut verifier = ChainVerifier::new(Vec::new(), None);
        verifier
            .push_checked(1, &good[0].prev_hash, &good[0].hash, None)
            .unwrap();
        assert!(matches!(
            verifier.push_checked(2, &good[1].prev_hash, &good[1].hash, Some("x".into())),
            Err(Break::Content { seq: 2, .. })
        ));
    }

    #[test]
    fn encodings_do_not_collide_across_fields() {
        let mut a = event(1, "read");
        let mut b = event(1, "read");
        a.resource_id = Some("ab".into());
        a.partner_id = Some("c".into());
        b.resource_id = Some("a".into());
        b.partner_id = Some("bc".into());
        assert_ne!(a.encode(), b.encode());
        a.partner_id = None;
        b.partner_id = Some(String::new());
        assert_ne!(a.encode(), b.encode());
    }

    #[test]
    fn keys_round_trip_through_hex() {
        let key = CheckpointKey::from_seed([3; 32]);
        let again = CheckpointKey::from_hex(&key.to_hex()).unwrap();
        assert_eq!(again.public(), key.public());
        assert_eq!(
            PublicKey::from_hex(&key.public().to_hex()),
            Some(key.public())
        );
        let checkpoint = key.sign(9, "abc", "now");
        assert!(checkpoint.verify(&key.public()));
    }
}
