use super::*;

const SETTINGS: fn() -> config::AffinitySettings = config::AffinitySettings::default;

/// A site with `n` backends (weights as given) and `farm` affinity.
fn site(weights: &[u32], affinity: Affinity) -> config::Site {
    let mut s = crate::route::tests::site("exchange/owa", "l", &[], "/owa");
    s.family = "exchange".into();
    s.farm.members = weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let url = format!("http://10.0.0.{}:80", i + 1);
            let backend = crate::config::tests::backend(&url);
            config::Member { backend, url, weight: *w, drain: false }
        })
        .collect();
    s.farm.affinity = affinity;
    s.farm.health = Health::off();
    s
}

fn build(site: &config::Site, registry: &Registry) -> Farm {
    let mut targets = HashMap::new();
    for m in &site.farm.members {
        targets.insert(m.backend.clone(), Arc::new(Target::new(&m.backend).unwrap()));
    }
    Farm::build(site, &targets, registry, &SETTINGS()).unwrap()
}

/// Places a new request and returns the first backend it would try.
fn first(farm: &Farm, wants: Wants) -> Option<usize> {
    let mut p = farm.place(wants).ok()?;
    farm.next(&mut p)
}

#[test]
fn new_requests_spread_by_weight_and_by_load() {
    let registry = Registry::default();
    let farm = build(&site(&[1, 2, 1], Affinity::None), &registry);
    let mut counts = [0; 3];
    for _ in 0..400 {
        counts[first(&farm, Wants::default()).unwrap()] += 1;
    }
    assert_eq!(counts, [100, 200, 100], "idle: weighted turns");
    // Long-lived requests held on 0 and 1: new ones go to 2 until loads even out.
    let held: Vec<Lease> = (0..10).flat_map(|_| [farm.lease(0, None).unwrap(), farm.lease(1, None).unwrap()]).collect();
    for _ in 0..5 {
        let i = first(&farm, Wants::default()).unwrap();
        assert_eq!(i, 2);
        std::mem::forget(farm.lease(i, None));
    }
    drop(held);
    assert_eq!(farm.members[0].state.in_flight(), 0, "leases count off when they end");
}

#[test]
fn drained_backends_take_no_new_sessions_but_keep_theirs() {
    let registry = Registry::default();
    let farm = build(&site(&[1, 1], Affinity::Source), &registry);
    let client = SessionKey::Source("192.0.2.7".parse().unwrap());
    // A session on backend 0.
    let mut p = farm.place(Wants { session: Some(client.clone()), ..Wants::default() }).unwrap();
    let i = farm.next(&mut p).unwrap();
    let lease = farm.lease(i, p.session.as_ref()).unwrap();
    farm.members[i].state.set_drained(true);
    for _ in 0..20 {
        assert_ne!(first(&farm, Wants::default()), Some(i), "a new session never goes to the drained backend");
    }
    assert_eq!(
        first(&farm, Wants { session: Some(client.clone()), ..Wants::default() }),
        Some(i),
        "its own session continues"
    );
    let cookie = first(&farm, Wants { cookie: Some(farm.members[i].id), ..Wants::default() });
    assert_eq!(cookie, Some(i), "so does a cookie naming it");
    drop(lease);
    // Drained by the file: the same.
    let mut s = site(&[1, 1], Affinity::None);
    s.farm.members[1].drain = true;
    let by_file = build(&s, &Registry::default());
    assert!((0..20).all(|_| first(&by_file, Wants::default()) == Some(0)));
}

#[test]
fn a_backend_that_is_down_loses_its_sessions_to_the_others() {
    let registry = Registry::default();
    let farm = build(&site(&[1, 1, 1], Affinity::None), &registry);
    let key = SessionKey::Rpc(*b"virtual-conn-01!");
    farm.sessions.bind(&key, farm.members[1].id);
    assert_eq!(first(&farm, Wants { session: Some(key.clone()), ..Wants::default() }), Some(1));
    let mut h = Health::off();
    h.eject_connect_failures = 1;
    farm.members[1].state.connect_failed("refused", &h);
    let moved = first(&farm, Wants { session: Some(key), ..Wants::default() }).unwrap();
    assert_ne!(moved, 1, "the session's backend is out: a new place");
    assert!((0..30).all(|_| first(&farm, Wants::default()) != Some(1)));
}

#[test]
fn failover_tries_each_other_backend_once() {
    let registry = Registry::default();
    let farm = build(&site(&[1, 1, 1], Affinity::None), &registry);
    let mut p = farm.place(Wants::default()).unwrap();
    let mut tried = vec![farm.next(&mut p).unwrap(), farm.next(&mut p).unwrap(), farm.next(&mut p).unwrap()];
    assert_eq!(farm.next(&mut p), None, "three backends, three tries");
    tried.sort();
    assert_eq!(tried, [0, 1, 2]);
}

