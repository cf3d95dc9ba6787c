//! The wire codec: random envelopes round-trip, hostile bytes give errors.

use std::sync::Arc;

use backplane_api::{
    Action, ConnectionId, Envelope, GroupName, Message, ServerId, Target, UserId, codec,
};
use proptest::prelude::*;
use serde_json::Value;

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, including control characters, quotes and NUL.
    any::<String>()
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Finite floats only: JSON has no NaN or infinity.
        (-1e300f64..1e300).prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..8)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn connections() -> impl Strategy<Value = Vec<ConnectionId>> {
    prop::collection::vec(text().prop_map(ConnectionId::from), 0..5)
}

fn group() -> impl Strategy<Value = GroupName> {
    text().prop_map(GroupName::from)
}

fn membership() -> impl Strategy<Value = (ConnectionId, GroupName)> {
    (text().prop_map(ConnectionId::from), group())
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        Just(Target::All),
        connections().prop_map(Target::all_except),
        text().prop_map(Target::connection),
        connections().prop_map(Target::connections),
        group().prop_map(Target::group),
        (group(), connections()).prop_map(|(g, c)| Target::group_except(g, c)),
        prop::collection::vec(group(), 0..5).prop_map(Target::groups),
        text().prop_map(Target::user),
        prop::collection::vec(text().prop_map(UserId::from), 0..5).prop_map(Target::users),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (target(), text(), json()).prop_map(|(target, method, args)| Action::Send {
            target,
            message: Arc::new(Message::new(method, &args).unwrap()),
        }),
        membership().prop_map(|(connection, group)| Action::AddToGroup { connection, group }),
        membership().prop_map(|(connection, group)| Action::RemoveFromGroup { connection, group }),
    ]
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (text(), text(), any::<u64>(), action()).prop_map(|(hub, origin, id, action)| {
        Envelope::new(hub, ServerId::from(origin), id, action)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn envelopes_round_trip(envelope in envelope()) {
        let encoded = codec::encode(&envelope).unwrap();
        // Text buses such as PostgreSQL NOTIFY refuse NUL bytes.
        prop_assert!(!encoded.contains('\0'));
        prop_assert_eq!(codec::decode(encoded.as_bytes()).unwrap(), envelope);
    }

    #[test]
    fn every_prefix_of_an_envelope_is_rejected(envelope in envelope()) {
        let encoded = codec::encode(&envelope).unwrap();
        for cut in (0..encoded.len()).step_by(7) {
            prop_assert!(codec::decode(&encoded.as_bytes()[..cut]).is_err());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = codec::decode(&bytes);
    }
}

#[test]
fn foreign_json_is_a_decode_error() {
    for foreign in [
        r#"{"event":"user_created","id":42}"#,
        r#"{"v":1}"#,
        r#"["v",1]"#,
        r#""just a string""#,
    ] {
        let error = codec::decode(foreign.as_bytes()).unwrap_err();
        assert!(error.is_decode(), "{foreign}: {error:?}");
    }
}
