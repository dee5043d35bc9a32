//! The twin watcher: which watched attributes need their actions run (pure), given a twin get
//! result. The controller runs the plan and reports actual = expected.

use std::collections::BTreeMap;

use mapper_sdk::twin::MsgTwin;

use crate::config::WatcherConfig;

/// One attribute to converge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Twin name.
    pub property: String,
    /// The expected value to reach.
    pub expected: String,
    /// Actions to run, in order.
    pub actions: Vec<String>,
}

/// Attributes whose expected value is set and differs from the actual one (or has no actual).
pub fn plan(cfg: &WatcherConfig, twin: &BTreeMap<String, Option<MsgTwin>>) -> Vec<Step> {
    cfg.device_twin_attributes
        .iter()
        .filter_map(|a| {
            let t = twin.get(&a.device_property_name)?.as_ref()?;
            let expected = t.expected_value()?;
            (t.actual_value() != Some(expected)).then(|| Step {
                property: a.device_property_name.clone(),
                expected: expected.to_owned(),
                actions: a.actions.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::TwinAttribute;

    fn twin(json: &str) -> BTreeMap<String, Option<MsgTwin>> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn only_diverged_attributes_with_expected() {
        let cfg = WatcherConfig {
            device_twin_attributes: vec![
                TwinAttribute {
                    device_property_name: "io-data".into(),
                    actions: vec!["IOData".into()],
                },
                TwinAttribute {
                    device_property_name: "same".into(),
                    actions: vec!["X".into()],
                },
                TwinAttribute {
                    device_property_name: "noexp".into(),
                    actions: vec!["Y".into()],
                },
                TwinAttribute {
                    device_property_name: "absent".into(),
                    actions: vec!["Z".into()],
                },
            ],
        };
        let t = twin(
            r#"{"io-data":{"expected":{"value":"Red"},"actual":{"value":"Green"}},
                "same":{"expected":{"value":"1"},"actual":{"value":"1"}},
                "noexp":{"actual":{"value":"1"}},
                "other":{"expected":{"value":"9"}}}"#,
        );
        assert_eq!(
            plan(&cfg, &t),
            [Step {
                property: "io-data".into(),
                expected: "Red".into(),
                actions: vec!["IOData".into()]
            }]
        );
        // converged: nothing to do
        let t = twin(r#"{"io-data":{"expected":{"value":"Red"},"actual":{"value":"Red"}}}"#);
        assert!(plan(&cfg, &t).is_empty());
        // no actual yet: run
        let t = twin(r#"{"io-data":{"expected":{"value":"Red"}}}"#);
        assert_eq!(plan(&cfg, &t).len(), 1);
    }
}