#[test]
fn a_pinned_logon_never_moves() {
    let registry = Registry::default();
    let farm = build(&site(&[1, 1], Affinity::None), &registry);
    let id = farm.members[1].id;
    let mut p = farm.place(Wants { pinned_to: Some(id), ..Wants::default() }).unwrap();
    assert!(p.pinned);
    assert_eq!(farm.next(&mut p), Some(1));
    assert_eq!(farm.next(&mut p), None, "no failover for a connection's own logon");
    farm.members[1].state.set_drained(true);
    assert_eq!(first(&farm, Wants { pinned_to: Some(id), ..Wants::default() }), Some(1), "drained: it continues");
    let mut h = Health::off();
    h.fall = 1;
    farm.members[1].state.check_result(Err("down".into()), &h);
    assert!(matches!(farm.place(Wants { pinned_to: Some(id), ..Wants::default() }), Err(Unavailable::PinnedGone(_))));
    let gone = MemberId(42);
    assert!(matches!(farm.place(Wants { pinned_to: Some(gone), ..Wants::default() }), Err(Unavailable::PinnedGone(_))));
}

#[test]
fn nothing_up_is_no_backend_with_what_each_is() {
    let registry = Registry::default();
    let farm = build(&site(&[1, 1], Affinity::None), &registry);
    let mut h = Health::off();
    h.fall = 1;
    farm.members[0].state.check_result(Err("refused".into()), &h);
    farm.members[1].state.set_drained(true);
    match farm.place(Wants::default()) {
        Err(Unavailable::NoBackend(why)) => {
            assert_eq!(why, "site exchange/owa: no backend can take the request (http://10.0.0.1:80 down, http://10.0.0.2:80 drained)")
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn a_reload_keeps_each_backends_state_and_the_sessions() {
    let registry = Registry::default();
    let before = build(&site(&[1, 1], Affinity::None), &registry);
    before.members[0].state.set_drained(true);
    let key = SessionKey::Mapi(b"ctx-1".to_vec());
    before.sessions.bind(&key, before.members[0].id);
    let _open = before.lease(0, None).unwrap();
    // The file reordered, a backend added.
    let mut s = site(&[1, 1, 1], Affinity::None);
    s.farm.members.swap(0, 1);
    let after = build(&s, &registry);
    let moved = after.index_of(before.members[0].id).unwrap();
    assert_eq!(moved, 1);
    assert!(after.members[moved].state.drained());
    assert_eq!(after.members[moved].state.in_flight(), 1, "requests of the old generation still count");
    assert_eq!(first(&after, Wants { session: Some(key), ..Wants::default() }), Some(moved));
    assert!(!after.members[2].state.drained() && !after.members[2].state.checked(), "a new backend starts afresh");
}

#[test]
fn the_affinity_cookie_is_scoped_to_its_site() {
    let registry = Registry::default();
    let mut s = site(&[1, 1], Affinity::Cookie);
    let preset = build(&s, &registry);
    let signer = preset.cookie.as_ref().unwrap();
    assert_eq!((signer.name.as_str(), signer.path.as_str()), ("gatehouse_backend", "/"), "a preset's paths share it");
    s.family = s.name.clone();
    let own = build(&s, &registry);
    assert_eq!(own.cookie.as_ref().unwrap().path, "/owa");
    let value = signer.sign(preset.members[1].id);
    assert_eq!(own.cookie.as_ref().unwrap().verify(&value), None, "signed for another [[site]]");
    assert_eq!(signer.verify(&value), Some(preset.members[1].id));
    assert!(build(&site(&[1, 1], Affinity::None), &registry).cookie.is_none());
}

#[test]
fn a_signed_in_users_connection_prefers_its_last_backend_while_it_takes_new_sessions() {
    let registry = Registry::default();
    let farm = build(&site(&[1, 1, 1], Affinity::None), &registry);
    let last = farm.members[2].id;
    for _ in 0..10 {
        assert_eq!(first(&farm, Wants { prefer: Some(last), ..Wants::default() }), Some(2));
    }
    farm.members[2].state.set_drained(true);
    assert!(
        (0..10).all(|_| first(&farm, Wants { prefer: Some(last), ..Wants::default() }) != Some(2)),
        "drained: it moves"
    );
    farm.members[2].state.set_drained(false);
    let mut h = Health::off();
    h.eject_connect_failures = 1;
    farm.members[2].state.connect_failed("refused", &h);
    assert!(
        (0..10).all(|_| first(&farm, Wants { prefer: Some(last), ..Wants::default() }) != Some(2)),
        "down: it moves"
    );
    // A preference fails over like a new session, unlike a pin.
    let mut p = farm.place(Wants { prefer: Some(farm.members[0].id), ..Wants::default() }).unwrap();
    assert!(!p.pinned);
    assert_eq!(farm.next(&mut p), Some(0));
    assert!(farm.next(&mut p).is_some());
}
