//! The membership log's rules, its bounds, and the resolver checked against the rule as
//! first written ([`super::reference`]) on random logs.

use std::collections::{BTreeMap, HashMap};

use cercle_crdt::{Role, Timestamp};
use proptest::prelude::*;

use super::resolve::Resolver;
use super::*;
use crate::identity::Profile;

fn person(name: &str) -> LocalIdentity {
    let profile = Profile::new(name, "infirmière", None, None).unwrap();
    LocalIdentity::generate(profile, Timestamp(1)).unwrap()
}

fn grant(who: &LocalIdentity, role: Role) -> MemberGrant {
    MemberGrant {
        member: who.member(),
        devices: vec![who.certificate.clone()],
        role,
    }
}

fn genesis(creator: &LocalIdentity) -> SignedOp {
    let content = OpContent {
        circle: None,
        parents: vec![],
        device: creator.device(),
        at: 0,
        body: OpBody::Genesis {
            creator: grant(creator, Role::Coordinator),
            nonce: [7; 16],
            epoch: EpochId([0; 16]),
            sealed: vec![],
        },
    };
    SignedOp::sign(creator, content)
}

fn signed(circle: CircleId, by: &LocalIdentity, parents: &[OpHash], body: OpBody) -> SignedOp {
    let mut parents = parents.to_vec();
    parents.sort();
    parents.dedup();
    SignedOp::sign(
        by,
        OpContent {
            circle: Some(circle),
            parents,
            device: by.device(),
            at: 0,
            body,
        },
    )
}

/// An operation of `m`'s circle on top of its heads.
fn next(m: &Membership, by: &LocalIdentity, body: OpBody) -> SignedOp {
    signed(m.log().circle(), by, &m.log().heads(), body)
}

fn circle_of(creator: &LocalIdentity) -> Membership {
    Membership::genesis(genesis(creator)).unwrap()
}

fn add_body(who: &LocalIdentity, role: Role) -> OpBody {
    OpBody::AddMember {
        grant: grant(who, role),
        sealed: vec![],
    }
}

fn add(m: &mut Membership, by: &LocalIdentity, who: &LocalIdentity, role: Role) -> OpHash {
    let o = next(m, by, add_body(who, role));
    let h = o.hash();
    m.append(o).unwrap();
    h
}

fn remove_body(who: &LocalIdentity) -> OpBody {
    OpBody::RemoveMember {
        member: who.member(),
        cutoffs: vec![(who.device(), 0)],
        logs: vec![],
        epoch: EpochId([7; 16]),
        sealed: vec![],
    }
}

fn relays(list: &[&str]) -> OpBody {
    OpBody::SetRelays {
        relays: list.iter().map(|r| r.to_string()).collect(),
    }
}

