//! Topic names, topic filters and matching (MQTT 3.1.1 §4.7).
//!
//! Validation reuses `rumqttc::mqttbytes::{valid_topic, valid_filter}`. Matching is ours: rumqttc's
//! `matches` refuses every topic that starts with `$`, but all KubeEdge topics are `$hw/...`.
//! The rule implemented here is the spec's [MQTT-4.7.2-1]: a filter whose *first* level is a wildcard
//! (`#`, `+/...`) does not match a topic starting with `$`; a filter that names the `$` level literally
//! (`$hw/events/#`) does.

use rumqttc::mqttbytes::{valid_filter, valid_topic};

/// Whether `topic` may be used as the topic name of a PUBLISH: non-empty, no wildcard, no NUL.
pub fn is_valid_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains('\0') && valid_topic(topic)
}

/// Whether `filter` is a valid SUBSCRIBE/UNSUBSCRIBE topic filter.
pub fn is_valid_filter(filter: &str) -> bool {
    !filter.contains('\0') && valid_filter(filter)
}

/// Whether the topic name `topic` matches the (valid) topic filter `filter`.
///
/// `+` matches exactly one level (possibly empty), `#` matches the parent level and any number of
/// child levels, and topics beginning with `$` are not matched by a leading wildcard.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The five subscriptions of KubeEdge v1.2 eventbus (spec/mqtt.md §2).
    const KUBEEDGE: [&str; 5] = [
        "$hw/events/upload/#",
        "$hw/events/device/+/state/update",
        "$hw/events/device/+/twin/+",
        "$hw/events/node/+/membership/get",
        "SYS/dis/upload_records",
    ];

    fn matching(topic: &str) -> Vec<&'static str> {
        KUBEEDGE.into_iter().filter(|f| topic_matches(f, topic)).collect()
    }

    #[test]
    fn kubeedge_filters_match_the_topics_they_are_meant_for() {
        assert!(KUBEEDGE.iter().all(|f| is_valid_filter(f)));
        assert_eq!(matching("$hw/events/upload/temperature"), [KUBEEDGE[0]]);
        assert_eq!(matching("$hw/events/upload/a/b/c"), [KUBEEDGE[0]]);
        assert_eq!(matching("$hw/events/upload"), [KUBEEDGE[0]]);
        assert_eq!(matching("$hw/events/device/led-1/state/update"), [KUBEEDGE[1]]);
        for leaf in ["update", "get", "cloud_updated", "edge_updated"] {
            let topic = format!("$hw/events/device/led-1/twin/{leaf}");
            assert_eq!(matching(&topic), [KUBEEDGE[2]], "{topic}");
        }
        assert_eq!(matching("$hw/events/node/edge-1/membership/get"), [KUBEEDGE[3]]);
        assert_eq!(matching("SYS/dis/upload_records"), [KUBEEDGE[4]]);
    }

    #[test]
    fn kubeedge_filters_do_not_match_the_edge_own_replies() {
        for topic in [
            "$hw/events/device/led-1/twin/update/result",
            "$hw/events/device/led-1/twin/update/document",
            "$hw/events/device/led-1/twin/update/delta",
            "$hw/events/device/led-1/twin/get/result",
            "$hw/events/device/led-1/state/update/result",
            "$hw/events/device/led-1/updated",
            "$hw/events/node/edge-1/membership/updated",
            "$hw/events/node/edge-1/membership/get/result",
            "$hw/events/device//twin",
            "hw/events/upload/x",
            "SYS/dis/upload_records/x",
            "node/connection",
        ] {
            assert!(
                matching(topic).is_empty(),
                "{topic} matched {:?}",
                matching(topic)
            );
        }
    }

    #[test]
    fn leading_wildcards_do_not_match_dollar_topics() {
        assert!(!topic_matches("#", "$hw/events/upload/x"));
        assert!(!topic_matches("+/events/upload/x", "$hw/events/upload/x"));
        assert!(!topic_matches("+/#", "$SYS/x"));
        assert!(topic_matches("$hw/#", "$hw/events/upload/x"));
        assert!(topic_matches("$hw/+/upload/x", "$hw/events/upload/x"));
        assert!(topic_matches("#", "hw/events/upload/x"));
        // A `$` that is not at the start is an ordinary character.
        assert!(topic_matches("#", "a/$b"));
        assert!(topic_matches("+/+", "a/$b"));
    }

    #[test]
    fn spec_examples() {
        assert!(topic_matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(topic_matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking"
        ));
        assert!(topic_matches("sport/#", "sport"));
        assert!(topic_matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(!topic_matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!topic_matches("sport/+", "sport"));
        assert!(topic_matches("sport/+", "sport/"));
        assert!(topic_matches("+/+", "/finance"));
        assert!(topic_matches("/+", "/finance"));
        assert!(!topic_matches("+", "/finance"));
    }

    #[test]
    fn validation() {
        assert!(is_valid_topic("$hw/events/upload/x"));
        assert!(!is_valid_topic(""));
        assert!(!is_valid_topic("a/+/b"));
        assert!(!is_valid_topic("a/#"));
        assert!(!is_valid_topic("a\0b"));
        assert!(is_valid_filter("#"));
        assert!(is_valid_filter("$hw/events/device/+/twin/+"));
        assert!(!is_valid_filter(""));
        assert!(!is_valid_filter("a/#/b"));
        assert!(!is_valid_filter("a/b#"));
        assert!(!is_valid_filter("a/b+/c"));
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), Just("a".to_owned()), Just("b".to_owned())]
    }

    fn topic_strategy() -> impl Strategy<Value = String> {
        proptest::collection::vec(level(), 1..5).prop_map(|l| l.join("/"))
    }

    fn filter_strategy() -> impl Strategy<Value = String> {
        let filter_level = prop_oneof![level(), Just("+".to_owned())];
        (proptest::collection::vec(filter_level, 1..5), any::<bool>()).prop_map(|(mut l, hash)| {
            if hash {
                l.push("#".to_owned());
            }
            l.join("/")
        })
    }

    proptest! {
        /// For topics without `$` our matcher agrees with rumqttc's.
        #[test]
        fn agrees_with_rumqttc_on_plain_topics(topic in topic_strategy(), filter in filter_strategy()) {
            prop_assume!(is_valid_topic(&topic) && is_valid_filter(&filter));
            prop_assert_eq!(topic_matches(&filter, &topic), rumqttc::mqttbytes::matches(&topic, &filter));
        }

        /// A `$` topic is matched exactly when its first level is named literally and the rest matches.
        #[test]
        fn dollar_topics_need_a_literal_first_level(topic in topic_strategy(), filter in filter_strategy()) {
            let dollar_topic = format!("$x/{topic}");
            let literal = format!("$x/{filter}");
            prop_assert_eq!(topic_matches(&literal, &dollar_topic), topic_matches(&filter, &topic));
            let plus = format!("+/{}", filter);
            prop_assert!(!topic_matches(&plus, &dollar_topic));
            prop_assert!(!topic_matches("#", &dollar_topic));
        }
    }
}