/// Takes one operation as if from a peer: `Ok` if it entered the log.
fn take(m: &mut Membership, op: &SignedOp) -> Result<(), OpError> {
    let intake = m.take_in(&[op.bytes().to_vec()]);
    match intake.refused.into_iter().next() {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

#[test]
fn the_creator_is_coordinator_and_adds_members_with_roles() {
    let (a, b) = (person("A"), person("B"));
    let mut m = circle_of(&a);
    add(&mut m, &a, &b, Role::Caregiver);
    let r = m.resolution();
    assert_eq!(r.role(&a.member()), Some(Role::Coordinator));
    assert_eq!(r.role(&b.member()), Some(Role::Caregiver));
    assert_eq!(r.member_of(&b.device()).map(|(m, _)| *m), Some(b.member()));
}

fn second_device(of: &LocalIdentity, seed: u8) -> LocalIdentity {
    let mut rng = <crate::crypto::SecureRng as rand::SeedableRng>::from_seed([seed; 32]);
    of.new_device(Timestamp(2), &mut rng).unwrap()
}

fn add_device_body(device: &LocalIdentity) -> OpBody {
    OpBody::AddDevice {
        certificate: device.certificate.clone(),
        sealed: vec![],
    }
}

fn revoke_body(device: &LocalIdentity) -> OpBody {
    OpBody::RevokeDevice {
        member: device.member(),
        device: device.device(),
        logs: vec![],
        epoch: EpochId([5; 16]),
        sealed: vec![],
    }
}

#[test]
fn a_member_adds_their_own_device_without_a_coordinator_and_no_one_else_can() {
    let (a, b, c) = (person("A"), person("B"), person("C"));
    let mut m = circle_of(&a);
    add(&mut m, &a, &b, Role::Professional);
    add(&mut m, &a, &c, Role::Professional);
    let b2 = second_device(&b, 1);
    // C, a professional, cannot add a device to B; a device certified by someone else's
    // member key is no device of B's.
    let by_c = next(&m, &c, add_device_body(&b2));
    assert_eq!(
        take(&mut m, &by_c),
        Err(OpError::Void(VoidReason::NotCoordinator))
    );
    let mut forged = b2.certificate.clone();
    forged.member = c.member();
    let forged = next(
        &m,
        &c,
        OpBody::AddDevice {
            certificate: forged,
            sealed: vec![],
        },
    );
    assert_eq!(
        take(&mut m, &forged),
        Err(OpError::Void(VoidReason::BadTarget))
    );
    // B's own device adds the second one; it then writes operations as B.
    m.append(next(&m, &b, add_device_body(&b2))).unwrap();
    let r = m.resolution();
    assert_eq!(r.member_of(&b2.device()).map(|(m, _)| *m), Some(b.member()));
    assert_eq!(r.members[&b.member()].devices.len(), 2);
    assert!(m.log().granted(&b2.device()));
    // Added twice: refused.
    assert_eq!(
        m.append(next(&m, &b, add_device_body(&b2))),
        Err(OpError::Void(VoidReason::BadTarget))
    );
}

#[test]
fn a_revoked_device_writes_nothing_more_and_is_never_added_back() {
    let (a, b) = (person("A"), person("B"));
    let mut m = circle_of(&a);
    add(&mut m, &a, &b, Role::Coordinator);
    let b2 = second_device(&b, 2);
    m.append(next(&m, &b, add_device_body(&b2))).unwrap();
    // The lost device tries to revoke the member's other one at the same time as it is
    // revoked: its concurrent operation is void, the revocation stands.
    let base = m.log().heads();
    let revoke = signed(m.log().circle(), &b, &base, revoke_body(&b2));
    let counter = signed(m.log().circle(), &b2, &base, revoke_body(&b));
    take(&mut m, &revoke).unwrap();
    let _ = take(&mut m, &counter);
    let r = m.resolution();
    assert_eq!(r.member_of(&b2.device()), None);
    assert_eq!(r.member_of(&b.device()).map(|(m, _)| *m), Some(b.member()));
    let revocation = &r.revoked[&b2.device()];
    assert_eq!((revocation.member, revocation.by), (b.member(), b.device()));
    assert_eq!(r.epoch, Some(EpochId([5; 16])));
    if m.log().knows(&counter.hash()) {
        assert_eq!(
            r.void.get(&counter.hash()),
            Some(&VoidReason::RevokedConcurrently)
        );
    }
    // After the revocation it signs nothing that counts, and is not added back.
    let late = next(&m, &b2, relays(&["/ip4/192.0.2.7/tcp/4001/p2p/R"]));
    assert_eq!(
        take(&mut m, &late),
        Err(OpError::Void(VoidReason::NotCoordinator))
    );
    assert!(matches!(
        m.append(next(&m, &b, add_device_body(&b2))),
        Err(OpError::NoEffect(_))
    ));
    // A member's last device is not revoked: the member is removed instead.
    assert_eq!(
        m.append(next(&m, &a, revoke_body(&b))),
        Err(OpError::Void(VoidReason::BadTarget))
    );
    // Every node resolves the same from the same operations, in any order.
    let mut all: Vec<SignedOp> = m.log().ops().cloned().collect();
    all.reverse();
    let (loaded, _) = Membership::load(all).unwrap();
    assert_eq!(loaded.resolution(), m.resolution());
}

#[test]
fn a_coordinator_names_the_relays_and_the_last_list_wins() {
    let (a, b) = (person("A"), person("B"));
    let mut m = circle_of(&a);
    add(&mut m, &a, &b, Role::Professional);
    m.append(next(&m, &a, relays(&["/ip4/192.0.2.1/tcp/4001/p2p/R1"])))
        .unwrap();
    m.append(next(&m, &a, relays(&["/ip4/192.0.2.2/tcp/4001/p2p/R2"])))
        .unwrap();
    // A professional may not choose; too many relays, or the same list again, are refused.
    let evil = next(&m, &b, relays(&["/ip4/192.0.2.9/tcp/4001/p2p/EVIL"]));
    assert_eq!(
        take(&mut m, &evil),
        Err(OpError::Void(VoidReason::NotCoordinator))
    );
    let many = vec!["x"; MAX_RELAYS + 1];
    assert_eq!(
        m.append(next(&m, &a, relays(&many))),
        Err(OpError::Void(VoidReason::BadTarget))
    );
    assert!(matches!(
        m.append(next(&m, &a, relays(&["/ip4/192.0.2.2/tcp/4001/p2p/R2"]))),
        Err(OpError::NoEffect(_))
    ));
    let r = m.resolution();
    assert_eq!(r.relays, vec!["/ip4/192.0.2.2/tcp/4001/p2p/R2".to_string()]);
    assert!(r.void.is_empty());
    assert_eq!(m.log().len(), 4, "refused operations are not kept");
}

#[test]
fn a_coordinator_sets_the_alert_reminder_delay_within_a_month() {
    let (a, b) = (person("A"), person("B"));
    let mut m = circle_of(&a);
    add(&mut m, &a, &b, Role::Professional);
    assert_eq!(m.resolution().reminder_after(), DEFAULT_REMINDER_HOURS);
    m.append(next(&m, &a, OpBody::SetReminder { hours: 4 }))
        .unwrap();
    let evil = next(&m, &b, OpBody::SetReminder { hours: 0 });
    assert_eq!(
        take(&mut m, &evil),
        Err(OpError::Void(VoidReason::NotCoordinator))
    );
    assert_eq!(
        m.append(next(
            &m,
            &a,
            OpBody::SetReminder {
                hours: MAX_REMINDER_HOURS + 1
            }
        )),
        Err(OpError::Void(VoidReason::BadTarget))
    );
    assert!(matches!(
        m.append(next(&m, &a, OpBody::SetReminder { hours: 4 })),
        Err(OpError::NoEffect(_))
    ));
    assert_eq!(m.resolution().reminder_after(), 4);
}

#[test]
fn operations_waiting_for_a_parent_are_bounded_in_count_and_bytes() {
    let a = person("A");
    let mut m = circle_of(&a);
    let missing = OpHash([9; 32]);
    for i in 0..=MAX_WAITING_OPS {
        let o = signed(
            m.log().circle(),
            &a,
            &[missing],
            relays(&[&format!("/ip4/192.0.2.1/tcp/{i}")]),
        );
        let r = take(&mut m, &o);
        if i < MAX_WAITING_OPS {
            assert_eq!(r, Ok(()));
        } else {
            assert_eq!(r, Err(OpError::TooManyWaiting));
        }
    }
    assert_eq!(m.log().waiting(), MAX_WAITING_OPS);
    // Large waiting operations hit the byte bound long before the count.
    let mut m = circle_of(&a);
    let sealed = crate::crypto::SealedKey {
        device: a.device(),
        epoch: EpochId([1; 16]),
        enc: "00".repeat(32),
        ciphertext: "00".repeat(48),
    };
    let mut kept = 0;
    for i in 0..64u8 {
        let big = OpBody::RotateKey {
            epoch: EpochId([i; 16]),
            sealed: vec![sealed.clone(); 512],
        };
        let o = signed(m.log().circle(), &a, &[missing], big);
        if take(&mut m, &o).is_ok() {
            kept += o.bytes().len();
        }
    }
    assert!(
        kept <= MAX_WAITING_BYTES && kept > MAX_WAITING_BYTES / 2,
        "{kept}"
    );
    assert!(m.log().waiting() < 64);
}

#[test]
fn only_coordinators_change_membership_and_strangers_are_refused_before_anything() {
    let (a, b, c) = (person("A"), person("B"), person("C"));
    let mut m = circle_of(&a);
    add(&mut m, &a, &b, Role::Professional);
    let by_b = next(&m, &b, add_body(&c, Role::Professional));
    assert_eq!(
        take(&mut m, &by_b),
        Err(OpError::Void(VoidReason::NotCoordinator))
    );
    assert_eq!(m.resolution().role(&c.member()), None);
    assert!(m.log().get(&by_b.hash()).is_none(), "not stored");
    // A stranger's operation, even naming a missing parent, is refused at once.
    let mallory = person("M");
    let forged = signed(
        m.log().circle(),
        &mallory,
        &[OpHash([3; 32])],
        add_body(&mallory, Role::Coordinator),
    );
    assert_eq!(take(&mut m, &forged), Err(OpError::UnknownDevice));
    assert_eq!(m.log().waiting(), 0);
}

#[test]
fn a_removal_wins_over_concurrent_operations_of_the_removed_member() {
    let (a, b, c) = (person("A"), person("B"), person("C"));
    let mut m = circle_of(&a);
    let base = add(&mut m, &a, &b, Role::Coordinator);
    // A removes B; concurrently (same parent) B adds C.
    let removal = signed(m.log().circle(), &a, &[base], remove_body(&b));
    let by_b = signed(
        m.log().circle(),
        &b,
        &[base],
        add_body(&c, Role::Professional),
    );
    take(&mut m, &removal).unwrap();
    // Valid where B wrote it: taken, then voided by the removal.
    take(&mut m, &by_b).unwrap();
    let r = m.resolution();
    assert_eq!(r.role(&b.member()), None);
    assert!(r.removed.contains_key(&b.member()));
    assert_eq!(r.role(&c.member()), None);
    assert_eq!(
        r.void.get(&by_b.hash()),
        Some(&VoidReason::RemovedConcurrently)
    );
}

#[test]
fn when_two_coordinators_remove_each_other_the_senior_one_stays() {
    for _ in 0..8 {
        let (a, b) = (person("A"), person("B"));
        let mut m = circle_of(&a);
        let base = add(&mut m, &a, &b, Role::Coordinator);
        let a_removes_b = signed(m.log().circle(), &a, &[base], remove_body(&b));
        let b_removes_a = signed(m.log().circle(), &b, &[base], remove_body(&a));
        take(&mut m, &b_removes_a).unwrap();
        take(&mut m, &a_removes_b).unwrap();
        let r = m.resolution();
        assert_eq!(
            r.role(&a.member()),
            Some(Role::Coordinator),
            "the creator is senior"
        );
        assert_eq!(r.role(&b.member()), None);
    }
}

#[test]
fn a_removed_member_can_do_nothing_afterwards_nor_be_added_back() {
    let (a, b, c) = (person("A"), person("B"), person("C"));
    let mut m = circle_of(&a);
    add(&mut m, &a, &b, Role::Coordinator);
    m.append(next(&m, &a, remove_body(&b))).unwrap();
    let by_b = next(&m, &b, add_body(&c, Role::Coordinator));
    assert_eq!(
        take(&mut m, &by_b),
        Err(OpError::Void(VoidReason::NotCoordinator))
    );
    assert!(matches!(
        m.append(next(&m, &a, add_body(&b, Role::Observer))),
        Err(OpError::NoEffect(_))
    ));
    assert_eq!(m.resolution().members.len(), 1);
}

#[test]
fn forged_foreign_and_oversized_operations_are_refused_on_decode() {
    let (a, b) = (person("A"), person("B"));
    let mut m = circle_of(&a);
    let o = next(&m, &a, add_body(&b, Role::Observer));
    let mut forged = o.bytes().to_vec();
    let last = forged.len() - 2;
    forged[last] ^= 1;
    assert!(matches!(
        SignedOp::decode(&forged),
        Err(OpError::BadSignature | OpError::Malformed(_))
    ));
    assert_eq!(SignedOp::decode(o.bytes()).map(|d| d.hash()), Ok(o.hash()));
    assert!(matches!(
        SignedOp::decode(&vec![b'{'; MAX_OP_BYTES + 1]),
        Err(OpError::TooLarge(_))
    ));
    let other = circle_of(&b);
    let foreign = next(
        &other,
        &b,
        OpBody::RotateKey {
            epoch: EpochId([1; 16]),
            sealed: vec![],
        },
    );
    assert_eq!(take(&mut m, &foreign), Err(OpError::WrongCircle));
    assert_eq!(take(&mut m, &genesis(&b)), Err(OpError::SecondGenesis));
    // A genesis naming parents is not one.
    let mut content = genesis(&a).content().clone();
    content.parents = vec![OpHash([1; 32])];
    let odd = SignedOp::sign(&a, content);
    assert!(matches!(
        SignedOp::decode(odd.bytes()),
        Err(OpError::Malformed(_))
    ));
}

#[test]
fn operations_wait_for_missing_parents_and_enter_when_they_arrive() {
    let (a, b, c) = (person("A"), person("B"), person("C"));
    let mut full = circle_of(&a);
    let first = next(&full, &a, add_body(&b, Role::Coordinator));
    full.append(first.clone()).unwrap();
    let second = next(&full, &a, add_body(&c, Role::Observer));
    let mut partial = circle_of(&a);
    take(&mut partial, &second).unwrap();
    assert_eq!(partial.log().waiting(), 1);
    assert_eq!(partial.resolution().members.len(), 1);
    let intake = partial.take_in(&[first.bytes().to_vec()]);
    assert_eq!(
        intake.new.iter().map(SignedOp::hash).collect::<Vec<_>>(),
        vec![first.hash(), second.hash()],
        "parents first"
    );
    assert_eq!(partial.log().waiting(), 0);
    assert_eq!(partial.resolution().role(&c.member()), Some(Role::Observer));
}

#[test]
fn the_history_and_each_authors_share_of_it_are_bounded() {
    let (a, b) = (person("A"), person("B"));
    let mut m = circle_of(&a).limited(8, 4, 16);
    add(&mut m, &a, &b, Role::Coordinator);
    let rotate = |i: u8| OpBody::RotateKey {
        epoch: EpochId([i; 16]),
        sealed: vec![],
    };
    // A wrote the genesis and the add: two more, then refused.
    m.append(next(&m, &a, rotate(1))).unwrap();
    m.append(next(&m, &a, rotate(2))).unwrap();
    assert_eq!(
        m.append(next(&m, &a, rotate(3))),
        Err(OpError::TooManyByAuthor { max: 4 })
    );
    // B has room, the history has four places left.
    for i in 10..14 {
        let o = next(&m, &b, rotate(i));
        take(&mut m, &o).unwrap();
    }
    let o = next(&m, &b, rotate(20));
    assert_eq!(take(&mut m, &o), Err(OpError::TooManyOps { max: 8 }));
    assert_eq!(m.log().len(), 8);
}

#[test]
fn a_log_of_ten_thousand_operations_resolves_and_grows_by_appends() {
    // Signing is the cost here: a few coordinators writing in turn, every one on top.
    let people: Vec<LocalIdentity> = ["A", "B", "C"].into_iter().map(person).collect();
    let mut m = circle_of(&people[0]);
    for p in &people[1..] {
        add(&mut m, &people[0], p, Role::Coordinator);
    }
    let ops = 2_000;
    for i in 0..ops {
        let by = &people[i % people.len()];
        let body = relays(&[&format!("/ip4/192.0.2.1/tcp/{i}")]);
        assert_eq!(m.append(next(&m, by, body)), Ok(Change::Appended));
    }
    let rebuilt = Resolver::build(m.log().by_hash(), m.log().sequence().iter().copied());
    assert_eq!(rebuilt.resolution(), m.resolution());
    let mut all: Vec<SignedOp> = m.log().ops().cloned().collect();
    all.reverse();
    let (loaded, left_out) = Membership::load(all).unwrap();
    assert!(left_out.is_empty());
    assert_eq!(loaded.resolution(), m.resolution());
}

fn note() -> OpNote {
    OpNote {
        epoch: EpochId([3; 16]),
        data: vec![1; 40],
    }
}

fn break_glass_body(who: &LocalIdentity, until: i64) -> OpBody {
    OpBody::BreakGlass {
        grant: grant(who, Role::Observer),
        until,
        sealed: vec![],
        about: note(),
    }
}

#[test]
fn only_someone_on_the_on_call_list_breaks_the_glass_for_a_day_at_most_and_any_writer_ends_it() {
    let (gp, nurse, parent, doctor, other) = (
        person("GP"),
        person("Nurse"),
        person("Parent"),
        person("On call"),
        person("Other"),
    );
    let mut m = circle_of(&gp);
    add(&mut m, &gp, &nurse, Role::Professional);
    add(&mut m, &gp, &parent, Role::Observer);
    // Nobody on call yet: refused.
    let early = next(&m, &nurse, break_glass_body(&doctor, 3_600_000));
    assert!(take(&mut m, &early).is_err());
    // Only a coordinator names who is on call.
    let by_nurse = next(
        &m,
        &nurse,
        OpBody::SetOnCall {
            members: vec![doctor.member()],
            names: note(),
        },
    );
    assert!(take(&mut m, &by_nurse).is_err());
    let listed = next(
        &m,
        &gp,
        OpBody::SetOnCall {
            members: vec![doctor.member()],
            names: note(),
        },
    );
    m.append(listed).unwrap();
    assert!(m.resolution().on_call(&doctor.member()));
    // Someone else, an observer's grant, or more than a day: refused.
    for (by, who, until) in [
        (&nurse, &other, 3_600_000),
        (&parent, &doctor, 3_600_000),
        (&nurse, &doctor, MAX_EMERGENCY_MILLIS + 1),
        (&nurse, &doctor, 0),
    ] {
        let o = next(&m, by, break_glass_body(who, until));
        assert!(take(&mut m, &o).is_err(), "{:?}", o.content().body);
    }
    // A professional's grant: an observer until then.
    m.append(next(&m, &nurse, break_glass_body(&doctor, 3_600_000)))
        .unwrap();
    let r = m.resolution();
    assert_eq!(r.role(&doctor.member()), Some(Role::Observer));
    assert_eq!(r.emergency[&doctor.member()].until, 3_600_000);
    assert!(r.reader_at(&doctor.device(), 3_599_999).is_some());
    assert!(r.reader_at(&doctor.device(), 3_600_000).is_none());
    // She cannot let anyone else in, nor remove anyone.
    let hers = next(&m, &doctor, remove_body(&nurse));
    assert!(take(&mut m, &hers).is_err());
    // A professional may not remove a member, but ends an emergency access.
    let not_hers = next(&m, &nurse, remove_body(&parent));
    assert!(take(&mut m, &not_hers).is_err());
    m.append(next(&m, &nurse, remove_body(&doctor))).unwrap();
    let r = m.resolution();
    assert!(r.emergency.is_empty() && r.role(&doctor.member()).is_none());
    assert_eq!(r.epoch, Some(EpochId([7; 16])));
    // No former member is left behind: she may be let in again another night.
    assert!(!r.removed.contains_key(&doctor.member()));
    m.append(next(&m, &gp, break_glass_body(&doctor, 7_200_000)))
        .unwrap();
    assert!(m.resolution().emergency.contains_key(&doctor.member()));
}

/// A random log: (parent choices, author index, body choice, target index, role index).
type Script = Vec<(Vec<usize>, usize, u8, usize, usize)>;

fn body_of(people: &[LocalIdentity], n: usize, body: u8, target: usize, role: usize) -> OpBody {
    // The second half of `people` are the first half's second devices.
    let sibling = &people[(target + people.len() / 2) % people.len()];
    let target = &people[target % people.len()];
    let role = Role::ALL[role % 4];
    match body % 14 {
        12 => OpBody::SetOnCall {
            members: vec![target.member(), sibling.member()],
            names: note(),
        },
        // Now and then for longer than a day, or with a role other than observer.
        13 => OpBody::BreakGlass {
            grant: grant(
                target,
                if n.is_multiple_of(3) {
                    role
                } else {
                    Role::Observer
                },
            ),
            until: if n.is_multiple_of(4) {
                MAX_EMERGENCY_MILLIS + 1
            } else {
                3_600_000
            },
            sealed: vec![],
            about: note(),
        },
        11 => OpBody::WithdrawConsent {
            reason: if n.is_multiple_of(5) {
                OpNote {
                    epoch: EpochId([3; 16]),
                    data: Vec::new(),
                }
            } else {
                note()
            },
            epoch: EpochId([n as u8; 16]),
        },
        9 => OpBody::AddDevice {
            certificate: sibling.certificate.clone(),
            sealed: vec![],
        },
        10 => OpBody::RevokeDevice {
            member: target.member(),
            device: target.device(),
            logs: vec![],
            epoch: EpochId([n as u8; 16]),
            sealed: vec![],
        },
        0..=2 => add_body(target, role),
        3 | 4 => OpBody::RemoveMember {
            member: target.member(),
            cutoffs: vec![],
            logs: vec![],
            epoch: EpochId([n as u8; 16]),
            sealed: vec![],
        },
        5 => OpBody::ChangeRole {
            member: target.member(),
            role,
        },
        6 => OpBody::RotateKey {
            epoch: EpochId([n as u8; 16]),
            sealed: vec![],
        },
        7 if n.is_multiple_of(2) => relays(&[&format!("/ip4/192.0.2.{n}/tcp/4001")]),
        // Now and then beyond the longest delay.
        7 => OpBody::SetReminder {
            hours: (n as u16 % 8) * 120,
        },
        _ => OpBody::Close,
    }
}

/// Any signed operations on random parents, valid or not, as a raw set.
fn raw_log(people: &[LocalIdentity], script: &Script) -> BTreeMap<OpHash, SignedOp> {
    let g = genesis(&people[0]);
    let circle = CircleId(g.hash().0);
    let mut all = vec![g.hash()];
    let mut ops = BTreeMap::new();
    ops.insert(g.hash(), g);
    for (i, (parents, author, body, target, role)) in script.iter().enumerate() {
        let parents: Vec<OpHash> = parents.iter().map(|p| all[p % all.len()]).collect();
        let body = body_of(people, i + 1, *body, *target, *role);
        let o = signed(circle, &people[author % people.len()], &parents, body);
        all.push(o.hash());
        ops.insert(o.hash(), o);
    }
    ops
}

/// The operations a membership takes from a script, written each on the heads a writer
/// saw (random heads of what was taken).
fn taken_log(people: &[LocalIdentity], script: &Script) -> (SignedOp, Vec<SignedOp>) {
    let g = genesis(&people[0]);
    let mut m = Membership::genesis(g.clone()).unwrap();
    let mut taken = vec![g.hash()];
    let mut out = Vec::new();
    for (i, (parents, author, body, target, role)) in script.iter().enumerate() {
        let parents: Vec<OpHash> = parents.iter().map(|p| taken[p % taken.len()]).collect();
        let body = body_of(people, i + 1, *body, *target, *role);
        let o = signed(
            m.log().circle(),
            &people[author % people.len()],
            &parents,
            body,
        );
        let before = m.log().len();
        if take(&mut m, &o).is_ok() && m.log().len() > before {
            taken.push(o.hash());
            out.push(o);
        }
    }
    (g, out)
}

fn script(max: usize) -> impl Strategy<Value = Script> {
    prop::collection::vec(
        (
            prop::collection::vec(any::<usize>(), 1..3),
            any::<usize>(),
            0u8..14,
            any::<usize>(),
            any::<usize>(),
        ),
        1..max,
    )
}

/// Four members, then a second device of each.
fn people() -> Vec<LocalIdentity> {
    let first: Vec<LocalIdentity> = ["A", "B", "C", "D"].into_iter().map(person).collect();
    let mut rng = <crate::crypto::SecureRng as rand::SeedableRng>::from_seed([9; 32]);
    let second: Vec<LocalIdentity> = first
        .iter()
        .map(|p| p.new_device(Timestamp(2), &mut rng).unwrap())
        .collect();
    first.into_iter().chain(second).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn the_resolver_agrees_with_the_rule_as_written_on_any_log(script in script(16)) {
        let people = people();
        let ops = raw_log(&people, &script);
        let expected = super::reference::resolve(&ops);
        let by_hash: HashMap<OpHash, SignedOp> = ops.clone().into_iter().collect();
        let resolved = Resolver::build(&by_hash, ops.keys().copied());
        prop_assert_eq!(resolved.resolution(), &expected);
    }

    #[test]
    fn any_delivery_order_takes_the_same_operations_and_resolves_the_same(
        script in script(14),
        orders in prop::collection::vec(Just(()).prop_perturb(|_, mut rng| rng.random::<u64>()), 3),
    ) {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        let people = people();
        let (g, ops) = taken_log(&people, &script);
        let (built, left_out) = Membership::load(
            std::iter::once(g.clone()).chain(ops.iter().cloned()).collect(),
        )
        .unwrap();
        prop_assert!(left_out.is_empty());
        let expected = built.resolution().clone();
        // The resolution kept up to date is the one computed from scratch.
        let from_scratch = Resolver::build(built.log().by_hash(), built.log().sequence().iter().copied());
        prop_assert_eq!(from_scratch.resolution(), &expected);
        for seed in orders {
            let mut shuffled: Vec<Vec<u8>> = ops.iter().map(|o| o.bytes().to_vec()).collect();
            shuffled.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
            let mut m = Membership::genesis(g.clone()).unwrap();
            // A peer sends again what was refused for a device not granted yet, as
            // anti-entropy does.
            for _ in 0..=ops.len() {
                m.take_in(&shuffled);
                if m.log().len() == ops.len() + 1 {
                    break;
                }
            }
            prop_assert_eq!(m.log().len(), ops.len() + 1);
            prop_assert_eq!(m.log().waiting(), 0);
            prop_assert_eq!(m.resolution(), &expected);
        }
    }

    #[test]
    fn decoding_random_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = SignedOp::decode(&bytes);
    }
}
